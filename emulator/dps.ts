/*
 * The Device Provisioning Service half: CONNECT checks, register and operation-status requests.
 *
 * Like DPS, the CONNECT only checks the token's shape, resource and expiry; the signature is
 * checked against the enrollment when the device registers (DPS answers 401, errorCode 401002).
 */
import * as crypto from "node:crypto";
import type {AedesPublishPacket} from "aedes";
import {type Context, errorBody, newEtag, truncateJson} from "./context.js";
import type {DpsOperation} from "./faults.js";
import {type RegistrationRecord, deviceStats, isRegistrationId, newHubDevice, registrationKey} from "./registry.js";
import {type ParsedSas, deriveDeviceKey, parseSas, verifySas} from "./sas.js";
import type {Session} from "./session.js";
import {isPlainObject, matchRequest, mergePatch, parseQuery} from "./wire.js";
import {type DpsAttestation, attestX509} from "./x509-attestation.js";
import type {PresentedChain} from "./x509.js";

export const DPS_RESPONSE_FILTER = "$dps/registrations/res/#";
const REGISTER_PREFIX = "$dps/registrations/PUT/iotdps-register/";
const POLL_PREFIX = "$dps/registrations/GET/iotdps-get-operationstatus/";
/**
 * `{idScope}/registrations/{registrationId}/api-version=...` (no `?`, unlike the hub), with further
 * parameters such as Microsoft's SDKs' `&ClientVersion=...` in any order.
 */
const USERNAME = /^([^/]+)\/registrations\/([^/]+)\/([^/?]*)$/;

export type ConnectCheck =
	| {ok: true; id: string; sas?: ParsedSas; certificates?: PresentedChain; modelId?: string}
	| {ok: false; returnCode: 2 | 4 | 5; reason: string};

export function isDpsUsername(username: string | undefined): boolean {
	const m = username ? USERNAME.exec(username) : null;
	return !!m && !!parseQuery(m[3])?.get("api-version");
}

/**
 * With a password, a SAS token; without one (absent or empty, as Microsoft's SDKs send it), the
 * client certificate of the TLS handshake, checked when the device registers. The registration id's
 * form is checked then too: DPS answers an invalid one with 400004 "Invalid RegistrationId".
 */
export function checkDpsConnect(ctx: Context, clientId: string, username: string, password: string | undefined, certificates?: PresentedChain): ConnectCheck {
	const m = USERNAME.exec(username);
	if (!m || !parseQuery(m[3])?.get("api-version")) return {ok: false, returnCode: 4, reason: "username is not {idScope}/registrations/{registrationId}/api-version=..."};
	const [, idScope, registrationId] = m;
	if (idScope.toLowerCase() !== ctx.settings.idScope.toLowerCase()) return {ok: false, returnCode: 4, reason: `unknown ID scope "${idScope}"`};
	if (clientId !== registrationId) return {ok: false, returnCode: 2, reason: `client id "${clientId}" differs from the registration id in the username`};
	if (!password && certificates) return {ok: true, id: registrationId, certificates};
	const parsed = parseSas(password);
	if (!parsed.ok) return {ok: false, returnCode: 4, reason: password ? parsed.reason : "no password (a SAS token) and no client certificate"};
	const sas = parsed.sas;
	const expected = `${idScope}/registrations/${registrationId}`;
	if (sas.resource.toLowerCase() !== expected.toLowerCase()) return {ok: false, returnCode: 5, reason: `token resource (sr) is not ${expected}`};
	// Microsoft's Node SDK sends skn=registration, its Embedded C SDK no skn at all: DPS takes both.
	if (sas.skn !== undefined && sas.skn !== "registration") return {ok: false, returnCode: 5, reason: "a DPS enrollment token has skn=registration or no skn"};
	if (sas.se * 1000 <= Date.now()) return {ok: false, returnCode: 5, reason: "token expired (se is in the past)"};
	return {ok: true, id: registrationId, sas};
}

export function dpsSubscriptionAllowed(filter: string): boolean {
	return filter === DPS_RESPONSE_FILTER;
}

type DpsRequest = {op: "register"; rid: string} | {op: "poll"; rid: string; operationId: string};

/** Classifies a device PUBLISH; undefined means a topic DPS does not accept (the connection is closed). */
export function parseDpsRequest(topic: string): DpsRequest | undefined {
	const register = matchRequest(topic, REGISTER_PREFIX);
	if (register) {
		const rid = register.get("$rid");
		return rid ? {op: "register", rid} : undefined;
	}
	const poll = matchRequest(topic, POLL_PREFIX);
	if (poll) {
		const rid = poll.get("$rid");
		const operationId = poll.get("operationId");
		return rid && operationId !== undefined ? {op: "poll", rid, operationId} : undefined;
	}
	return undefined;
}

type Attestation = DpsAttestation;

interface Operation {
	operationId: string;
	registrationId: string;
	payload?: unknown;
	hasPayload: boolean;
	attestation: Attestation;
	polls: number;
	final?: {status: "assigned" | "failed" | "disabled"; body: string};
}

export class DpsService {
	#ctx: Context;
	#operations = new Map<string, Operation>();
	/** When the register requests let through by a dps.throttle fault arrived (the last second's worth). */
	#admitted: number[] = [];

	constructor(ctx: Context) {
		this.#ctx = ctx;
	}

	/**
	 * DPS does not know a device's enrollment group without trying each: an individual enrollment
	 * for the registration id takes precedence; otherwise every group whose derived key verifies.
	 */
	#attest(registrationId: string, sas: ParsedSas): Attestation | undefined {
		const individual = this.#ctx.registry.enrollments.get(registrationKey(registrationId));
		if (individual) {
			const key = individual.symmetricKey;
			return key && verifySas(sas, key) ? {kind: "individual", enrollment: individual, auth: {type: "sas", key}} : undefined;
		}
		for (const group of this.#ctx.registry.groups.values()) {
			if (!group.symmetricKey) continue;
			const key = deriveDeviceKey(group.symmetricKey, registrationId);
			if (verifySas(sas, key)) return {kind: "group", group, auth: {type: "sas", key}};
		}
		return undefined;
	}

	#reply(session: Session, status: number, rid: string, body: string, retryAfter?: number): void {
		const topic = `$dps/registrations/res/${status}/?$rid=${encodeURIComponent(rid)}${retryAfter !== undefined ? `&retry-after=${retryAfter}` : ""}`;
		const qos = session.grantedQos(topic);
		if (qos === undefined) {
			this.#ctx.log(`dps ${session.id}: reply ${status} dropped: not subscribed to ${DPS_RESPONSE_FILTER}`);
			return;
		}
		this.#ctx.log(`dps ${session.id}: -> ${status} rid=${rid}`);
		session.publish(topic, body, qos);
	}

	handle(session: Session, request: DpsRequest, packet: AedesPublishPacket): void {
		const ctx = this.#ctx;
		const stats = deviceStats(ctx.stats, session.id);
		if (request.op === "register") {
			ctx.stats.dpsRegisterRequests++;
			stats.dpsRegisterRequests++;
		}
		else {
			ctx.stats.dpsPollRequests++;
			stats.dpsPollRequests++;
		}
		const target = {registrationId: session.id, deviceId: session.id};
		const on = request.op as DpsOperation;
		if (ctx.faults.take("dps.drop", target, f => f.on === on)) {
			ctx.log(`dps ${session.id}: fault dps.drop on ${on}: closing the connection`);
			session.close();
			return;
		}
		if (request.op === "register" && this.#throttled(session, request.rid)) return;
		const delay = ctx.faults.take("dps.delay", target, f => f.on === on);
		const proceed = () => {
			const status = ctx.faults.take("dps.status", target, f => f.on === on);
			if (status) {
				const code = status.status * 1000 + (status.status === 401 ? 2 : 1);
				this.#reply(session, status.status, request.rid, errorBody(code, `Injected fault: status ${status.status}`), status.retryAfter);
				return;
			}
			if (request.op === "register") this.#register(session, request.rid, packet.payload);
			else this.#poll(session, request.rid, request.operationId);
		};
		if (delay) session.timer(delay.ms, proceed);
		else proceed();
	}

	/** A dps.throttle fault: over its rate in the last second, the register request gets 429 + retry-after. */
	#throttled(session: Session, rid: string): boolean {
		const fault = this.#ctx.faults.peek("dps.throttle", {registrationId: session.id, deviceId: session.id});
		if (!fault) return false;
		const now = Date.now();
		while (this.#admitted.length && now - this.#admitted[0] >= 1000) this.#admitted.shift();
		if (this.#admitted.length < fault.perSecond) {
			this.#admitted.push(now);
			return false;
		}
		this.#reply(session, 429, rid, errorBody(429001, "Operations are being throttled for this tenant (injected dps.throttle fault)."), fault.retryAfter ?? 1);
		return true;
	}

	#register(session: Session, rid: string, payload: Buffer | string): void {
		const ctx = this.#ctx;
		// An empty body is a registration of the connection's id: Microsoft's Embedded C provisioning
		// sample publishes exactly that, and DPS accepts it.
		const text = payload.toString();
		let body: unknown = {};
		if (text.trim()) {
			try {
				body = JSON.parse(text);
			}
			catch {
				this.#reply(session, 400, rid, errorBody(400001, "The request body is not valid JSON."));
				return;
			}
		}
		if (!isPlainObject(body) || (body.registrationId !== undefined && typeof body.registrationId !== "string")) {
			this.#reply(session, 400, rid, errorBody(400001, "The request body is a JSON object whose \"registrationId\", if given, is a string."));
			return;
		}
		if (!isRegistrationId(session.id)) {
			// What DPS answered for an upper-case CN while it still refused them (Azure/azure-iot-sdk-c#405).
			this.#reply(session, 400, rid, errorBody(400004, "Invalid RegistrationId"));
			return;
		}
		// Registration ids are case-insensitive.
		if (typeof body.registrationId === "string" && registrationKey(body.registrationId) !== registrationKey(session.id)) {
			this.#reply(session, 400, rid, errorBody(400004, `registrationId "${body.registrationId}" in the body differs from the one in the connection ("${session.id}").`));
			return;
		}
		let attestation: Attestation | undefined;
		if (session.sas) {
			attestation = this.#attest(session.id, session.sas);
			if (!attestation) {
				ctx.log(`dps ${session.id}: register refused: no enrollment whose key verifies the token`);
				this.#reply(session, 401, rid, errorBody(401002, "Unauthorized"));
				return;
			}
		}
		else {
			const decision = attestX509(ctx.registry, session.id, session.certificates ?? []);
			if (!decision.ok) {
				ctx.log(`dps ${session.id}: register refused: ${decision.reason}`);
				this.#reply(session, 401, rid, errorBody(401002, "Invalid certificate."));
				return;
			}
			attestation = decision.value;
		}
		const operationId = `4.${crypto.randomBytes(8).toString("hex")}.${crypto.randomUUID()}`;
		const hasPayload = Object.prototype.hasOwnProperty.call(body, "payload");
		this.#operations.set(operationId, {operationId, registrationId: session.id, payload: body.payload, hasPayload, attestation, polls: 0});
		const reply = JSON.stringify({operationId, status: "assigning"});
		ctx.log(`dps ${session.id}: register accepted (${attestation.kind === "group" ? `group ${attestation.group.groupId}` : "individual enrollment"})`);
		this.#reply(session, 202, rid, ctx.faults.take("dps.malformed", {registrationId: session.id, deviceId: session.id}, f => f.on === "register") ? truncateJson(reply) : reply, ctx.settings.retryAfterSeconds);
	}

	#poll(session: Session, rid: string, operationId: string): void {
		const ctx = this.#ctx;
		const operation = this.#operations.get(operationId);
		if (!operation || registrationKey(operation.registrationId) !== registrationKey(session.id)) {
			this.#reply(session, 404, rid, errorBody(404001, `Operation "${operationId}" not found for this registration.`));
			return;
		}
		const malformed = () => !!ctx.faults.take("dps.malformed", {registrationId: session.id, deviceId: session.id}, f => f.on === "poll");
		if (!operation.final && operation.polls < ctx.settings.pollsBeforeAssigned) {
			operation.polls++;
			const reply = JSON.stringify({operationId, status: "assigning", registrationState: {registrationId: operation.registrationId, status: "assigning"}});
			this.#reply(session, 202, rid, malformed() ? truncateJson(reply) : reply, ctx.settings.retryAfterSeconds);
			return;
		}
		operation.final ??= this.#complete(operation);
		this.#reply(session, 200, rid, malformed() ? truncateJson(operation.final.body) : operation.final.body);
	}

	#complete(operation: Operation): NonNullable<Operation["final"]> {
		const ctx = this.#ctx;
		const now = new Date().toISOString();
		const registrationId = operation.registrationId;
		const failed = ctx.faults.take("dps.failed", {registrationId, deviceId: registrationId});
		if (failed) {
			const state = {registrationId, createdDateTimeUtc: now, status: "failed", errorCode: 400209, errorMessage: "Registration failed (injected dps.failed fault).", lastUpdatedDateTimeUtc: now, etag: newEtag()};
			ctx.log(`dps ${registrationId}: registration failed (fault)`);
			return {status: "failed", body: JSON.stringify({operationId: operation.operationId, status: "failed", registrationState: state})};
		}
		const att = operation.attestation;
		// Look the enrollment up again: it may have been disabled while the device was polling.
		const enabled = att.kind === "individual" ? ctx.registry.enrollments.get(registrationKey(att.enrollment.registrationId))?.enabled : ctx.registry.groups.get(att.group.groupId)?.enabled;
		if (!enabled) {
			const state = {registrationId, status: "disabled", lastUpdatedDateTimeUtc: now, etag: newEtag()};
			ctx.log(`dps ${registrationId}: enrollment disabled`);
			return {status: "disabled", body: JSON.stringify({operationId: operation.operationId, status: "disabled", registrationState: state})};
		}
		const deviceId = att.kind === "individual" && att.enrollment.deviceId ? att.enrollment.deviceId : att.commonName ?? registrationId;
		const key = registrationKey(registrationId);
		const previous = ctx.registry.registrations.get(key);
		const record: RegistrationRecord = {
			registrationId,
			deviceId,
			assignedHub: ctx.settings.hubName,
			createdDateTimeUtc: previous?.createdDateTimeUtc ?? now,
			lastUpdatedDateTimeUtc: now,
			etag: newEtag(),
			enrollment: att.kind === "individual" ? {kind: "individual", registrationId: att.enrollment.registrationId} : {kind: "group", groupId: att.group.groupId},
		};
		ctx.registry.registrations.set(key, record);
		this.#assignDevice(record, att);
		// Re-registration to the hub the device already had is "reprovisionedToInitialAssignment".
		const substatus = previous ? "reprovisionedToInitialAssignment" : "initialAssignment";
		const state: Record<string, unknown> = {
			// Azure's X.509 reply starts with "x509":{} (iot-dps-mqtt-support.md); what it may hold is unconfirmed.
			...(att.auth.type === "sas" ? {} : {x509: {}}),
			registrationId,
			createdDateTimeUtc: record.createdDateTimeUtc,
			assignedHub: record.assignedHub,
			deviceId,
			status: "assigned",
			substatus,
			lastUpdatedDateTimeUtc: now,
			etag: record.etag,
		};
		if (operation.hasPayload) state.payload = operation.payload;
		ctx.log(`dps ${registrationId}: assigned to ${record.assignedHub} as ${deviceId} (${substatus})`);
		return {status: "assigned", body: JSON.stringify({operationId: operation.operationId, status: "assigned", registrationState: state})};
	}

	#assignDevice(record: RegistrationRecord, att: Attestation): void {
		const registry = this.#ctx.registry;
		const existing = registry.devices.get(record.deviceId);
		if (existing) {
			existing.registrationId = record.registrationId;
			existing.authentication = att.auth;
			existing.hubName = record.assignedHub;
			return;
		}
		const device = newHubDevice(record.deviceId, record.registrationId, att.auth, record.assignedHub);
		if (att.kind === "individual" && isPlainObject(att.enrollment.initialTwin)) {
			const initial = att.enrollment.initialTwin as Record<string, unknown>;
			// Azure's form is {"properties":{"desired":{...}}}; a bare {"desired":{...}} is accepted too.
			const desired = isPlainObject(initial.properties) && isPlainObject(initial.properties.desired) ? initial.properties.desired : initial.desired;
			if (isPlainObject(desired)) mergePatch(device.twin.desired, desired);
		}
		registry.devices.set(record.deviceId, device);
	}
}
