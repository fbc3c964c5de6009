/*
 * The device twin: GET and reported-properties PATCH requests matched to their replies by $rid,
 * desired-properties updates, and the full read after every connect (the hub sends desired updates
 * only while the device is connected, so what changed while it was away comes from that read).
 *
 * A twin document or desired patch over the device's limit is never buffered (the MQTT session skips
 * it, src/mqtt/codec.ts): the request fails with hub.tooLarge, a patch is reported and ignored, and
 * the device carries on with what it has.
 */
import type {HostAdapter, TimerHandle} from "../host.js";
import {AzureIoTError} from "../errors.js";
import {utf8Decode, utf8Encode} from "../encoding.js";
import {Backoff} from "../backoff.js";
import type {MqttMessage} from "../mqtt/types.js";
import type {HubConnection} from "./connection.js";
import {reportedPatchTopic, twinGetTopic} from "./topics.js";
import {clip} from "./telemetry.js";

export interface Twin {
	desired: Record<string, unknown>;
	reported: Record<string, unknown>;
}

/** A twin document or desired patch the device did not take: larger than maxTwinBytes, skipped unread. */
export interface TwinRefusal {
	/** "desired": a desired-properties patch; "document": the twin read after a connect. */
	readonly kind: "desired" | "document";
	readonly size: number;
	readonly limit: number;
	/** The patch's desired $version, when the topic gave it. */
	readonly version?: number;
}

/** What comes with a desired document handed to the application. */
export interface DesiredInfo {
	/** The whole desired document (the read after a connect), not a patch. */
	complete: boolean;
	/** With a complete document: the reported properties as the hub has them. */
	reported?: Record<string, unknown>;
}

interface TwinReply {
	status: number;
	version?: number;
	payload: Uint8Array;
}

interface TwinOp {
	readonly topic: string;
	readonly payload: Uint8Array;
	/** Re-sent after a reconnect (user requests) or failed with mqtt.closed (the per-connect read). */
	readonly retry: boolean;
	/** Generation it was last published on; 0 = not yet on this connection. */
	sentGen: number;
	timer: TimerHandle | undefined;
	/** How it ended (one function, not a promise's two: each costs heap while the request waits). */
	done: TwinDone;
}

type TwinDone = (error: AzureIoTError | null, reply?: TwinReply) => void;

/** Ends a request in a job of its own, as a promise's settling would: never inside the handler of the reply. */
function finish(op: TwinOp, error: AzureIoTError | null, reply?: TwinReply): void {
	Promise.resolve().then(() => op.done(error, reply));
}

export interface TwinHooks {
	onDesired?: (patch: Record<string, unknown>, version: number, info: DesiredInfo) => void;
	/** Problems that do not end the connection. */
	error(error: AzureIoTError): void;
	/** A twin document or desired patch over the limit (the error says so in words). */
	refused(refusal: TwinRefusal, error: AzureIoTError): void;
	/** The per-connect read finished (or failed and was reported): the client counts as open. */
	readDone(): void;
	scrub(text: string): string;
	/** The twin limit, for the error messages. */
	readonly maxTwinBytes: number;
}

export class TwinFeature {
	private _connection: HubConnection;
	private _hooks: TwinHooks;
	private _timeoutMs: number;
	private _ops = new Map<string, TwinOp>();
	private _rid = 0;
	private _desiredVersion: number | undefined;
	private _backoff: Backoff;
	private _retryTimer: TimerHandle | undefined;

	constructor(connection: HubConnection, settings: {operationTimeoutMs: number; backoff: {initialMs: number; maxMs: number}}, hooks: TwinHooks) {
		this._connection = connection;
		this._hooks = hooks;
		this._timeoutMs = settings.operationTimeoutMs;
		this._backoff = new Backoff(settings.backoff, () => connection.adapter.random());
	}

	get(): Promise<Twin> {
		return new Promise((resolve, reject) => this._request(twinGetTopic, NO_BYTES, true, (error, reply) => {
			if (error) reject(error);
			else twinOf(reply!, resolve, reject);
		}));
	}

	/** Sends a reported-properties patch (null deletes a property); resolves with the new reported $version. */
	report(json: string): Promise<number> {
		return new Promise((resolve, reject) => this.reportWith(json, (error, version) => error ? reject(error) : resolve(version!)));
	}

	/** report() with a callback: null and the new reported $version, or the error; never from inside this call. */
	reportWith(json: string, done: (error: AzureIoTError | null, version?: number) => void): void {
		this._request(reportedPatchTopic, utf8Encode(json), true, (error, reply) => {
			if (error) done(error);
			else if (reply!.version === undefined)
				done(new AzureIoTError("hub.badReply", `The hub acknowledged the reported-properties update (status ${reply!.status}) without a $version. This is a hub or emulator bug`, {retriable: true}));
			else done(null, reply!.version);
		});
	}

	/** Forget the desired version delivered (another hub or device). */
	forget(): void {
		this._desiredVersion = undefined;
	}

	onReady(gen: number): void {
		this._read(gen);
		for (const op of this._ops.values()) if (op.sentGen !== gen) this._send(op);
	}

	onEnd(closing: boolean, closedError: AzureIoTError): void {
		const adapter = this._adapter;
		adapter.clearTimer(this._retryTimer);
		this._retryTimer = undefined;
		for (const [rid, op] of this._ops) {
			if (!closing && op.retry) {
				op.sentGen = 0;
				continue;
			}
			this._ops.delete(rid);
			adapter.clearTimer(op.timer);
			finish(op, closing ? closedError : new AzureIoTError("mqtt.closed", "The connection to the hub ended before the twin reply arrived", {retriable: true}));
		}
	}

	/** A reply on $iothub/twin/res/. */
	onReply(status: number, rid: string, version: number | undefined, message: MqttMessage): void {
		const op = this._ops.get(rid);
		if (!op) return; // timed out already, or the reply to a request of an earlier run
		this._ops.delete(rid);
		this._adapter.clearTimer(op.timer);
		if (message.dropped) {
			const size = message.size ?? 0;
			const error = new AzureIoTError("hub.tooLarge",
				`The twin document (${size} bytes) is larger than this device takes (maxTwinBytes ${this._hooks.maxTwinBytes}); it was not read, and the device keeps the desired values it has. Keep the twin's properties smaller, or raise maxTwinBytes if the heap allows`,
				{status});
			// The read after a connect is the device's own: its refusal is reported here, once.
			if (!op.retry) this._hooks.refused(Object.freeze({kind: "document" as const, size, limit: this._hooks.maxTwinBytes}), error);
			finish(op, error);
			return;
		}
		if (status >= 300 || status < 200) {
			const text = clip(utf8Decode(message.payload));
			finish(op, new AzureIoTError("hub.rejected",
				`The hub answered the twin request with status ${status}${text ? ": " + this._hooks.scrub(text) : ""}${status === 429 ? ". Throttled: send twin updates less often" : ""}`,
				{status, retriable: status === 429 || status >= 500}));
			return;
		}
		finish(op, null, {status, version, payload: message.payload});
		message.payload = NO_BYTES;
	}

	/** A desired-properties update. */
	onDesiredPatch(topicVersion: number | undefined, message: MqttMessage): void {
		if (message.dropped) {
			const size = message.size ?? 0;
			const refusal: TwinRefusal = topicVersion !== undefined
				? {kind: "desired", size, limit: this._hooks.maxTwinBytes, version: topicVersion}
				: {kind: "desired", size, limit: this._hooks.maxTwinBytes};
			this._hooks.refused(Object.freeze(refusal), new AzureIoTError("hub.tooLarge",
				`Ignored a desired-properties update of ${size} bytes${topicVersion !== undefined ? ` (version ${topicVersion})` : ""}: larger than this device takes (maxTwinBytes ${this._hooks.maxTwinBytes}). The device keeps the desired values it has. Send smaller patches, or raise maxTwinBytes if the heap allows`,
				{retriable: false}));
			return;
		}
		let patch: unknown;
		try {
			patch = JSON.parse(takeText(message));
		}
		catch {
			patch = undefined;
		}
		if (!isRecord(patch)) {
			this._hooks.error(new AzureIoTError("hub.badReply", "Ignored a desired-properties update that is not a JSON object", {retriable: true}));
			return;
		}
		const version = topicVersion ?? (typeof patch.$version === "number" ? patch.$version : undefined);
		if (version === undefined) {
			this._hooks.error(new AzureIoTError("hub.badReply", "Ignored a desired-properties update without a $version", {retriable: true}));
			return;
		}
		// Already delivered through the twin read of this connection.
		if (this._desiredVersion !== undefined && version <= this._desiredVersion) return;
		this._desiredVersion = version;
		this._hooks.onDesired?.(patch, version, {complete: false});
	}

	private get _adapter(): HostAdapter {
		return this._connection.adapter;
	}

	private _request(topicFor: (rid: string) => string, payload: Uint8Array, retry: boolean, done: TwinDone): void {
		if (this._connection.state === "closed") {
			const error = new AzureIoTError("hub.closed", "The hub client was closed. Create a new HubClient to connect again");
			Promise.resolve().then(() => done(error));
			return;
		}
		const rid = String(++this._rid);
		const op: TwinOp = {topic: topicFor(rid), payload, retry, sentGen: 0, timer: undefined, done};
		op.timer = this._adapter.setTimer(() => {
			if (this._ops.get(rid) !== op) return;
			this._ops.delete(rid);
			done(new AzureIoTError("mqtt.timeout",
				`No twin reply from ${this._connection.hubHost} within ${this._timeoutMs} ms${this._connection.state === "ready" ? "" : " (not connected)"}. Try again; raise operationTimeoutMs on slow links`,
				{retriable: true}));
		}, this._timeoutMs);
		this._ops.set(rid, op);
		const gen = this._connection.generation;
		if (this._connection.isReady(gen)) this._send(op);
	}

	private _send(op: TwinOp): void {
		const connection = this._connection;
		const gen = connection.generation;
		if (!connection.isReady(gen)) return;
		op.sentGen = gen;
		connection.send(gen, op.topic, op.payload, 0, error => {
			if (error === undefined) return;
			if (![...this._ops.values()].includes(op)) return;
			if (error instanceof AzureIoTError && (error.code === "mqtt.tooLarge" || error.code === "config")) {
				for (const [rid, o] of this._ops) if (o === op) this._ops.delete(rid);
				this._adapter.clearTimer(op.timer);
				finish(op, new AzureIoTError(error.code, this._hooks.scrub(error.message)));
			}
			else if (op.sentGen === gen) op.sentGen = 0; // sent again after the reconnect
		});
	}

	/** The read after each connect: delivers the full desired document if it changed while we were away. */
	private _read(gen: number): void {
		const connection = this._connection;
		const read = (twin: Twin) => {
			if (gen !== connection.generation || connection.state === "closed") return;
			this._backoff.reset();
			const version = twin.desired.$version;
			if (typeof version === "number" && version !== this._desiredVersion) {
				this._desiredVersion = version;
				this._hooks.onDesired?.(twin.desired, version, {complete: true, reported: twin.reported});
			}
			this._hooks.readDone();
		};
		const failed = (error: AzureIoTError) => {
			if (!connection.isReady(gen)) return; // the next connection reads again
			if (error.code !== "hub.tooLarge") this._hooks.error(error); // a refusal was reported as such
			this._hooks.readDone();
			// A twin too large to read stays so until someone shrinks it: no retry loop, the next connection reads again.
			if (!connection.isReady(gen) || error.code === "hub.tooLarge") return;
			this._adapter.clearTimer(this._retryTimer);
			this._retryTimer = this._adapter.setTimer(() => {
				this._retryTimer = undefined;
				if (connection.isReady(gen)) this._read(gen);
			}, this._backoff.next());
		};
		this._request(twinGetTopic, NO_BYTES, false, (error, reply) => {
			if (error) failed(error);
			else twinOf(reply!, read, failed);
		});
	}
}

/** The twin document of a reply, to `ok`, or why it is not one, to `bad`. */
function twinOf(reply: TwinReply, ok: (twin: Twin) => void, bad: (error: AzureIoTError) => void): void {
	let twin: Twin;
	try {
		twin = parseTwin(reply);
	}
	catch (e) {
		bad(e as AzureIoTError);
		return;
	}
	ok(twin);
}

function parseTwin(reply: TwinReply): Twin {
	let doc: unknown;
	try {
		doc = JSON.parse(takeText(reply));
	}
	catch {
		doc = undefined;
	}
	if (!isRecord(doc) || !isRecord(doc.desired) || !isRecord(doc.reported))
		throw new AzureIoTError("hub.badReply", "The twin document from the hub is not JSON of the form {\"desired\":{…},\"reported\":{…}}", {retriable: true});
	return {desired: doc.desired, reported: doc.reported};
}

const NO_BYTES = new Uint8Array(0);

/**
 * The payload as text, taken out of its holder: once decoded the bytes are garbage, so that a
 * JSON.parse after it holds the text and what it makes, not the bytes as well (on the device the
 * three at once were what ran out of memory first; bench/limits.ts).
 */
export function takeText(holder: {payload: Uint8Array}): string {
	const bytes = holder.payload;
	holder.payload = NO_BYTES;
	return utf8Decode(bytes);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

Object.freeze(TwinFeature.prototype);
Object.freeze(TwinFeature);
