/*
 * The IoT Hub device client: telemetry, cloud-to-device messages, the device twin and direct
 * methods over one MQTT session, kept alive across token expiry, dropped links and throttling.
 *
 * What it guards against (the peer SDKs' reported failures): a reconnect loop that hammers a
 * throttling hub (every retry waits, with jitter, and never 0 ms); state lost on reconnect
 * (subscriptions are made again and the twin is re-read after every connect, because desired
 * updates sent while offline are not queued); disconnects at SAS expiry (the token is renewed by a
 * clean reconnect before it expires); telemetry lost silently (see src/outbox.ts for the
 * reject-new queue policy; accepted messages are re-sent with the same $.mid until acknowledged).
 *
 * No I/O of its own: the MQTT session, timers, clock, randomness and HMAC come from the Host.
 */
import type {Host, TimerHandle} from "./host.js";
import {AzureIoTError, configError} from "./errors.js";
import {utf8Decode, utf8Encode} from "./encoding.js";
import {hubPassword, redact} from "./sas.js";
import {MqttClient} from "./mqtt/client.js";
import type {MqttClientOptions, MqttMessage, MqttSession, Subscription} from "./mqtt/types.js";
import {Backoff} from "./backoff.js";
import {Outbox, type OutboxEntry} from "./outbox.js";
import {
	DESIRED_PATCHES, METHOD_REQUESTS, TWIN_RESPONSES, c2dBag, c2dSubscription, desiredPatchVersion, hubUsername,
	isDesiredPatch, methodResponseTopic, parseMethodTopic, parsePropertyBag, parseTwinResponse, reportedPatchTopic,
	telemetryBag, telemetryTopic, twinGetTopic,
} from "./hub-topics.js";
import {checkHostName, checkKey, checkPort, checkPositive, checkRoots} from "./validate.js";

export interface CloudMessage {
	readonly body: Uint8Array;
	text(): string;
	/** Application properties. */
	readonly properties: Readonly<Record<string, string>>;
	/** `$.mid`, `$.to`, `$.cid`, `$.ct`, `$.ce`, `$.exp`, `$.uid`, `iothub-*`: names as the hub sends them. */
	readonly systemProperties: Readonly<Record<string, string>>;
	readonly topic: string;
}

export interface MethodRequest {
	name: string;
	/** The JSON payload parsed; null when the caller sent none. */
	payload: unknown;
	rid: string;
}

export interface MethodResponse {
	status: number;
	payload?: unknown;
}

export interface HubOptions {
	host: Host;
	/** The hub's host name, e.g. `contoso.azure-devices.net` (DPS's assignedHub). */
	hubName: string;
	deviceId: string;
	/** Base64 device key. */
	symmetricKey: string;
	roots: readonly Uint8Array[];
	/** Default 8883. */
	port?: number;
	/** IoT Plug and Play model id (dtmi:…). */
	modelId?: string;
	/** Default false: the hub keeps cloud-to-device messages for the device while it is offline. */
	clean?: boolean;
	/** Default 120; 1 to 1177 (the hub allows 1.5 times this, at most 1767 s). */
	keepAliveSeconds?: number;
	/** Lifetime of each SAS token. Default 3600. */
	tokenTtlSeconds?: number;
	/** Reconnect with a fresh token this long before expiry. Default 25% of the lifetime, at least 10 s (at most half the lifetime). */
	renewBeforeSeconds?: number;
	/** Telemetry messages accepted but not yet acknowledged. Default 64. */
	queueLimit?: number;
	/** Telemetry messages published and awaiting PUBACK at once. Default 8. (Addition to the contract.) */
	maxInFlight?: number;
	/** Reconnect delays: full jitter, uniform in [initialMs / 2, min(maxMs, initialMs * 2^n)]. */
	backoff?: {initialMs?: number; maxMs?: number};
	/** Twin requests; default 30000. */
	operationTimeoutMs?: number;
	onConnect?(info: {sessionPresent: boolean; reconnect: boolean}): void;
	/** Every failed connection attempt or dropped connection, with the delay before the next attempt. */
	onDisconnect?(error: AzureIoTError, retryInMs: number | undefined): void;
	/** A cloud-to-device message. It is acknowledged (completed) once this returns or its promise settles. */
	onMessage?(message: CloudMessage): void | Promise<void>;
	/** Desired-properties patch; also the full desired document after each connect's twin read, if its $version changed. */
	onDesired?(patch: Record<string, unknown>, version: number): void;
	onMethod?(request: MethodRequest): MethodResponse | Promise<MethodResponse>;
	/**
	 * CONNACK 4/5 on any attempt (for the first connection open() also rejects with the same error).
	 * The client waits (the backoff's longest delay); re-provision and call retarget(), or it retries.
	 */
	onAuthFailure?(error: AzureIoTError): void;
	/** A message was refused because the queue is full (the promise also rejects with queue.full). */
	onQueueOverflow?(refused: {messageId: string}): void;
	/** Problems that do not end the connection: malformed desired updates, failed twin reads. */
	onError?(error: AzureIoTError): void;
	/** Test seam: how MQTT sessions are made. Default: new MqttClient(options). */
	createSession?(options: MqttClientOptions): MqttSession;
}

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

export interface Twin {
	desired: Record<string, unknown>;
	reported: Record<string, unknown>;
}

export interface HubStats {
	/** Telemetry messages published for the first time. */
	readonly sent: number;
	readonly acked: number;
	/** Re-publications after a dropped connection. */
	readonly resent: number;
	/** Connections made after the first (token renewals included). */
	readonly reconnects: number;
	/** Messages in the queue (in flight included). */
	readonly queued: number;
}

type State = "idle" | "connecting" | "subscribing" | "ready" | "waiting" | "closed";

interface TwinReply {
	status: number;
	version?: number;
	body: Uint8Array;
}

interface TwinOp {
	readonly topic: string;
	readonly payload: Uint8Array;
	/** Re-sent after a reconnect (user requests) or failed with mqtt.closed (the per-connect read). */
	readonly retry: boolean;
	/** Generation it was last published on; 0 = not yet on this connection. */
	sentGen: number;
	timer: TimerHandle | undefined;
	resolve(reply: TwinReply): void;
	reject(error: AzureIoTError): void;
}

/** A connection that stayed up this long resets the backoff. */
const STABLE_MS = 30000;
const DEVICE_ID = /^[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}$/;

function checkDeviceId(value: unknown): string {
	if (typeof value !== "string" || !value)
		throw configError("deviceId", "is missing", "Set it to the deviceId that DPS assigned (RegistrationResult.deviceId)");
	if (!DEVICE_ID.test(value))
		throw configError("deviceId", `${JSON.stringify(value.slice(0, 64))} is not a valid IoT Hub device id`,
			"Use at most 128 letters, digits and - . % _ * ? ! ( ) , : = @ $ '");
	return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === "object" && value !== null && !Array.isArray(value);
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

function clip(text: string, max = 200): string {
	return text.length > max ? text.slice(0, max) + "…" : text;
}

export class HubClient {
	#host: Host;
	#hubName: string;
	#deviceId: string;
	#key: string;
	#roots: readonly Uint8Array[];
	#port: number;
	#modelId: string | undefined;
	#clean: boolean;
	#keepAlive: number;
	#ttl: number;
	#renewBefore: number;
	#opTimeout: number;
	#maxInFlight: number;
	#options: HubOptions;
	#createSession: (options: MqttClientOptions) => MqttSession;

	#state: State = "idle";
	#gen = 0;
	#session: MqttSession | undefined;
	#password = "";
	#tokenExpiryMs = 0;
	#everConnected = false;
	#connectedAt = 0;
	#backoff: Backoff;
	#twinBackoff: Backoff;
	#retryTimer: TimerHandle | undefined;
	#renewTimer: TimerHandle | undefined;
	#twinRetryTimer: TimerHandle | undefined;
	#outbox: Outbox;
	#twinOps = new Map<string, TwinOp>();
	#rid = 0;
	#desiredVersion: number | undefined;
	#opened = false;
	#openWaiter: {promise: Promise<void>; resolve(): void; reject(error: AzureIoTError): void} | undefined;
	#stats = {sent: 0, acked: 0, resent: 0, reconnects: 0};

	constructor(options: HubOptions) {
		if (!isRecord(options)) throw configError("options", "is missing", "Pass one options object to new HubClient()");
		const host = options.host;
		if (!host || typeof host.setTimer !== "function" || typeof host.hmacSha256 !== "function")
			throw configError("host", "is missing or incomplete", "Pass the platform's Host (createNodeHost() under Node)");
		this.#host = host;
		this.#hubName = checkHostName(options.hubName, "hubName");
		this.#deviceId = checkDeviceId(options.deviceId);
		this.#key = checkKey(options.symmetricKey);
		this.#roots = checkRoots(options.roots);
		this.#port = checkPort(options.port ?? 8883, "port");
		if (options.modelId !== undefined && (typeof options.modelId !== "string" || !options.modelId.startsWith("dtmi:")))
			throw configError("modelId", "is not a DTDL model id", "Use the form dtmi:com:example:Thermostat;1, or omit it");
		this.#modelId = options.modelId || undefined;
		this.#clean = options.clean ?? false;
		this.#keepAlive = Math.floor(checkPositive(options.keepAliveSeconds ?? 120, "keepAliveSeconds", 1, 1177));
		this.#ttl = Math.floor(checkPositive(options.tokenTtlSeconds ?? 3600, "tokenTtlSeconds", 2, 365 * 24 * 3600));
		const defaultRenew = Math.min(Math.max(10, this.#ttl / 4), this.#ttl / 2);
		this.#renewBefore = checkPositive(options.renewBeforeSeconds ?? defaultRenew, "renewBeforeSeconds", 0.001, this.#ttl - 1);
		this.#opTimeout = checkPositive(options.operationTimeoutMs ?? 30000, "operationTimeoutMs", 1, 3600000);
		this.#maxInFlight = Math.floor(checkPositive(options.maxInFlight ?? 8, "maxInFlight", 1, 65535));
		const queueLimit = Math.floor(checkPositive(options.queueLimit ?? 64, "queueLimit", 1, 65535));
		const b = options.backoff ?? {};
		const initialMs = checkPositive(b.initialMs ?? 1000, "backoff.initialMs", 1, 3600000);
		const maxMs = checkPositive(b.maxMs ?? 60000, "backoff.maxMs", initialMs, 24 * 3600000);
		const random = () => host.random();
		this.#backoff = new Backoff({initialMs, maxMs}, random);
		this.#twinBackoff = new Backoff({initialMs, maxMs}, random);
		this.#outbox = new Outbox(queueLimit);
		this.#options = options;
		this.#createSession = options.createSession ?? (o => new MqttClient(o));
	}

	/** The state read afresh (callbacks and sessions may have changed it since TypeScript last looked). */
	get #current(): State {
		return this.#state;
	}

	/** True once connected, subscribed and able to publish. */
	get connected(): boolean {
		return this.#state === "ready";
	}

	get stats(): HubStats {
		return Object.freeze({...this.#stats, queued: this.#outbox.length});
	}

	/**
	 * Connects. Resolves after the first connection is subscribed and its twin read has finished
	 * (a failed read is reported to onError and retried). Rejects with hub.unauthorized when the
	 * credentials are refused (the client keeps retrying slowly unless closed or retargeted), or
	 * hub.closed. Network and TLS failures are retried with backoff and reported to onDisconnect.
	 */
	open(): Promise<void> {
		if (this.#state === "closed") return Promise.reject(this.#closedError());
		if (this.#opened) return Promise.resolve();
		if (!this.#openWaiter) {
			let resolve!: () => void, reject!: (error: AzureIoTError) => void;
			const promise = new Promise<void>((res, rej) => {
				resolve = res;
				reject = rej;
			});
			this.#openWaiter = {promise, resolve, reject};
		}
		const waiter = this.#openWaiter;
		if (this.#state === "idle") this.#connect();
		return waiter.promise;
	}

	/**
	 * Queues a QoS 1 telemetry message and resolves on its PUBACK, across reconnects if need be.
	 * Rejects at once with queue.full (and calls onQueueOverflow) if queueLimit messages are
	 * already waiting; rejects with hub.closed if the client is closed before the hub acknowledges it.
	 */
	sendTelemetry(body: string | Uint8Array | object, options: TelemetryOptions = {}): Promise<{messageId: string}> {
		if (this.#state === "closed") return Promise.reject(this.#closedError());
		let messageId: string, bag: string, payload: Uint8Array;
		try {
			let contentType = options.contentType;
			let contentEncoding = options.contentEncoding;
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
				if (json === undefined)
					throw configError("body", "cannot be serialized as JSON", "Send a plain object, a string or a Uint8Array");
				payload = utf8Encode(json);
				contentType ??= "application/json";
				contentEncoding ??= "utf-8";
			}
			else throw configError("body", `is a ${body === null ? "null" : typeof body}`, "Send a plain object, a string or a Uint8Array");
			const properties = options.properties ?? {};
			if (!isRecord(properties))
				throw configError("properties", "is not an object", "Pass application properties as {name: \"value\"}");
			for (const name of Object.keys(properties)) {
				if (!name || name.startsWith("$.") || name.startsWith("iothub-"))
					throw configError(`properties[${JSON.stringify(clip(name, 40))}]`, "is a reserved or empty property name",
						"Use messageId, correlationId, contentType, contentEncoding or component for system properties");
			}
			if (options.messageId !== undefined && (typeof options.messageId !== "string" || !options.messageId || options.messageId.length > 128))
				throw configError("messageId", "must be a string of 1 to 128 characters", "Omit it to have one generated");
			messageId = options.messageId ?? this.#uuid();
			try {
				bag = telemetryBag({
					messageId, correlationId: options.correlationId, contentType, contentEncoding,
					component: options.component, properties,
				});
			}
			catch {
				throw configError("properties", "contain text that is not valid Unicode (a lone surrogate)", "Send well-formed strings");
			}
		}
		catch (error) {
			return Promise.reject(error);
		}
		return new Promise((resolve, reject) => {
			const entry: OutboxEntry = {messageId, bag, payload, inFlight: 0, sends: 0, resolve, reject};
			if (!this.#outbox.accept(entry)) {
				reject(new AzureIoTError("queue.full",
					`The telemetry queue is full (${this.#outbox.limit} messages await the hub's acknowledgement), so message ${clip(messageId, 64)} was not accepted. Send it again later, send less often, or raise queueLimit`,
					{retriable: true}));
				this.#emit("onQueueOverflow", () => this.#options.onQueueOverflow?.({messageId}));
				return;
			}
			this.#flush();
		});
	}

	getTwin(): Promise<Twin> {
		return this.#twinRequest(twinGetTopic, new Uint8Array(0), true).then(reply => this.#parseTwin(reply));
	}

	/** Sends a reported-properties patch (null deletes a property); resolves with the new reported $version. */
	updateReported(patch: Record<string, unknown>): Promise<number> {
		if (!isRecord(patch))
			return Promise.reject(configError("patch", "is not an object", "Pass the reported properties to change, e.g. {temperature: 21}"));
		let json: string;
		try {
			json = JSON.stringify(patch);
		}
		catch {
			return Promise.reject(configError("patch", "cannot be serialized as JSON", "Remove cycles and BigInt values"));
		}
		return this.#twinRequest(reportedPatchTopic, utf8Encode(json), true).then(reply => {
			if (reply.version === undefined)
				throw new AzureIoTError("hub.badReply", `The hub acknowledged the reported-properties update (status ${reply.status}) without a $version. This is a hub or emulator bug`, {retriable: true});
			return reply.version;
		});
	}

	/**
	 * Points the client at another hub or device (after re-provisioning) and reconnects at once.
	 * Queued telemetry is kept and goes to the new hub.
	 */
	retarget(target: {hubName: string; deviceId: string; symmetricKey?: string}): void {
		if (this.#state === "closed") throw this.#closedError();
		if (!isRecord(target)) throw configError("retarget()", "needs {hubName, deviceId, symmetricKey?}", "Pass DPS's assignedHub and deviceId");
		const hubName = checkHostName(target.hubName, "hubName");
		const deviceId = checkDeviceId(target.deviceId);
		const key = target.symmetricKey === undefined ? this.#key : checkKey(target.symmetricKey);
		if (hubName !== this.#hubName || deviceId !== this.#deviceId) this.#desiredVersion = undefined;
		this.#hubName = hubName;
		this.#deviceId = deviceId;
		this.#key = key;
		this.#log(`retargeted to ${hubName} as ${deviceId}`);
		this.#backoff.reset();
		if (this.#state !== "idle") this.#reconnectNow();
	}

	/** Sends DISCONNECT and stops. Queued telemetry and pending twin requests reject with hub.closed. */
	close(): Promise<void> {
		if (this.#state === "closed") return Promise.resolve();
		this.#state = "closed";
		this.#gen++;
		this.#clearTimers();
		const session = this.#session;
		this.#session = undefined;
		if (session) this.#endSession(session);
		const error = this.#closedError();
		for (const entry of this.#outbox.drain()) entry.reject(error);
		for (const [rid, op] of this.#twinOps) {
			this.#twinOps.delete(rid);
			this.#host.clearTimer(op.timer);
			op.reject(error);
		}
		this.#openWaiter?.reject(error);
		this.#openWaiter = undefined;
		this.#log("closed");
		return Promise.resolve();
	}

	// --- connection life cycle ---

	#connect(): void {
		this.#host.clearTimer(this.#retryTimer);
		this.#retryTimer = undefined;
		const gen = ++this.#gen;
		this.#state = "connecting";
		this.#session = undefined;
		const expiry = Math.floor(this.#host.now() / 1000) + this.#ttl;
		this.#tokenExpiryMs = expiry * 1000;
		let session: MqttSession;
		try {
			this.#password = hubPassword(this.#hubName, this.#deviceId, this.#key, expiry, (k, m) => this.#host.hmacSha256(k, m));
			this.#log(`connecting to ${this.#hubName}:${this.#port} as ${this.#deviceId}`);
			session = this.#createSession({
				host: this.#host,
				server: {host: this.#hubName, port: this.#port, roots: this.#roots},
				clientId: this.#deviceId,
				username: hubUsername(this.#hubName, this.#deviceId, this.#modelId),
				password: this.#password,
				clean: this.#clean,
				keepAliveSeconds: this.#keepAlive,
				onConnect: info => this.#onSessionConnect(gen, info.sessionPresent),
				onMessage: message => this.#onSessionMessage(gen, message),
				onClose: error => this.#onSessionClose(gen, error),
			});
		}
		catch (error) {
			if (gen === this.#gen && this.#state === "connecting") this.#drop(gen, error, undefined);
			return;
		}
		// A session that reported its end synchronously has already moved the state on.
		if (gen === this.#gen && this.#state === "connecting") this.#session = session;
		else if (gen !== this.#gen || this.#current === "closed") this.#endSession(session);
	}

	#onSessionConnect(gen: number, sessionPresent: boolean): void {
		if (gen !== this.#gen || this.#state !== "connecting") return;
		const session = this.#session;
		if (!session) { // CONNACK reported from inside the constructor: finish once it has returned
			Promise.resolve().then(() => this.#onSessionConnect(gen, sessionPresent));
			return;
		}
		this.#state = "subscribing";
		this.#connectedAt = this.#host.now();
		const reconnect = this.#everConnected;
		this.#everConnected = true;
		if (reconnect) this.#stats.reconnects++;
		// Counted from when the token was made, not from CONNACK: a slow handshake must not eat the margin.
		const renewInMs = Math.max(1000, this.#tokenExpiryMs - this.#renewBefore * 1000 - this.#host.now());
		this.#renewTimer = this.#host.setTimer(() => {
			this.#renewTimer = undefined;
			if (gen === this.#gen && (this.#state === "ready" || this.#state === "subscribing")) {
				this.#log("renewing the SAS token");
				this.#reconnectNow();
			}
		}, renewInMs);
		let subscribing: Promise<unknown>;
		try {
			subscribing = session.subscribe(this.#subscriptions());
		}
		catch (error) {
			subscribing = Promise.reject(error);
		}
		subscribing.then(() => {
			if (gen !== this.#gen || this.#state !== "subscribing") return;
			this.#state = "ready";
			this.#log(`connected to ${this.#hubName}${reconnect ? " again" : ""}`);
			this.#emit("onConnect", () => this.#options.onConnect?.({sessionPresent, reconnect}));
			if (gen !== this.#gen || this.#state !== "ready") return;
			this.#readTwin(gen);
			for (const op of this.#twinOps.values()) if (op.sentGen !== gen) this.#sendTwinOp(op);
			this.#flush();
		}, error => {
			if (gen === this.#gen && this.#state === "subscribing") this.#drop(gen, error, session);
		});
	}

	#subscriptions(): Subscription[] {
		const o = this.#options;
		const list: Subscription[] = [{topic: TWIN_RESPONSES, qos: 0}];
		if (o.onMessage) list.push({topic: c2dSubscription(this.#deviceId), qos: 1});
		if (o.onDesired) list.push({topic: DESIRED_PATCHES, qos: 0});
		if (o.onMethod) list.push({topic: METHOD_REQUESTS, qos: 0});
		return list;
	}

	#onSessionClose(gen: number, error: AzureIoTError): void {
		if (gen !== this.#gen) return;
		if (this.#state !== "connecting" && this.#state !== "subscribing" && this.#state !== "ready") return;
		this.#drop(gen, error, undefined);
	}

	/** The connection of `gen` is over: take back what was in flight on it. */
	#endConnection(gen: number): void {
		const wasUp = this.#state === "ready" || this.#state === "subscribing";
		if (wasUp && this.#host.now() - this.#connectedAt >= STABLE_MS) this.#backoff.reset();
		this.#session = undefined;
		this.#host.clearTimer(this.#renewTimer);
		this.#renewTimer = undefined;
		this.#host.clearTimer(this.#twinRetryTimer);
		this.#twinRetryTimer = undefined;
		this.#outbox.requeue(gen);
		for (const [rid, op] of this.#twinOps) {
			if (op.retry) op.sentGen = 0;
			else {
				this.#twinOps.delete(rid);
				this.#host.clearTimer(op.timer);
				op.reject(new AzureIoTError("mqtt.closed", "The connection to the hub ended before the twin reply arrived", {retriable: true}));
			}
		}
	}

	/** Unexpected end (or a failure this side treats as one): report it and retry after a backoff delay. */
	#drop(gen: number, cause: unknown, closeSession: MqttSession | undefined): void {
		this.#endConnection(gen);
		if (closeSession) this.#endSession(closeSession, true);
		const error = this.#classify(cause);
		const slow = error.code === "hub.unauthorized" || error.code === "tls";
		const delay = slow ? this.#backoff.long() : this.#backoff.next();
		this.#state = "waiting";
		const retryGen = this.#gen;
		this.#retryTimer = this.#host.setTimer(() => {
			this.#retryTimer = undefined;
			if (this.#state === "waiting" && this.#gen === retryGen) this.#connect();
		}, delay);
		this.#log(`disconnected (${error.code}${error.status !== undefined ? " " + error.status : ""}); retrying in ${delay} ms`);
		if (error.code === "hub.unauthorized" && this.#openWaiter) {
			this.#openWaiter.reject(error);
			this.#openWaiter = undefined;
		}
		this.#emit("onDisconnect", () => this.#options.onDisconnect?.(error, delay));
		if (error.code === "hub.unauthorized" && this.#current !== "closed" && this.#gen === retryGen)
			this.#emit("onAuthFailure", () => this.#options.onAuthFailure?.(error));
	}

	/** Planned reconnect (token renewal, retarget): DISCONNECT cleanly, then connect with a fresh token at once. */
	#reconnectNow(): void {
		const session = this.#session;
		this.#endConnection(this.#gen);
		if (session) this.#endSession(session);
		this.#host.clearTimer(this.#retryTimer);
		this.#retryTimer = undefined;
		this.#connect();
	}

	#endSession(session: MqttSession, abort = false): void {
		try {
			if (!abort && session.connected) session.disconnect();
			else session.close();
		}
		catch {
			// already gone
		}
	}

	#clearTimers(): void {
		for (const t of [this.#retryTimer, this.#renewTimer, this.#twinRetryTimer]) this.#host.clearTimer(t);
		this.#retryTimer = this.#renewTimer = this.#twinRetryTimer = undefined;
	}

	#classify(cause: unknown): AzureIoTError {
		if (cause instanceof AzureIoTError) {
			if (cause.code === "mqtt.connack" && (cause.status === 4 || cause.status === 5))
				return new AzureIoTError("hub.unauthorized",
					`${this.#hubName} refused the credentials of device ${this.#deviceId} (CONNACK ${cause.status}): the key is wrong, or the device was deleted, disabled or moved to another hub. Re-provision with DPS and call retarget(); until then the client retries slowly`,
					{status: cause.status});
			if (cause.code === "mqtt.connack" && cause.status === 3)
				return new AzureIoTError("hub.unavailable",
					`${this.#hubName} is unavailable (CONNACK 3); retrying with backoff`, {status: 3, retriable: true});
			return new AzureIoTError(cause.code, this.#scrub(cause.message),
				{status: cause.status, retryAfter: cause.retryAfter, retriable: cause.code === "config" ? false : true});
		}
		const message = cause instanceof Error ? cause.message : String(cause);
		return new AzureIoTError("network", this.#scrub(`Connecting to ${this.#hubName} failed: ${message}`), {retriable: true});
	}

	/** Whatever a lower layer wrote, no key, token or signature leaves this client. */
	#scrub(text: string): string {
		let out = String(text);
		const password = this.#password;
		const sig = /sig=([^&\s]+)/.exec(password)?.[1];
		for (const secret of [this.#key, password, sig, sig && decodeURIComponent(sig)]) {
			if (secret && secret.length >= 8) out = out.split(secret).join("<redacted>");
		}
		return redact(out);
	}

	// --- telemetry ---

	#flush(): void {
		const gen = this.#gen;
		for (;;) {
			const session = this.#session;
			if (this.#state !== "ready" || this.#gen !== gen || !session) return;
			if (this.#outbox.inFlight >= this.#maxInFlight) return;
			const entry = this.#outbox.nextUnsent();
			if (!entry) return;
			entry.inFlight = gen;
			entry.sends++;
			if (entry.sends === 1) this.#stats.sent++;
			else this.#stats.resent++;
			let publishing: Promise<void>;
			try {
				publishing = session.publish(telemetryTopic(this.#deviceId, entry.bag), entry.payload, {qos: 1});
			}
			catch (error) {
				publishing = Promise.reject(error);
			}
			publishing.then(() => this.#acked(entry), error => this.#publishFailed(entry, gen, session, error));
		}
	}

	#acked(entry: OutboxEntry): void {
		// A PUBACK from a connection that has since ended still proves delivery.
		if (!this.#outbox.remove(entry)) return;
		this.#stats.acked++;
		entry.resolve({messageId: entry.messageId});
		this.#flush();
	}

	#publishFailed(entry: OutboxEntry, gen: number, session: MqttSession, error: unknown): void {
		if (!this.#outbox.has(entry) || entry.inFlight !== gen) return; // requeued by the close path, or acknowledged
		entry.inFlight = 0;
		const code = error instanceof AzureIoTError ? error.code : undefined;
		if (code === "mqtt.tooLarge" || code === "config") {
			// Sending it again cannot succeed: refuse it visibly rather than block the queue.
			this.#outbox.remove(entry);
			entry.reject(this.#classify(error));
			this.#flush();
			return;
		}
		// Anything else on a connection we still think is up (PUBACK timeout): the link is dead.
		if (gen === this.#gen && this.#state === "ready") this.#drop(gen, error, session);
	}

	#uuid(): string {
		let hex = "";
		for (let i = 0; i < 16; i++) {
			let byte = Math.floor(this.#host.random() * 256) & 255;
			if (i === 6) byte = (byte & 0x0f) | 0x40;
			if (i === 8) byte = (byte & 0x3f) | 0x80;
			hex += (byte < 16 ? "0" : "") + byte.toString(16);
			if (i === 3 || i === 5 || i === 7 || i === 9) hex += "-";
		}
		return hex;
	}

	// --- twin ---

	#twinRequest(topicFor: (rid: string) => string, payload: Uint8Array, retry: boolean): Promise<TwinReply> {
		if (this.#state === "closed") return Promise.reject(this.#closedError());
		const rid = String(++this.#rid);
		return new Promise<TwinReply>((resolve, reject) => {
			const op: TwinOp = {topic: topicFor(rid), payload, retry, sentGen: 0, timer: undefined, resolve, reject};
			op.timer = this.#host.setTimer(() => {
				if (this.#twinOps.get(rid) !== op) return;
				this.#twinOps.delete(rid);
				reject(new AzureIoTError("mqtt.timeout",
					`No twin reply from ${this.#hubName} within ${this.#opTimeout} ms${this.#state === "ready" ? "" : " (not connected)"}. Try again; raise operationTimeoutMs on slow links`,
					{retriable: true}));
			}, this.#opTimeout);
			this.#twinOps.set(rid, op);
			if (this.#state === "ready") this.#sendTwinOp(op);
		});
	}

	#sendTwinOp(op: TwinOp): void {
		const session = this.#session;
		const gen = this.#gen;
		if (!session || this.#state !== "ready") return;
		op.sentGen = gen;
		let publishing: Promise<void>;
		try {
			publishing = session.publish(op.topic, op.payload, {qos: 0});
		}
		catch (error) {
			publishing = Promise.reject(error);
		}
		publishing.catch(error => {
			const entry = [...this.#twinOps].find(([, o]) => o === op);
			if (!entry) return;
			if (error instanceof AzureIoTError && (error.code === "mqtt.tooLarge" || error.code === "config")) {
				this.#twinOps.delete(entry[0]);
				this.#host.clearTimer(op.timer);
				op.reject(this.#classify(error));
			}
			else if (op.sentGen === gen) op.sentGen = 0; // sent again after the reconnect
		});
	}

	#onTwinReply(message: MqttMessage): void {
		const reply = parseTwinResponse(message.topic);
		if (!reply) {
			this.#error(new AzureIoTError("hub.badReply", `Ignored a twin reply on an unexpected topic: ${clip(message.topic, 100)}`, {retriable: true}));
			return;
		}
		const op = this.#twinOps.get(reply.rid);
		if (!op) return; // timed out already, or the reply to a request of an earlier run
		this.#twinOps.delete(reply.rid);
		this.#host.clearTimer(op.timer);
		if (reply.status >= 300 || reply.status < 200) {
			const text = clip(utf8Decode(message.payload));
			op.reject(new AzureIoTError("hub.rejected",
				`The hub answered the twin request with status ${reply.status}${text ? ": " + this.#scrub(text) : ""}${reply.status === 429 ? ". Throttled: send twin updates less often" : ""}`,
				{status: reply.status, retriable: reply.status === 429 || reply.status >= 500}));
			return;
		}
		op.resolve({status: reply.status, version: reply.version, body: message.payload});
	}

	#parseTwin(reply: TwinReply): Twin {
		let doc: unknown;
		try {
			doc = JSON.parse(utf8Decode(reply.body));
		}
		catch {
			doc = undefined;
		}
		if (!isRecord(doc) || !isRecord(doc.desired) || !isRecord(doc.reported))
			throw new AzureIoTError("hub.badReply", "The twin document from the hub is not JSON of the form {\"desired\":{…},\"reported\":{…}}", {retriable: true});
		return {desired: doc.desired, reported: doc.reported};
	}

	/** The read after each connect: delivers the full desired document if it changed while we were away. */
	#readTwin(gen: number): void {
		this.#twinRequest(twinGetTopic, new Uint8Array(0), false)
			.then(reply => this.#parseTwin(reply))
			.then(twin => {
				if (gen !== this.#gen || this.#state === "closed") return;
				this.#twinBackoff.reset();
				const version = twin.desired.$version;
				if (typeof version === "number" && version !== this.#desiredVersion) {
					this.#desiredVersion = version;
					const onDesired = this.#options.onDesired;
					if (onDesired) this.#emit("onDesired", () => onDesired(twin.desired, version));
				}
				this.#resolveOpen();
			}, (error: AzureIoTError) => {
				if (gen !== this.#gen || this.#state !== "ready") return; // the next connection reads again
				this.#error(error);
				this.#resolveOpen();
				if (gen !== this.#gen || this.#state !== "ready") return;
				this.#host.clearTimer(this.#twinRetryTimer);
				this.#twinRetryTimer = this.#host.setTimer(() => {
					this.#twinRetryTimer = undefined;
					if (gen === this.#gen && this.#state === "ready") this.#readTwin(gen);
				}, this.#twinBackoff.next());
			});
	}

	#resolveOpen(): void {
		this.#opened = true;
		const waiter = this.#openWaiter;
		this.#openWaiter = undefined;
		waiter?.resolve();
	}

	#onDesiredPatch(message: MqttMessage): void {
		let patch: unknown;
		try {
			patch = JSON.parse(utf8Decode(message.payload));
		}
		catch {
			patch = undefined;
		}
		if (!isRecord(patch)) {
			this.#error(new AzureIoTError("hub.badReply", "Ignored a desired-properties update that is not a JSON object", {retriable: true}));
			return;
		}
		const version = desiredPatchVersion(message.topic) ?? (typeof patch.$version === "number" ? patch.$version : undefined);
		if (version === undefined) {
			this.#error(new AzureIoTError("hub.badReply", "Ignored a desired-properties update without a $version", {retriable: true}));
			return;
		}
		// Already delivered through the twin read of this connection.
		if (this.#desiredVersion !== undefined && version <= this.#desiredVersion) return;
		this.#desiredVersion = version;
		const onDesired = this.#options.onDesired;
		if (onDesired) this.#emit("onDesired", () => onDesired(patch, version));
	}

	// --- incoming ---

	#onSessionMessage(gen: number, message: MqttMessage): void | Promise<void> {
		if (gen !== this.#gen || this.#state === "closed") return;
		const topic = message.topic;
		if (topic.startsWith("$iothub/twin/res/")) this.#onTwinReply(message);
		else if (isDesiredPatch(topic)) this.#onDesiredPatch(message);
		else if (topic.startsWith("$iothub/methods/POST/")) this.#onMethod(gen, message);
		else {
			const bag = c2dBag(topic, this.#deviceId);
			if (bag !== undefined) return this.#onCloudMessage(bag, message);
			this.#log(`ignored a message on ${clip(topic, 100)}`);
		}
	}

	#onCloudMessage(bag: string, message: MqttMessage): void | Promise<void> {
		const handler = this.#options.onMessage;
		if (!handler) return; // completed: no one asked for cloud-to-device messages
		const {properties, systemProperties} = parsePropertyBag(bag);
		const body = message.payload;
		const cloudMessage: CloudMessage = Object.freeze({
			body,
			text: () => utf8Decode(body),
			properties: Object.freeze(properties),
			systemProperties: Object.freeze(systemProperties),
			topic: message.topic,
		});
		const failed = (error: unknown) => this.#log(`onMessage failed: ${this.#scrub(error instanceof Error ? error.message : String(error))}`);
		try {
			const result = handler(cloudMessage);
			if (result && typeof (result as Promise<void>).then === "function") return (result as Promise<void>).then(undefined, failed);
		}
		catch (error) {
			failed(error);
		}
	}

	#onMethod(gen: number, message: MqttMessage): void {
		const request = parseMethodTopic(message.topic);
		if (!request) {
			this.#error(new AzureIoTError("hub.badReply", `Ignored a direct method request on an unexpected topic: ${clip(message.topic, 100)}`, {retriable: true}));
			return;
		}
		const {name, rid} = request;
		const respond = (status: number, payload: unknown) => {
			const session = this.#session;
			if (gen !== this.#gen || !session) return; // that connection is gone: the caller times out
			let body: string;
			try {
				body = JSON.stringify(payload === undefined ? null : payload);
			}
			catch {
				status = 500;
				body = JSON.stringify({message: `The response of method ${name} cannot be serialized as JSON`});
			}
			try {
				session.publish(methodResponseTopic(status, rid), utf8Encode(body), {qos: 0}).catch(() => {});
			}
			catch {
				// the connection is going away; the caller times out
			}
		};
		let payload: unknown = null;
		const text = utf8Decode(message.payload);
		if (text.trim()) {
			try {
				payload = JSON.parse(text);
			}
			catch {
				respond(400, {message: `The payload of method ${name} is not valid JSON`});
				return;
			}
		}
		const handler = this.#options.onMethod;
		if (!handler) {
			respond(501, {message: `This device does not implement direct methods (${name} was called)`});
			return;
		}
		Promise.resolve()
			.then(() => handler({name, payload, rid}))
			.then(result => {
				if (!isRecord(result) || typeof result.status !== "number" || !Number.isInteger(result.status) || result.status < 100 || result.status > 999)
					respond(500, {message: `The handler of method ${name} returned no valid status`});
				else respond(result.status, result.payload);
			}, (error: unknown) => {
				// The message only, never the stack: it goes to whoever called the method.
				const detail = error instanceof Error ? error.message : String(error);
				respond(500, {message: `Method ${name} failed: ${clip(this.#scrub(detail))}`});
			});
	}

	// --- reporting ---

	#emit(name: string, call: () => void): void {
		try {
			call();
		}
		catch (error) {
			this.#log(`${name} threw: ${this.#scrub(error instanceof Error ? error.message : String(error))}`);
		}
	}

	#error(error: AzureIoTError): void {
		this.#log(`${error.code}: ${error.message}`);
		this.#emit("onError", () => this.#options.onError?.(error));
	}

	#closedError(): AzureIoTError {
		return new AzureIoTError("hub.closed", "The hub client was closed. Create a new HubClient to connect again");
	}

	#log(line: string): void {
		try {
			this.#host.log?.(`hub: ${line}`);
		}
		catch {
			// logging must never break the client
		}
	}
}

Object.freeze(HubClient.prototype);
Object.freeze(HubClient);

