/*
 * A hostile hub: what IoT Hub allows itself to send, sent on demand (POST /faults with a `send.*`
 * kind), to find out whether a device survives it. Each one is sent at once (and `repeat` times,
 * `everyMs` apart), not armed like the other faults; what came of it is kept as a record (GET
 * /faults/sent): the method calls' answers, whether each cloud-to-device message was completed and
 * how often it was delivered, the desired versions.
 *
 * Sizes stay within what IoT Hub itself sends (a message of 64 KB, a method payload of 128 KB, a
 * desired section of 32 KB with string values of at most 4 KB), so a device that fails here fails on
 * Azure. The two sends IoT Hub would never make (a desired patch that is not JSON, a publish on a
 * topic the device did not subscribe to) stand for a broken or impersonated service.
 */
import type {Context} from "./context.js";
import {C2D_MAX_BYTES, EmulatorHttpError, METHOD_MAX_BYTES, type C2dMessage, type HubDevice} from "./registry.js";
import type {HubService} from "./hub.js";
/** IoT Hub's largest desired section. */
const DESIRED_MAX_BYTES = 32 * 1024;
/** IoT Hub's largest twin string value. */
const TWIN_STRING_MAX = 4096;
/** Kept for GET /faults/sent; older ones are dropped. */
const RECORDS_KEPT = 200;

export type HostileSend =
	/** A cloud-to-device message of `bytes` bytes (at most 64 KB), queued and delivered as any other. */
	| {kind: "send.c2d"; bytes: number}
	/** A direct method call whose JSON payload is `bytes` bytes long (default a small one; at most 128 KB). */
	| {kind: "send.method"; bytes?: number; name?: string; timeoutSeconds?: number}
	/** A desired-properties patch of about `bytes` bytes under `property` (default "hostile"), applied to the twin. */
	| {kind: "send.desired"; bytes?: number; property?: string}
	/** A desired-properties PUBLISH whose body is not JSON; the twin is not changed. */
	| {kind: "send.malformedDesired"}
	/** A PUBLISH on a topic the device did not subscribe to (default `devices/{id}/hostile/unsolicited`). */
	| {kind: "send.unsubscribed"; topic?: string; bytes?: number; qos?: 0 | 1};

export type HostileKind = HostileSend["kind"];
export const HOSTILE_KINDS: readonly HostileKind[] = ["send.c2d", "send.method", "send.desired", "send.malformedDesired", "send.unsubscribed"];

/** Every send names its device and may be repeated. */
export type HostileFault = HostileSend & {deviceId: string; repeat?: number; everyMs?: number};

export interface SentView {
	id: number;
	kind: HostileKind;
	deviceId: string;
	startedAt: string;
	/** Sends asked for, and made so far. */
	repeat: number;
	sent: number;
	/** Every send made and, for methods, answered (or failed). */
	done: boolean;
	bytes?: number;
	/** send.c2d: each message, whether the device completed it (PUBACK) and how often it was delivered. */
	messages?: {messageId: string; completed: boolean; deliveries: number}[];
	/** send.method: each call's answer, or why there was none. */
	results?: ({status: number; payload: unknown} | {error: string; status?: number})[];
	/** send.desired: the desired versions the patches made. */
	versions?: number[];
	/** send.unsubscribed, send.malformedDesired: PUBACKs the device sent for them (QoS 1 only). */
	acked?: number;
	/** Sends that could not be made (the device not connected), with why. */
	skipped?: string[];
}

interface Record_ {
	view: SentView;
	c2d: C2dMessage[];
	pending: number;
}

function fail(message: string): never {
	throw new EmulatorHttpError(400, `Invalid fault: ${message}`);
}

function integer(value: unknown, name: string, min: number, max: number, optional: boolean): void {
	if (value === undefined && optional) return;
	if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) fail(`"${name}" must be an integer from ${min} to ${max}`);
}

/** Checks a send.* fault; throws a 400 naming the field. */
export function validateHostile(f: Record<string, unknown>): HostileFault {
	if (typeof f.deviceId !== "string" || !f.deviceId) fail(`"${String(f.kind)}" needs the "deviceId" of the device to send to`);
	integer(f.repeat, "repeat", 1, 10_000, true);
	integer(f.everyMs, "everyMs", 0, 3_600_000, true);
	switch (f.kind) {
	case "send.c2d":
		integer(f.bytes, "bytes", 1, C2D_MAX_BYTES, false);
		break;
	case "send.method":
		integer(f.bytes, "bytes", 16, METHOD_MAX_BYTES, true);
		if (f.name !== undefined && (typeof f.name !== "string" || !f.name || /[/#+]/.test(f.name))) fail("\"name\" must be a method name without /, # or +");
		if (f.timeoutSeconds !== undefined && !(typeof f.timeoutSeconds === "number" && f.timeoutSeconds >= 0)) fail("\"timeoutSeconds\" must be a non-negative number");
		break;
	case "send.desired":
		integer(f.bytes, "bytes", 16, DESIRED_MAX_BYTES - 64, true);
		if (f.property !== undefined && (typeof f.property !== "string" || !/^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(f.property))) fail("\"property\" must be a property name of letters, digits and _");
		break;
	case "send.unsubscribed":
		integer(f.bytes, "bytes", 0, 256 * 1024, true);
		if (f.qos !== undefined && f.qos !== 0 && f.qos !== 1) fail("\"qos\" must be 0 or 1");
		if (f.topic !== undefined && (typeof f.topic !== "string" || !f.topic || /[+#\u0000]/.test(f.topic))) fail("\"topic\" must be a topic name without wildcards");
		break;
	default:
		break;
	}
	return {...f} as unknown as HostileFault;
}

/** A desired patch of about `bytes` bytes of JSON: strings of at most 4 KB, as IoT Hub allows. */
function paddedPatch(property: string, bytes: number): Record<string, unknown> {
	const value: Record<string, string> = {};
	let left = bytes - property.length - 24; // {"p":{...},"$version":N}
	for (let i = 0; left > 0; i++) {
		const key = `p${i}`;
		const n = Math.max(1, Math.min(TWIN_STRING_MAX, left - key.length - 6));
		value[key] = "x".repeat(n);
		left -= n + key.length + 6;
	}
	return {[property]: value};
}

/** A JSON text of exactly `bytes` bytes (at least 16). */
function jsonOfSize(bytes: number): unknown {
	return {data: "x".repeat(bytes - 11)}; // {"data":"…"}
}

export class HostileHub {
	#ctx: Context;
	#hub: HubService;
	#records: Record_[] = [];
	#next = 1;

	constructor(ctx: Context, hub: HubService) {
		this.#ctx = ctx;
		this.#hub = hub;
	}

	/** Starts a send (at once, then `repeat - 1` more `everyMs` apart); returns its record. */
	send(fault: HostileFault): SentView {
		const device = this.#ctx.registry.device(fault.deviceId);
		const repeat = fault.repeat ?? 1;
		const record: Record_ = {
			view: {id: this.#next++, kind: fault.kind, deviceId: device.deviceId, startedAt: new Date().toISOString(), repeat, sent: 0, done: false},
			c2d: [],
			pending: 0,
		};
		if ("bytes" in fault && fault.bytes !== undefined) record.view.bytes = fault.bytes;
		this.#records.push(record);
		if (this.#records.length > RECORDS_KEPT) this.#records.shift();
		this.#ctx.log(`hub ${device.deviceId}: hostile ${fault.kind}${record.view.bytes !== undefined ? ` of ${record.view.bytes} bytes` : ""}${repeat > 1 ? `, ${repeat} times ${fault.everyMs ?? 0} ms apart` : ""}`);
		// The first send happens now, so that one the hub would refuse (a full queue, a desired section
		// over 32 KB) fails the request; a later one that fails is recorded as skipped.
		try {
			this.#once(fault, device, record, 0);
		}
		catch (error) {
			this.#records = this.#records.filter(r => r !== record);
			throw error;
		}
		const every = fault.everyMs ?? 0;
		for (let i = 1; i < repeat; i++) {
			const at = i;
			setTimeout(() => {
				try {
					this.#once(fault, device, record, at);
				}
				catch (error) {
					this.#skip(record, (error as Error).message);
				}
			}, every * i).unref();
		}
		return this.#view(record);
	}

	sent(deviceId?: string): SentView[] {
		return this.#records.filter(r => deviceId === undefined || r.view.deviceId === deviceId).map(r => this.#view(r));
	}

	#view(r: Record_): SentView {
		const view = structuredClone(r.view);
		if (r.view.kind === "send.c2d") {
			const device = this.#ctx.registry.devices.get(r.view.deviceId);
			view.messages = r.c2d.map(m => ({messageId: m.messageId, completed: !device?.c2d.includes(m), deliveries: m.deliveryCount}));
		}
		view.done = view.sent + (view.skipped?.length ?? 0) >= view.repeat && r.pending === 0;
		return view;
	}

	#skip(record: Record_, why: string): void {
		(record.view.skipped ??= []).push(why);
	}

	#once(fault: HostileFault, device: HubDevice, record: Record_, index: number): void {
		const view = record.view;
		const session = device.session;
		const online = session && session.ready && !session.closed ? session : undefined;
		switch (fault.kind) {
		case "send.c2d": {
			const {messageId} = this.#hub.sendC2d(device.deviceId, {body: "x".repeat(fault.bytes), properties: {hostile: String(index + 1)}});
			const message = device.c2d.find(m => m.messageId === messageId);
			if (message) record.c2d.push(message);
			view.sent++;
			return;
		}
		case "send.method": {
			view.sent++;
			record.pending++;
			const results = view.results ??= [];
			const slot = results.length;
			results.push({error: "no answer yet"});
			const payload = fault.bytes === undefined ? {hostile: index + 1} : jsonOfSize(fault.bytes);
			this.#hub.invokeMethod(device.deviceId, fault.name ?? "hostile", payload, fault.timeoutSeconds ?? 30).then(
				answer => { results[slot] = answer; },
				(error: Error) => { results[slot] = {error: error.message, ...(error instanceof EmulatorHttpError ? {status: error.status} : {})}; },
			).finally(() => { record.pending--; });
			return;
		}
		case "send.desired": {
			const property = fault.property ?? "hostile";
			const patch = fault.bytes === undefined ? {[property]: index + 1} : paddedPatch(property, fault.bytes);
			const {version} = this.#hub.patchDesired(device.deviceId, patch);
			(view.versions ??= []).push(version);
			view.sent++;
			return;
		}
		case "send.malformedDesired": {
			if (!online) return this.#skip(record, "the device is not connected");
			const topic = `$iothub/twin/PATCH/properties/desired/?$version=${device.twin.desiredVersion + 1}`;
			const qos = online.grantedQos(topic);
			if (qos === undefined) return this.#skip(record, "the device is not subscribed to desired-property updates");
			// Cut off inside a string: no JSON parser takes it.
			online.publish(topic, `{"hostile":{"cut":"off here`, qos, {onAck: () => { view.acked = (view.acked ?? 0) + 1; }});
			view.sent++;
			return;
		}
		case "send.unsubscribed": {
			if (!online) return this.#skip(record, "the device is not connected");
			const topic = fault.topic ?? `devices/${device.deviceId}/hostile/unsolicited`;
			online.publish(topic, Buffer.alloc(fault.bytes ?? 64, 0x78), fault.qos ?? 1, {onAck: () => { view.acked = (view.acked ?? 0) + 1; }});
			view.sent++;
			return;
		}
		}
	}
}
