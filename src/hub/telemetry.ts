/*
 * Telemetry: device-to-cloud messages at QoS 1, kept in the bounded outbox (./outbox.ts: refuse new
 * when full, never drop what was accepted) until the hub acknowledges them, and re-sent with the
 * same $.mid after a reconnect, so that the receiver can spot a duplicate.
 */
import {AzureIoTError, configError} from "../errors.js";
import {utf8Encode} from "../encoding.js";
import {Outbox, type OutboxEntry} from "./outbox.js";
import type {HubConnection} from "./connection.js";
import {isSystemProperty, telemetryBag, telemetryTopic} from "./topics.js";

export interface TelemetryOptions {
	properties?: Record<string, string>;
	/** Default application/json for objects and JSON text. */
	contentType?: string;
	/** Default utf-8 for strings and objects. */
	contentEncoding?: string;
	/** Generated if omitted; kept across re-sends so the receiver can spot duplicates. */
	messageId?: string;
	correlationId?: string;
	/** IoT Plug and Play component, sent as `$.sub`. */
	component?: string;
}

export interface TelemetryHooks {
	/** A message was refused because the queue is full. */
	onOverflow(refused: {messageId: string}): void;
	/** A publish failed in a way that sending it again cannot fix: the message is refused. */
	refuse(error: unknown): AzureIoTError;
	uuid(): string;
}

/** How a message ends: null and its id once the hub acknowledged it, or the error. */
export type TelemetryDone = (error: AzureIoTError | null, result?: {messageId: string}) => void;

export class Telemetry {
	private _connection: HubConnection;
	private _hooks: TelemetryHooks;
	private _outbox: Outbox;
	private _maxInFlight: number;
	private _flushQueued = false;
	sent = 0;
	acked = 0;
	resent = 0;

	constructor(connection: HubConnection, settings: {queueLimit: number; maxInFlight: number}, hooks: TelemetryHooks) {
		this._connection = connection;
		this._hooks = hooks;
		this._outbox = new Outbox(settings.queueLimit);
		this._maxInFlight = settings.maxInFlight;
	}

	get queued(): number {
		return this._outbox.length;
	}

	/**
	 * Queues a QoS 1 message; the promise settles on its PUBACK, across reconnects if need be. Rejects
	 * at once with queue.full when queueLimit messages are already waiting.
	 */
	send(body: string | Uint8Array | object, options: TelemetryOptions): Promise<{messageId: string}> {
		return new Promise((resolve, reject) => this.queue(body, options, (error, result) => error ? reject(error) : resolve(result!)));
	}

	/**
	 * send() with a callback instead of a promise (Device's way: cheaper while the message waits).
	 * `done` is never called from inside this call.
	 */
	queue(body: string | Uint8Array | object, options: TelemetryOptions, done: TelemetryDone): void {
		let messageId: string, bag: string, payload: Uint8Array;
		try {
			({messageId, bag, payload} = this._encode(body, options));
		}
		catch (error) {
			Promise.resolve().then(() => done(error as AzureIoTError));
			return;
		}
		const entry: OutboxEntry = {messageId, bag, payload, inFlight: 0, sends: 0, done};
		if (!this._outbox.accept(entry)) {
			const error = new AzureIoTError("queue.full",
				`The telemetry queue is full (${this._outbox.limit} messages await the hub's acknowledgement), so message ${clip(messageId, 64)} was not accepted. Send it again later, send less often, or raise queueLimit`,
				{retriable: true});
			this._hooks.onOverflow({messageId});
			Promise.resolve().then(() => done(error));
			return;
		}
		this._flushLater();
	}

	/** Connection `gen` is ready: send what waits. */
	onReady(): void {
		this._flush();
	}

	/** Connection `gen` ended: what was in flight on it goes back to the queue, in place (or is refused when closing). */
	onEnd(gen: number, closing: boolean, error: AzureIoTError): void {
		if (!closing) {
			this._outbox.requeue(gen);
			return;
		}
		for (const entry of this._outbox.drain()) entry.done(error);
	}

	private _encode(body: string | Uint8Array | object, options: TelemetryOptions): {messageId: string; bag: string; payload: Uint8Array} {
		let contentType = options.contentType;
		let contentEncoding = options.contentEncoding;
		let payload: Uint8Array;
		if (body instanceof Uint8Array) payload = body;
		else if (typeof body === "string") {
			payload = utf8Encode(body);
			contentEncoding ??= "utf-8";
			if (contentType === undefined && looksLikeJson(body)) contentType = "application/json";
		}
		else if (body instanceof ArrayBuffer) payload = new Uint8Array(body);
		else if (typeof body === "object" && body !== null) {
			let json: string | undefined;
			try {
				json = JSON.stringify(body);
			}
			catch {
				json = undefined;
			}
			if (json === undefined) throw configError("body", "cannot be serialized as JSON", "Send a plain object, a string or a Uint8Array");
			payload = utf8Encode(json);
			contentType ??= "application/json";
			contentEncoding ??= "utf-8";
		}
		else throw configError("body", `is a ${body === null ? "null" : typeof body}`, "Send a plain object, a string or a Uint8Array");
		const properties = options.properties ?? {};
		if (typeof properties !== "object" || properties === null || Array.isArray(properties))
			throw configError("properties", "is not an object", "Pass application properties as {name: \"value\"}");
		for (const name of Object.keys(properties)) {
			if (!name || isSystemProperty(name))
				throw configError(`properties[${JSON.stringify(clip(name, 40))}]`, "is a reserved or empty property name",
					"Use messageId, correlationId, contentType, contentEncoding or component for system properties");
		}
		if (options.messageId !== undefined && (typeof options.messageId !== "string" || !options.messageId || options.messageId.length > 128))
			throw configError("messageId", "must be a string of 1 to 128 characters", "Omit it to have one generated");
		if (options.component !== undefined && (typeof options.component !== "string" || !options.component))
			throw configError("component", "must be a non-empty string", "Give the IoT Plug and Play component's name, or omit it for the root");
		const messageId = options.messageId ?? this._hooks.uuid();
		let bag: string;
		try {
			bag = telemetryBag({messageId, correlationId: options.correlationId, contentType, contentEncoding, component: options.component, properties});
		}
		catch {
			throw configError("properties", "contain text that is not valid Unicode (a lone surrogate)", "Send well-formed strings");
		}
		return {messageId, bag, payload};
	}

	/**
	 * Publishes from a promise job of its own: on a fresh stack whatever depth the application called
	 * send() from (the XS stack is small on the ESP32), and messages sent in one turn together.
	 */
	private _flushLater(): void {
		if (this._flushQueued) return;
		this._flushQueued = true;
		Promise.resolve().then(() => {
			this._flushQueued = false;
			this._flush();
		});
	}

	private _flush(): void {
		const connection = this._connection;
		const gen = connection.generation;
		while (connection.isReady(gen) && this._outbox.inFlight < this._maxInFlight) {
			const entry = this._outbox.nextUnsent();
			if (!entry) return;
			entry.inFlight = gen;
			entry.sends++;
			if (entry.sends === 1) this.sent++;
			else this.resent++;
			connection.send(gen, telemetryTopic(connection.deviceId, entry.bag), entry.payload, 1,
				error => error === undefined ? this._acked(entry) : this._publishFailed(entry, gen, error));
		}
	}

	private _acked(entry: OutboxEntry): void {
		// A PUBACK from a connection that has since ended still proves delivery.
		if (!this._outbox.remove(entry)) return;
		this.acked++;
		entry.done(null, {messageId: entry.messageId});
		this._flush();
	}

	private _publishFailed(entry: OutboxEntry, gen: number, error: unknown): void {
		if (!this._outbox.has(entry) || entry.inFlight !== gen) return; // requeued by the end of its connection, or acknowledged
		entry.inFlight = 0;
		const code = error instanceof AzureIoTError ? error.code : undefined;
		if (code === "mqtt.tooLarge" || code === "config") {
			// Sending it again cannot succeed: refuse it visibly rather than block the queue.
			this._outbox.remove(entry);
			entry.done(this._hooks.refuse(error));
			this._flush();
			return;
		}
		// Anything else on a connection we still think is up (PUBACK timeout): the link is dead.
		this._connection.fail(gen, error);
	}
}

function looksLikeJson(text: string): boolean {
	const first = text.trimStart()[0];
	if (first !== "{" && first !== "[") return false;
	try {
		JSON.parse(text);
		return true;
	}
	catch {
		return false;
	}
}

export function clip(text: string, max = 200): string {
	return text.length > max ? text.slice(0, max) + "…" : text;
}

Object.freeze(Telemetry.prototype);
Object.freeze(Telemetry);
