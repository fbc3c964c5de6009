/*
 * The IoT Hub half: CONNECT checks, the topics a device may use, telemetry, cloud-to-device
 * messages, the device twin and direct methods.
 */
import * as crypto from "node:crypto";
import type {AedesPublishPacket} from "aedes";
import {type Context, errorBody, truncateJson} from "./context.js";
import type {ConnectCheck} from "./dps.js";
import {C2D_MAX_BYTES, C2D_QUEUE_LIMIT, CONNECTIONS_KEPT, METHOD_MAX_BYTES, type C2dMessage, type ConnectionRecord, EmulatorHttpError, type HubDevice, type TelemetryRecord, deviceStats} from "./registry.js";
import {parseSas, verifySas} from "./sas.js";
import type {Session} from "./session.js";
import {buildPropertyBag, isPlainObject, matchRequest, mergePatch, parsePropertyBag, twinDocumentProblem} from "./wire.js";
import {authenticateHubX509} from "./x509-attestation.js";
import type {PresentedChain} from "./x509.js";

/**
 * `{hub}/{deviceId}/?api-version=...[&model-id=...][&DeviceClientType=...]`, parameters in any order;
 * the model id raw (`dtmi:com:example:X;1`) or percent-encoded, as Microsoft's SDKs send either.
 */
const USERNAME = /^([^/]+)\/([^/]+)\/\?(.*)$/;
const TELEMETRY_MAX_BYTES = 256 * 1024;
const TWIN_SECTION_MAX_BYTES = 32 * 1024;
// Per device, oldest first out: a fleet of 1,000 at a message a second stays within a few hundred MB.
const TELEMETRY_KEPT = 1_000;
export const MAX_SUBSCRIPTIONS = 5;

/** The username parameters the hub reads; others (DeviceClientType, ...) are passed over unread. */
const READ_PARAMETERS = ["api-version", "model-id"];

/**
 * CONNECT of a device: a SAS token in the password, or with the password absent or empty (as Azure
 * requires for X.509), the client certificate of the TLS handshake. Every authentication failure is
 * CONNACK 5 (not authorized): the code a user report shows for a refused CA-signed device
 * (MicrosoftDocs/azure-docs#28499) and the one the SAS checks already answer.
 */
export function checkHubConnect(ctx: Context, clientId: string, username: string | undefined, password: string | undefined, certificates?: PresentedChain): ConnectCheck {
	const m = username ? USERNAME.exec(username) : null;
	if (!m) return {ok: false, returnCode: 4, reason: "username is not {hubName}/{deviceId}/?api-version=..."};
	const [, hub, deviceId, query] = m;
	const params = new Map<string, string>();
	for (const pair of query.split("&")) {
		const eq = pair.indexOf("=");
		if (eq <= 0 || !READ_PARAMETERS.includes(pair.slice(0, eq))) continue;
		try {
			params.set(pair.slice(0, eq), decodeURIComponent(pair.slice(eq + 1)));
		}
		catch {
			return {ok: false, returnCode: 4, reason: `bad URL encoding in the username's ${pair.slice(0, eq)}`};
		}
	}
	if (!params.get("api-version")) return {ok: false, returnCode: 4, reason: "the username lacks api-version"};
	if (hub.toLowerCase() !== ctx.settings.hubName.toLowerCase()) return {ok: false, returnCode: 4, reason: `hub "${hub}" in the username is not this hub ("${ctx.settings.hubName}")`};
	if (clientId !== deviceId) return {ok: false, returnCode: 2, reason: `client id "${clientId}" differs from the device id in the username`};
	const modelId = params.get("model-id");
	if (!password && certificates) {
		const device = ctx.registry.devices.get(deviceId);
		if (!device) return {ok: false, returnCode: 5, reason: `device "${deviceId}" is not registered in the hub`};
		const problem = authenticateHubX509(ctx.registry, deviceId, device.authentication, certificates);
		if (problem) return {ok: false, returnCode: 5, reason: `client certificate refused: ${problem}`};
		return {ok: true, id: deviceId, certificates, ...(modelId ? {modelId} : {})};
	}
	const parsed = parseSas(password);
	if (!parsed.ok) {
		const x509 = ctx.registry.devices.get(deviceId)?.authentication.type;
		if (!password && x509 && x509 !== "sas") return {ok: false, returnCode: 5, reason: "an X.509 device sent no client certificate"};
		return {ok: false, returnCode: 4, reason: parsed.reason};
	}
	const sas = parsed.sas;
	const slash = sas.resource.indexOf("/");
	const host = slash < 0 ? sas.resource : sas.resource.slice(0, slash);
	if (host.toLowerCase() !== ctx.settings.hubName.toLowerCase() || sas.resource.slice(slash) !== `/devices/${deviceId}`)
		return {ok: false, returnCode: 5, reason: `token resource (sr) is not ${ctx.settings.hubName}/devices/${deviceId}`};
	if (sas.skn !== undefined) return {ok: false, returnCode: 5, reason: "a device token has no skn (shared access policies are not emulated)"};
	if (sas.se * 1000 <= Date.now()) return {ok: false, returnCode: 5, reason: "token expired (se is in the past)"};
	const device = ctx.registry.devices.get(deviceId);
	if (!device) return {ok: false, returnCode: 5, reason: `device "${deviceId}" is not registered in the hub`};
	if (device.authentication.type !== "sas") return {ok: false, returnCode: 5, reason: "the device authenticates with an X.509 certificate: send no password (or an empty one) and the certificate"};
	if (!verifySas(sas, device.authentication.key)) return {ok: false, returnCode: 5, reason: "signature does not verify with the device key"};
	return {ok: true, id: deviceId, sas, ...(modelId ? {modelId} : {})};
}

export function hubSubscriptionAllowed(deviceId: string, filter: string): boolean {
	return filter === `devices/${deviceId}/messages/devicebound/#`
		// Microsoft's Embedded C SDK subscribes with a wildcard device id.
		|| filter === "devices/+/messages/devicebound/#"
		|| filter === "$iothub/twin/res/#"
		|| filter === "$iothub/twin/PATCH/properties/desired/#"
		|| filter === "$iothub/methods/POST/#";
}

export type HubRequest =
	| {op: "telemetry"; bag: string}
	| {op: "twinGet"; rid: string}
	| {op: "twinPatch"; rid: string}
	| {op: "methodResponse"; rid: string; status: number};

/** Classifies a device PUBLISH; undefined means a topic IoT Hub does not accept (the connection is closed). */
export function parseHubRequest(deviceId: string, topic: string): HubRequest | undefined {
	const events = `devices/${deviceId}/messages/events/`;
	if (topic.startsWith(events)) return {op: "telemetry", bag: topic.slice(events.length)};
	const get = matchRequest(topic, "$iothub/twin/GET/");
	if (get) {
		const rid = get.get("$rid");
		return rid ? {op: "twinGet", rid} : undefined;
	}
	const patch = matchRequest(topic, "$iothub/twin/PATCH/properties/reported/");
	if (patch) {
		const rid = patch.get("$rid");
		return rid ? {op: "twinPatch", rid} : undefined;
	}
	const m = /^\$iothub\/methods\/res\/(\d{3})\/\?(.*)$/.exec(topic);
	if (m) {
		const rid = matchRequest(`x?${m[2]}`, "x")?.get("$rid");
		return rid ? {op: "methodResponse", rid, status: Number(m[1])} : undefined;
	}
	return undefined;
}

/** Hub faults may name the device id or the registration id it was provisioned with. */
export function faultTarget(ctx: Context, deviceId: string): {deviceId: string; registrationId: string} {
	return {deviceId, registrationId: ctx.registry.devices.get(deviceId)?.registrationId ?? deviceId};
}

export function twinView(device: HubDevice): {desired: Record<string, unknown>; reported: Record<string, unknown>} {
	return {
		desired: {...structuredClone(device.twin.desired), $version: device.twin.desiredVersion},
		reported: {...structuredClone(device.twin.reported), $version: device.twin.reportedVersion},
	};
}

/** Sees each reported-properties patch the hub accepted; `reported` is the merged section (read only). */
export type ReportedListener = (deviceId: string, patch: Record<string, unknown>, reported: Record<string, unknown>) => void;

/**
 * What happened to a device, for the emulator's page (emulator/web/monitor.ts). `fromDevice`: the
 * device itself sent something (its last activity), rather than the service acting on it.
 */
export type HubEvent =
	| {type: "telemetry"; deviceId: string; record: TelemetryRecord}
	| {type: "connected" | "disconnected" | "twinGet" | "reported" | "desired" | "c2d" | "method"; deviceId: string; fromDevice: boolean};

export type HubListener = (event: HubEvent) => void;

export class HubService {
	#ctx: Context;
	#methodCounter = 0;
	#reportedListeners: ReportedListener[] = [];
	#listeners: HubListener[] = [];

	/** Sees what happens to each device (the emulator's page); a listener must not throw or block. */
	onEvent(listener: HubListener): void {
		this.#listeners.push(listener);
	}

	#event(event: HubEvent): void {
		for (const listener of this.#listeners) {
			try {
				listener(event);
			}
			catch (error) {
				this.#ctx.log(`hub ${event.deviceId}: an event listener failed: ${(error as Error).message}`);
			}
		}
	}

	constructor(ctx: Context) {
		this.#ctx = ctx;
	}

	/** Credentials accepted, before CONNACK: a clean session starts without queued messages. */
	accepted(session: Session): void {
		const device = this.#ctx.registry.devices.get(session.id);
		if (device && session.clean) this.#purgeC2d(device, "clean session");
	}

	/** After CONNACK 0. */
	connected(session: Session): void {
		const ctx = this.#ctx;
		const device = ctx.registry.devices.get(session.id);
		if (!device) {
			session.close();
			return;
		}
		device.session = session;
		device.connectCount++;
		const record: ConnectionRecord = {connectedAt: new Date().toISOString()};
		device.connections.push(record);
		if (device.connections.length > CONNECTIONS_KEPT) device.connections.shift();
		session.onClose(() => {
			record.endedAt = new Date().toISOString();
			record.endedBy = session.closeReason === undefined ? "device" : "service";
			if (session.closeReason !== undefined) record.reason = session.closeReason;
		});
		if (session.modelId) device.modelId = session.modelId;
		session.onClose(() => this.#disconnected(device, session));
		this.#event({type: "connected", deviceId: device.deviceId, fromDevice: true});
		// IoT Hub closes the connection when the token expires: MQTT 3.1.1 cannot re-authenticate in-band.
		// A certificate's expiry is checked at connect time only (Azure/azure-iot-sdk-python#968).
		const sas = session.sas;
		if (sas) {
			session.timer(sas.se * 1000 - Date.now(), () => {
				ctx.log(`hub ${session.id}: SAS token expired: closing the connection`);
				ctx.stats.serverDisconnects++;
				session.close("SAS token expired");
			});
		}
		const lifetime = ctx.faults.take("tokenLifetime", faultTarget(ctx, session.id));
		if (lifetime) {
			session.timer(lifetime.seconds * 1000, () => {
				ctx.log(`hub ${session.id}: token lifetime fault (${lifetime.seconds} s): closing the connection`);
				ctx.stats.serverDisconnects++;
				session.close("tokenLifetime fault");
			});
		}
		const dropEvery = ctx.faults.take("dropEvery", faultTarget(ctx, session.id));
		if (dropEvery) {
			session.timer(dropEvery.ms, () => {
				ctx.log(`hub ${session.id}: dropEvery fault (${dropEvery.ms} ms): closing the connection`);
				ctx.stats.serverDisconnects++;
				session.close("dropEvery fault");
			});
		}
		this.deliverC2d(device);
	}

	#disconnected(device: HubDevice, session: Session): void {
		const current = device.session === session;
		if (current) device.session = undefined;
		for (const message of device.c2d) {
			if (message.inflight === session) message.inflight = undefined;
		}
		// A connection that took over has its own session; the old one's end must not touch it.
		if (session.clean && (current || !device.session)) this.#purgeC2d(device, "clean session ended");
		if (current) this.#event({type: "disconnected", deviceId: device.deviceId, fromDevice: true});
	}

	#purgeC2d(device: HubDevice, why: string): void {
		if (!device.c2d.length) return;
		this.#ctx.log(`hub ${device.deviceId}: ${device.c2d.length} cloud-to-device message(s) dropped (${why})`);
		device.c2d = [];
	}

	subscribed(session: Session): void {
		const device = this.#ctx.registry.devices.get(session.id);
		if (device && device.session === session) this.deliverC2d(device);
	}

	#reply(session: Session, topic: string, body: string): void {
		const qos = session.grantedQos(topic);
		if (qos === undefined) {
			this.#ctx.log(`hub ${session.id}: reply on ${topic} dropped: not subscribed to $iothub/twin/res/#`);
			return;
		}
		session.publish(topic, body, qos);
	}

	handle(session: Session, request: HubRequest, packet: AedesPublishPacket, qos: number): void {
		const ctx = this.#ctx;
		const device = ctx.registry.devices.get(session.id);
		if (!device) return;
		const stats = deviceStats(ctx.stats, session.id);
		switch (request.op) {
		case "telemetry": {
			const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
			const bag = parsePropertyBag(request.bag);
			// Bounded so that long benchmark runs do not grow without end.
			if (device.telemetry.length >= TELEMETRY_KEPT) device.telemetry.shift();
			const record: TelemetryRecord = {
				body: payload.toString("utf8"),
				bodyBase64: payload.toString("base64"),
				properties: bag.properties,
				systemProperties: bag.systemProperties,
				time: new Date().toISOString(),
				qos,
				topic: packet.topic,
			};
			device.telemetry.push(record);
			ctx.stats.telemetry++;
			stats.telemetry++;
			this.#event({type: "telemetry", deviceId: device.deviceId, record});
			break;
		}
		case "twinGet": {
			ctx.stats.twinGets++;
			stats.twinGets++;
			this.#event({type: "twinGet", deviceId: device.deviceId, fromDevice: true});
			const topic200 = `$iothub/twin/res/200/?$rid=${encodeURIComponent(request.rid)}`;
			if (this.#twinFault(session, request.rid)) return;
			const body = JSON.stringify(twinView(device));
			this.#reply(session, topic200, ctx.faults.take("twin.malformed", faultTarget(ctx, session.id)) ? truncateJson(body) : body);
			break;
		}
		case "twinPatch": {
			ctx.stats.twinPatches++;
			stats.twinPatches++;
			const rid = encodeURIComponent(request.rid);
			if (this.#twinFault(session, request.rid)) return;
			let patch: unknown;
			try {
				patch = JSON.parse(Buffer.from(packet.payload).toString("utf8"));
			}
			catch {
				this.#reply(session, `$iothub/twin/res/400/?$rid=${rid}`, errorBody(400004, "The reported properties patch is not valid JSON."));
				return;
			}
			if (!isPlainObject(patch)) {
				this.#reply(session, `$iothub/twin/res/400/?$rid=${rid}`, errorBody(400004, "The reported properties patch must be a JSON object."));
				return;
			}
			const problem = twinDocumentProblem(patch);
			if (problem) {
				this.#reply(session, `$iothub/twin/res/400/?$rid=${rid}`, errorBody(400004, `Invalid reported properties patch: ${problem}.`));
				return;
			}
			const next = structuredClone(device.twin.reported);
			mergePatch(next, patch);
			if (Buffer.byteLength(JSON.stringify(next)) > TWIN_SECTION_MAX_BYTES) {
				this.#reply(session, `$iothub/twin/res/400/?$rid=${rid}`, errorBody(400027, "Reported properties would exceed 32 KB."));
				return;
			}
			device.twin.reported = next;
			device.twin.reportedVersion++;
			this.#notifyReported(device, patch);
			this.#event({type: "reported", deviceId: device.deviceId, fromDevice: true});
			if (ctx.faults.take("twin.malformed", faultTarget(ctx, session.id))) {
				// A reply that cannot be used: no $version, and a body where none is expected.
				this.#reply(session, `$iothub/twin/res/204/?$rid=${rid}`, "{\"$version\":");
				return;
			}
			this.#reply(session, `$iothub/twin/res/204/?$rid=${rid}&$version=${device.twin.reportedVersion}`, "");
			break;
		}
		case "methodResponse": {
			const pending = device.pendingMethods.get(request.rid);
			if (!pending) {
				ctx.log(`hub ${session.id}: method response for unknown $rid=${request.rid} ignored`);
				return;
			}
			device.pendingMethods.delete(request.rid);
			clearTimeout(pending.timer);
			const text = Buffer.from(packet.payload).toString("utf8");
			let payload: unknown = null;
			if (text.length) {
				try {
					payload = JSON.parse(text);
				}
				catch {
					payload = text;
				}
			}
			pending.resolve({status: request.status, payload});
			this.#event({type: "method", deviceId: device.deviceId, fromDevice: true});
			break;
		}
		}
	}

	/** Device Update judges deployments from the reported patches. */
	onReported(listener: ReportedListener): void {
		this.#reportedListeners.push(listener);
	}

	#notifyReported(device: HubDevice, patch: Record<string, unknown>): void {
		for (const listener of this.#reportedListeners) {
			try {
				listener(device.deviceId, patch, device.twin.reported);
			}
			catch (error) {
				this.#ctx.log(`hub ${device.deviceId}: a reported-properties listener failed: ${(error as Error).message}`);
			}
		}
	}

	#twinFault(session: Session, rid: string): boolean {
		const fault = this.#ctx.faults.take("twin.status", faultTarget(this.#ctx, session.id));
		if (!fault) return false;
		this.#reply(session, `$iothub/twin/res/${fault.status}/?$rid=${encodeURIComponent(rid)}`, errorBody(fault.status * 1000 + 1, `Injected fault: status ${fault.status}`));
		return true;
	}

	/** Telemetry larger than IoT Hub accepts makes it close the connection. */
	telemetryTooLarge(packet: AedesPublishPacket): boolean {
		return Buffer.byteLength(packet.payload as Buffer) > TELEMETRY_MAX_BYTES;
	}

	sendC2d(deviceId: string, m: {body: string; properties?: Record<string, string>; messageId?: string}): {messageId: string} {
		const device = this.#ctx.registry.device(deviceId);
		if (typeof m?.body !== "string") throw new EmulatorHttpError(400, "A cloud-to-device message needs a \"body\" string.");
		const body = Buffer.from(m.body, "utf8");
		if (body.length > C2D_MAX_BYTES) throw new EmulatorHttpError(413, "A cloud-to-device message is at most 64 KB.");
		if (device.c2d.length >= C2D_QUEUE_LIMIT)
			throw new EmulatorHttpError(403, `The device queue is full (${C2D_QUEUE_LIMIT} messages, IoT Hub's limit): the device must receive and complete messages first.`);
		const properties: Record<string, string> = {};
		const systemProperties: Record<string, string> = {};
		for (const [k, v] of Object.entries(m.properties ?? {})) {
			if (typeof v !== "string") throw new EmulatorHttpError(400, `Property "${k}" must be a string.`);
			if (k.startsWith("$.")) systemProperties[k] = v;
			else properties[k] = v;
		}
		const messageId = m.messageId ?? crypto.randomUUID();
		device.c2d.push({messageId, body, properties, systemProperties, enqueuedAt: new Date().toISOString(), deliveryCount: 0});
		this.#ctx.stats.c2dSent++;
		this.deliverC2d(device);
		this.#event({type: "c2d", deviceId: device.deviceId, fromDevice: false});
		return {messageId};
	}

	deliverC2d(device: HubDevice): void {
		const session = device.session;
		if (!session || session.closed || !session.ready) return;
		const topicBase = `devices/${device.deviceId}/messages/devicebound/`;
		for (const message of [...device.c2d]) {
			if (message.inflight === session) continue;
			const topic = topicBase + this.#c2dBag(device, message);
			const qos = session.grantedQos(topic);
			if (qos === undefined) return;
			const dup = message.deliveryCount > 0;
			message.deliveryCount++;
			message.inflight = session;
			deviceStats(this.#ctx.stats, device.deviceId).c2dDelivered++;
			const complete = () => this.#completeC2d(device, message);
			session.publish(topic, message.body, qos, {dup, onAck: complete});
			// At QoS 0 the hub cannot know; the message counts as delivered.
			if (qos === 0) complete();
		}
	}

	#c2dBag(device: HubDevice, message: C2dMessage): string {
		// IoT Hub's order and encoding: `%24.mid=...&%24.to=%2Fdevices%2F{id}%2Fmessages%2Fdevicebound&...`.
		const entries: [string, string][] = [["$.mid", message.messageId], ["$.to", `/devices/${device.deviceId}/messages/devicebound`]];
		for (const [k, v] of Object.entries(message.systemProperties)) entries.push([k, v]);
		entries.push(["iothub-ack", "none"]);
		for (const [k, v] of Object.entries(message.properties)) entries.push([k, v]);
		return buildPropertyBag(entries);
	}

	#completeC2d(device: HubDevice, message: C2dMessage): void {
		const index = device.c2d.indexOf(message);
		if (index < 0) return;
		device.c2d.splice(index, 1);
		this.#ctx.stats.c2dCompleted++;
		deviceStats(this.#ctx.stats, device.deviceId).c2dCompleted++;
		this.#event({type: "c2d", deviceId: device.deviceId, fromDevice: true});
	}

	patchDesired(deviceId: string, patch: object): {version: number} {
		const device = this.#ctx.registry.device(deviceId);
		if (!isPlainObject(patch)) throw new EmulatorHttpError(400, "A desired properties patch must be a JSON object.");
		const clean: Record<string, unknown> = {...patch};
		delete clean.$version;
		const problem = twinDocumentProblem(clean);
		if (problem) throw new EmulatorHttpError(400, `Invalid desired properties patch: ${problem}.`);
		const next = structuredClone(device.twin.desired);
		mergePatch(next, clean);
		if (Buffer.byteLength(JSON.stringify(next)) > TWIN_SECTION_MAX_BYTES) throw new EmulatorHttpError(400, "Desired properties would exceed 32 KB.");
		device.twin.desired = next;
		const version = ++device.twin.desiredVersion;
		const session = device.session;
		if (session && session.ready && !session.closed) {
			const topic = `$iothub/twin/PATCH/properties/desired/?$version=${version}`;
			const qos = session.grantedQos(topic);
			if (qos !== undefined) session.publish(topic, JSON.stringify({...clean, $version: version}), qos);
		}
		this.#event({type: "desired", deviceId, fromDevice: false});
		return {version};
	}

	invokeMethod(deviceId: string, name: string, payload: unknown, timeoutSeconds = 30): Promise<{status: number; payload: unknown}> {
		const ctx = this.#ctx;
		let device: HubDevice;
		try {
			device = ctx.registry.device(deviceId);
		}
		catch (error) {
			return Promise.reject(error);
		}
		if (typeof name !== "string" || !name || name.includes("/") || name.includes("#") || name.includes("+"))
			return Promise.reject(new EmulatorHttpError(400, "A method name is a non-empty string without /, # or +."));
		const session = device.session;
		const topic = `$iothub/methods/POST/${name}/?$rid=`;
		const qos = session && session.ready && !session.closed ? session.grantedQos(`${topic}1`) : undefined;
		if (!session || qos === undefined)
			return Promise.reject(new EmulatorHttpError(404, `Device "${deviceId}" is not connected or not subscribed to $iothub/methods/POST/#.`));
		const body = JSON.stringify(payload === undefined ? null : payload);
		if (Buffer.byteLength(body) > METHOD_MAX_BYTES)
			return Promise.reject(new EmulatorHttpError(413, `A direct method's payload is at most 128 KB (this one is ${Buffer.byteLength(body)} bytes).`));
		ctx.stats.methodCalls++;
		deviceStats(ctx.stats, deviceId).methodCalls++;
		this.#event({type: "method", deviceId, fromDevice: false});
		// IoT Hub's request ids are hexadecimal counters.
		const rid = (++this.#methodCounter).toString(16);
		const timeout = Math.max(0, Number.isFinite(timeoutSeconds) ? timeoutSeconds : 30);
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				device.pendingMethods.delete(rid);
				reject(new EmulatorHttpError(504, `Device "${deviceId}" did not answer method "${name}" within ${timeout} s.`));
			}, timeout * 1000);
			device.pendingMethods.set(rid, {resolve, reject, timer});
			session.publish(`${topic}${rid}`, body, qos);
		});
	}

	/** Rejects the calls waiting for a device (it was deleted or the emulator closes). */
	abandonMethods(device: HubDevice, status: number, why: string): void {
		for (const [rid, pending] of device.pendingMethods) {
			clearTimeout(pending.timer);
			device.pendingMethods.delete(rid);
			pending.reject(new EmulatorHttpError(status, why));
		}
	}
}
