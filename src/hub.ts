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

// State is in TypeScript-private properties, not #private names: XS copies every outer name a
// function uses, #names included, into its stack frame, so they made every method's frame larger
// (BENCHMARKS.md, finding 6). Only #key and #options (they hold the device key) stay #private.
export class HubClient {
	private _host: Host;
	private _hubName: string;
	private _deviceId: string;
	#key: string;
	private _roots: readonly Uint8Array[];
	private _port: number;
	private _modelId: string | undefined;
	private _clean: boolean;
	private _keepAlive: number;
	private _ttl: number;
	private _renewBefore: number;
	private _opTimeout: number;
	private _maxInFlight: number;
	#options: HubOptions;
	private _createSession: (options: MqttClientOptions) => MqttSession;

	private _state: State = "idle";
	private _gen = 0;
	private _session: MqttSession | undefined;
	private _password = "";
	private _tokenExpiryMs = 0;
	private _everConnected = false;
	private _connectedAt = 0;
	private _backoff: Backoff;
	private _twinBackoff: Backoff;
	private _retryTimer: TimerHandle | undefined;
	private _renewTimer: TimerHandle | undefined;
	private _twinRetryTimer: TimerHandle | undefined;
	private _outbox: Outbox;
	private _flushQueued = false;
	private _twinOps = new Map<string, TwinOp>();
	private _rid = 0;
	private _desiredVersion: number | undefined;
	private _opened = false;
	private _openWaiter: {promise: Promise<void>; resolve(): void; reject(error: AzureIoTError): void} | undefined;
	private _stats = {sent: 0, acked: 0, resent: 0, reconnects: 0};

	constructor(options: HubOptions) {
		if (!isRecord(options)) throw configError("options", "is missing", "Pass one options object to new HubClient()");
		const host = options.host;
		if (!host || typeof host.setTimer !== "function" || typeof host.hmacSha256 !== "function")
			throw configError("host", "is missing or incomplete", "Pass the platform's Host (createNodeHost() under Node)");
		this._host = host;
		this._hubName = checkHostName(options.hubName, "hubName");
		this._deviceId = checkDeviceId(options.deviceId);
		this.#key = checkKey(options.symmetricKey);
		this._roots = checkRoots(options.roots);
		this._port = checkPort(options.port ?? 8883, "port");
		if (options.modelId !== undefined && (typeof options.modelId !== "string" || !options.modelId.startsWith("dtmi:")))
			throw configError("modelId", "is not a DTDL model id", "Use the form dtmi:com:example:Thermostat;1, or omit it");
		this._modelId = options.modelId || undefined;
		this._clean = options.clean ?? false;
		this._keepAlive = Math.floor(checkPositive(options.keepAliveSeconds ?? 120, "keepAliveSeconds", 1, 1177));
		this._ttl = Math.floor(checkPositive(options.tokenTtlSeconds ?? 3600, "tokenTtlSeconds", 2, 365 * 24 * 3600));
		const defaultRenew = Math.min(Math.max(10, this._ttl / 4), this._ttl / 2);
		this._renewBefore = checkPositive(options.renewBeforeSeconds ?? defaultRenew, "renewBeforeSeconds", 0.001, this._ttl - 1);
		this._opTimeout = checkPositive(options.operationTimeoutMs ?? 30000, "operationTimeoutMs", 1, 3600000);
		this._maxInFlight = Math.floor(checkPositive(options.maxInFlight ?? 8, "maxInFlight", 1, 65535));
		const queueLimit = Math.floor(checkPositive(options.queueLimit ?? 64, "queueLimit", 1, 65535));
		const b = options.backoff ?? {};
		const initialMs = checkPositive(b.initialMs ?? 1000, "backoff.initialMs", 1, 3600000);
		const maxMs = checkPositive(b.maxMs ?? 60000, "backoff.maxMs", initialMs, 24 * 3600000);
		const random = () => host.random();
		this._backoff = new Backoff({initialMs, maxMs}, random);
		this._twinBackoff = new Backoff({initialMs, maxMs}, random);
		this._outbox = new Outbox(queueLimit);
		this.#options = options;
		this._createSession = options.createSession ?? (o => new MqttClient(o));
	}

	/** The state read afresh (callbacks and sessions may have changed it since TypeScript last looked). */
	get #current(): State {
		return this._state;
	}

	/** True once connected, subscribed and able to publish. */
	get connected(): boolean {
		return this._state === "ready";
	}

	get stats(): HubStats {
		return Object.freeze({...this._stats, queued: this._outbox.length});
	}

	/**
	 * Connects. Resolves after the first connection is subscribed and its twin read has finished
	 * (a failed read is reported to onError and retried). Rejects with hub.unauthorized when the
	 * credentials are refused (the client keeps retrying slowly unless closed or retargeted), or
	 * hub.closed. Network and TLS failures are retried with backoff and reported to onDisconnect.
	 */
	open(): Promise<void> {
		if (this._state === "closed") return Promise.reject(this._closedError());
		if (this._opened) return Promise.resolve();
		if (!this._openWaiter) {
			let resolve!: () => void, reject!: (error: AzureIoTError) => void;
			const promise = new Promise<void>((res, rej) => {
				resolve = res;
				reject = rej;
			});
			this._openWaiter = {promise, resolve, reject};
		}
		const waiter = this._openWaiter;
		if (this._state === "idle") this._connect();
		return waiter.promise;
	}

	/**
	 * Queues a QoS 1 telemetry message and resolves on its PUBACK, across reconnects if need be.
	 * Rejects at once with queue.full (and calls onQueueOverflow) if queueLimit messages are
	 * already waiting; rejects with hub.closed if the client is closed before the hub acknowledges it.
	 */
	sendTelemetry(body: string | Uint8Array | object, options: TelemetryOptions = {}): Promise<{messageId: string}> {
		if (this._state === "closed") return Promise.reject(this._closedError());
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
			messageId = options.messageId ?? this._uuid();
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
			if (!this._outbox.accept(entry)) {
				reject(new AzureIoTError("queue.full",
					`The telemetry queue is full (${this._outbox.limit} messages await the hub's acknowledgement), so message ${clip(messageId, 64)} was not accepted. Send it again later, send less often, or raise queueLimit`,
					{retriable: true}));
				this._emit("onQueueOverflow", () => this.#options.onQueueOverflow?.({messageId}));
				return;
			}
			this._flushLater();
		});
	}

	getTwin(): Promise<Twin> {
		return this._twinRequest(twinGetTopic, new Uint8Array(0), true).then(reply => this._parseTwin(reply));
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
		return this._twinRequest(reportedPatchTopic, utf8Encode(json), true).then(reply => {
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
		if (this._state === "closed") throw this._closedError();
		if (!isRecord(target)) throw configError("retarget()", "needs {hubName, deviceId, symmetricKey?}", "Pass DPS's assignedHub and deviceId");
		const hubName = checkHostName(target.hubName, "hubName");
		const deviceId = checkDeviceId(target.deviceId);
		const key = target.symmetricKey === undefined ? this.#key : checkKey(target.symmetricKey);
		if (hubName !== this._hubName || deviceId !== this._deviceId) this._desiredVersion = undefined;
		this._hubName = hubName;
		this._deviceId = deviceId;
		this.#key = key;
		this._log(`retargeted to ${hubName} as ${deviceId}`);
		this._backoff.reset();
		if (this._state !== "idle") this._reconnectNow();
	}

	/** Sends DISCONNECT and stops. Queued telemetry and pending twin requests reject with hub.closed. */
	close(): Promise<void> {
		if (this._state === "closed") return Promise.resolve();
		this._state = "closed";
		this._gen++;
		this._clearTimers();
		const session = this._session;
		this._session = undefined;
		if (session) this._endSession(session);
		const error = this._closedError();
		for (const entry of this._outbox.drain()) entry.reject(error);
		for (const [rid, op] of this._twinOps) {
			this._twinOps.delete(rid);
			this._host.clearTimer(op.timer);
			op.reject(error);
		}
		this._openWaiter?.reject(error);
		this._openWaiter = undefined;
		this._log("closed");
		return Promise.resolve();
	}

	// --- connection life cycle ---

	private _connect(): void {
		this._host.clearTimer(this._retryTimer);
		this._retryTimer = undefined;
		const gen = ++this._gen;
		this._state = "connecting";
		this._session = undefined;
		const expiry = Math.floor(this._host.now() / 1000) + this._ttl;
		this._tokenExpiryMs = expiry * 1000;
		let session: MqttSession;
		try {
			this._password = hubPassword(this._hubName, this._deviceId, this.#key, expiry, (k, m) => this._host.hmacSha256(k, m));
			this._log(`connecting to ${this._hubName}:${this._port} as ${this._deviceId}`);
			session = this._createSession({
				host: this._host,
				server: {host: this._hubName, port: this._port, roots: this._roots},
				clientId: this._deviceId,
				username: hubUsername(this._hubName, this._deviceId, this._modelId),
				password: this._password,
				clean: this._clean,
				keepAliveSeconds: this._keepAlive,
				onConnect: info => this._onSessionConnect(gen, info.sessionPresent),
				onMessage: message => this._onSessionMessage(gen, message),
				onClose: error => this._onSessionClose(gen, error),
			});
		}
		catch (error) {
			if (gen === this._gen && this._state === "connecting") this._drop(gen, error, undefined);
			return;
		}
		// A session that reported its end synchronously has already moved the state on.
		if (gen === this._gen && this._state === "connecting") this._session = session;
		else if (gen !== this._gen || this.#current === "closed") this._endSession(session);
	}

	private _onSessionConnect(gen: number, sessionPresent: boolean): void {
		if (gen !== this._gen || this._state !== "connecting") return;
		const session = this._session;
		if (!session) { // CONNACK reported from inside the constructor: finish once it has returned
			Promise.resolve().then(() => this._onSessionConnect(gen, sessionPresent));
			return;
		}
		this._state = "subscribing";
		this._connectedAt = this._host.now();
		const reconnect = this._everConnected;
		this._everConnected = true;
		if (reconnect) this._stats.reconnects++;
		// Counted from when the token was made, not from CONNACK: a slow handshake must not eat the margin.
		const renewInMs = Math.max(1000, this._tokenExpiryMs - this._renewBefore * 1000 - this._host.now());
		this._renewTimer = this._host.setTimer(() => {
			this._renewTimer = undefined;
			if (gen === this._gen && (this._state === "ready" || this._state === "subscribing")) {
				this._log("renewing the SAS token");
				this._reconnectNow();
			}
		}, renewInMs);
		let subscribing: Promise<unknown>;
		try {
			subscribing = session.subscribe(this._subscriptions());
		}
		catch (error) {
			subscribing = Promise.reject(error);
		}
		subscribing.then(() => {
			if (gen !== this._gen || this._state !== "subscribing") return;
			this._state = "ready";
			this._log(`connected to ${this._hubName}${reconnect ? " again" : ""}`);
			this._emit("onConnect", () => this.#options.onConnect?.({sessionPresent, reconnect}));
			if (gen !== this._gen || this._state !== "ready") return;
			this._readTwin(gen);
			for (const op of this._twinOps.values()) if (op.sentGen !== gen) this._sendTwinOp(op);
			this._flush();
		}, error => {
			if (gen === this._gen && this._state === "subscribing") this._drop(gen, error, session);
		});
	}

	private _subscriptions(): Subscription[] {
		const o = this.#options;
		const list: Subscription[] = [{topic: TWIN_RESPONSES, qos: 0}];
		if (o.onMessage) list.push({topic: c2dSubscription(this._deviceId), qos: 1});
		if (o.onDesired) list.push({topic: DESIRED_PATCHES, qos: 0});
		if (o.onMethod) list.push({topic: METHOD_REQUESTS, qos: 0});
		return list;
	}

	private _onSessionClose(gen: number, error: AzureIoTError): void {
		if (gen !== this._gen) return;
		if (this._state !== "connecting" && this._state !== "subscribing" && this._state !== "ready") return;
		this._drop(gen, error, undefined);
	}

	/** The connection of `gen` is over: take back what was in flight on it. */
	private _endConnection(gen: number): void {
		const wasUp = this._state === "ready" || this._state === "subscribing";
		if (wasUp && this._host.now() - this._connectedAt >= STABLE_MS) this._backoff.reset();
		this._session = undefined;
		this._host.clearTimer(this._renewTimer);
		this._renewTimer = undefined;
		this._host.clearTimer(this._twinRetryTimer);
		this._twinRetryTimer = undefined;
		this._outbox.requeue(gen);
		for (const [rid, op] of this._twinOps) {
			if (op.retry) op.sentGen = 0;
			else {
				this._twinOps.delete(rid);
				this._host.clearTimer(op.timer);
				op.reject(new AzureIoTError("mqtt.closed", "The connection to the hub ended before the twin reply arrived", {retriable: true}));
			}
		}
	}

	/** Unexpected end (or a failure this side treats as one): report it and retry after a backoff delay. */
	private _drop(gen: number, cause: unknown, closeSession: MqttSession | undefined): void {
		this._endConnection(gen);
		if (closeSession) this._endSession(closeSession, true);
		const error = this._classify(cause);
		const slow = error.code === "hub.unauthorized" || error.code === "tls";
		const delay = slow ? this._backoff.long() : this._backoff.next();
		this._state = "waiting";
		const retryGen = this._gen;
		this._retryTimer = this._host.setTimer(() => {
			this._retryTimer = undefined;
			if (this._state === "waiting" && this._gen === retryGen) this._connect();
		}, delay);
		this._log(`disconnected (${error.code}${error.status !== undefined ? " " + error.status : ""}); retrying in ${delay} ms`);
		if (error.code === "hub.unauthorized" && this._openWaiter) {
			this._openWaiter.reject(error);
			this._openWaiter = undefined;
		}
		this._emit("onDisconnect", () => this.#options.onDisconnect?.(error, delay));
		if (error.code === "hub.unauthorized" && this.#current !== "closed" && this._gen === retryGen)
			this._emit("onAuthFailure", () => this.#options.onAuthFailure?.(error));
	}

	/** Planned reconnect (token renewal, retarget): DISCONNECT cleanly, then connect with a fresh token at once. */
	private _reconnectNow(): void {
		const session = this._session;
		this._endConnection(this._gen);
		if (session) this._endSession(session);
		this._host.clearTimer(this._retryTimer);
		this._retryTimer = undefined;
		this._connect();
	}

	private _endSession(session: MqttSession, abort = false): void {
		try {
			if (!abort && session.connected) session.disconnect();
			else session.close();
		}
		catch {
			// already gone
		}
	}

	private _clearTimers(): void {
		for (const t of [this._retryTimer, this._renewTimer, this._twinRetryTimer]) this._host.clearTimer(t);
		this._retryTimer = this._renewTimer = this._twinRetryTimer = undefined;
	}

	private _classify(cause: unknown): AzureIoTError {
		if (cause instanceof AzureIoTError) {
			if (cause.code === "mqtt.connack" && (cause.status === 4 || cause.status === 5))
				return new AzureIoTError("hub.unauthorized",
					`${this._hubName} refused the credentials of device ${this._deviceId} (CONNACK ${cause.status}): the key is wrong, or the device was deleted, disabled or moved to another hub. Re-provision with DPS and call retarget(); until then the client retries slowly`,
					{status: cause.status});
			if (cause.code === "mqtt.connack" && cause.status === 3)
				return new AzureIoTError("hub.unavailable",
					`${this._hubName} is unavailable (CONNACK 3); retrying with backoff`, {status: 3, retriable: true});
			return new AzureIoTError(cause.code, this._scrub(cause.message),
				{status: cause.status, retryAfter: cause.retryAfter, retriable: cause.code === "config" ? false : true});
		}
		const message = cause instanceof Error ? cause.message : String(cause);
		return new AzureIoTError("network", this._scrub(`Connecting to ${this._hubName} failed: ${message}`), {retriable: true});
	}

	/** Whatever a lower layer wrote, no key, token or signature leaves this client. */
	private _scrub(text: string): string {
		let out = String(text);
		const password = this._password;
		const sig = /sig=([^&\s]+)/.exec(password)?.[1];
		for (const secret of [this.#key, password, sig, sig && decodeURIComponent(sig)]) {
			if (secret && secret.length >= 8) out = out.split(secret).join("<redacted>");
		}
		return redact(out);
	}

	// --- telemetry ---

	/**
	 * Publishes from a promise job of its own: on a fresh stack whatever depth the application called
	 * sendTelemetry() from (the XS stack is small on the ESP32), and messages sent in one turn together.
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
		const gen = this._gen;
		for (;;) {
			const session = this._session;
			if (this._state !== "ready" || this._gen !== gen || !session) return;
			if (this._outbox.inFlight >= this._maxInFlight) return;
			const entry = this._outbox.nextUnsent();
			if (!entry) return;
			entry.inFlight = gen;
			entry.sends++;
			if (entry.sends === 1) this._stats.sent++;
			else this._stats.resent++;
			let publishing: Promise<void>;
			try {
				publishing = session.publish(telemetryTopic(this._deviceId, entry.bag), entry.payload, {qos: 1});
			}
			catch (error) {
				publishing = Promise.reject(error);
			}
			publishing.then(() => this._acked(entry), error => this._publishFailed(entry, gen, session, error));
		}
	}

	private _acked(entry: OutboxEntry): void {
		// A PUBACK from a connection that has since ended still proves delivery.
		if (!this._outbox.remove(entry)) return;
		this._stats.acked++;
		entry.resolve({messageId: entry.messageId});
		this._flush();
	}

	private _publishFailed(entry: OutboxEntry, gen: number, session: MqttSession, error: unknown): void {
		if (!this._outbox.has(entry) || entry.inFlight !== gen) return; // requeued by the close path, or acknowledged
		entry.inFlight = 0;
		const code = error instanceof AzureIoTError ? error.code : undefined;
		if (code === "mqtt.tooLarge" || code === "config") {
			// Sending it again cannot succeed: refuse it visibly rather than block the queue.
			this._outbox.remove(entry);
			entry.reject(this._classify(error));
			this._flush();
			return;
		}
		// Anything else on a connection we still think is up (PUBACK timeout): the link is dead.
		if (gen === this._gen && this._state === "ready") this._drop(gen, error, session);
	}

	private _uuid(): string {
		let hex = "";
		for (let i = 0; i < 16; i++) {
			let byte = Math.floor(this._host.random() * 256) & 255;
			if (i === 6) byte = (byte & 0x0f) | 0x40;
			if (i === 8) byte = (byte & 0x3f) | 0x80;
			hex += (byte < 16 ? "0" : "") + byte.toString(16);
			if (i === 3 || i === 5 || i === 7 || i === 9) hex += "-";
		}
		return hex;
	}

	// --- twin ---

	private _twinRequest(topicFor: (rid: string) => string, payload: Uint8Array, retry: boolean): Promise<TwinReply> {
		if (this._state === "closed") return Promise.reject(this._closedError());
		const rid = String(++this._rid);
		return new Promise<TwinReply>((resolve, reject) => {
			const op: TwinOp = {topic: topicFor(rid), payload, retry, sentGen: 0, timer: undefined, resolve, reject};
			op.timer = this._host.setTimer(() => {
				if (this._twinOps.get(rid) !== op) return;
				this._twinOps.delete(rid);
				reject(new AzureIoTError("mqtt.timeout",
					`No twin reply from ${this._hubName} within ${this._opTimeout} ms${this._state === "ready" ? "" : " (not connected)"}. Try again; raise operationTimeoutMs on slow links`,
					{retriable: true}));
			}, this._opTimeout);
			this._twinOps.set(rid, op);
			if (this._state === "ready") this._sendTwinOp(op);
		});
	}

	private _sendTwinOp(op: TwinOp): void {
		const session = this._session;
		const gen = this._gen;
		if (!session || this._state !== "ready") return;
		op.sentGen = gen;
		let publishing: Promise<void>;
		try {
			publishing = session.publish(op.topic, op.payload, {qos: 0});
		}
		catch (error) {
			publishing = Promise.reject(error);
		}
		publishing.catch(error => {
			const entry = [...this._twinOps].find(([, o]) => o === op);
			if (!entry) return;
			if (error instanceof AzureIoTError && (error.code === "mqtt.tooLarge" || error.code === "config")) {
				this._twinOps.delete(entry[0]);
				this._host.clearTimer(op.timer);
				op.reject(this._classify(error));
			}
			else if (op.sentGen === gen) op.sentGen = 0; // sent again after the reconnect
		});
	}

	private _onTwinReply(message: MqttMessage): void {
		const reply = parseTwinResponse(message.topic);
		if (!reply) {
			this._error(new AzureIoTError("hub.badReply", `Ignored a twin reply on an unexpected topic: ${clip(message.topic, 100)}`, {retriable: true}));
			return;
		}
		const op = this._twinOps.get(reply.rid);
		if (!op) return; // timed out already, or the reply to a request of an earlier run
		this._twinOps.delete(reply.rid);
		this._host.clearTimer(op.timer);
		if (reply.status >= 300 || reply.status < 200) {
			const text = clip(utf8Decode(message.payload));
			op.reject(new AzureIoTError("hub.rejected",
				`The hub answered the twin request with status ${reply.status}${text ? ": " + this._scrub(text) : ""}${reply.status === 429 ? ". Throttled: send twin updates less often" : ""}`,
				{status: reply.status, retriable: reply.status === 429 || reply.status >= 500}));
			return;
		}
		op.resolve({status: reply.status, version: reply.version, body: message.payload});
	}

	private _parseTwin(reply: TwinReply): Twin {
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
	private _readTwin(gen: number): void {
		this._twinRequest(twinGetTopic, new Uint8Array(0), false)
			.then(reply => this._parseTwin(reply))
			.then(twin => {
				if (gen !== this._gen || this._state === "closed") return;
				this._twinBackoff.reset();
				const version = twin.desired.$version;
				if (typeof version === "number" && version !== this._desiredVersion) {
					this._desiredVersion = version;
					const onDesired = this.#options.onDesired;
					if (onDesired) this._emit("onDesired", () => onDesired(twin.desired, version));
				}
				this._resolveOpen();
			}, (error: AzureIoTError) => {
				if (gen !== this._gen || this._state !== "ready") return; // the next connection reads again
				this._error(error);
				this._resolveOpen();
				if (gen !== this._gen || this._state !== "ready") return;
				this._host.clearTimer(this._twinRetryTimer);
				this._twinRetryTimer = this._host.setTimer(() => {
					this._twinRetryTimer = undefined;
					if (gen === this._gen && this._state === "ready") this._readTwin(gen);
				}, this._twinBackoff.next());
			});
	}

	private _resolveOpen(): void {
		this._opened = true;
		const waiter = this._openWaiter;
		this._openWaiter = undefined;
		waiter?.resolve();
	}

	private _onDesiredPatch(message: MqttMessage): void {
		let patch: unknown;
		try {
			patch = JSON.parse(utf8Decode(message.payload));
		}
		catch {
			patch = undefined;
		}
		if (!isRecord(patch)) {
			this._error(new AzureIoTError("hub.badReply", "Ignored a desired-properties update that is not a JSON object", {retriable: true}));
			return;
		}
		const version = desiredPatchVersion(message.topic) ?? (typeof patch.$version === "number" ? patch.$version : undefined);
		if (version === undefined) {
			this._error(new AzureIoTError("hub.badReply", "Ignored a desired-properties update without a $version", {retriable: true}));
			return;
		}
		// Already delivered through the twin read of this connection.
		if (this._desiredVersion !== undefined && version <= this._desiredVersion) return;
		this._desiredVersion = version;
		const onDesired = this.#options.onDesired;
		if (onDesired) this._emit("onDesired", () => onDesired(patch, version));
	}

	// --- incoming ---

	private _onSessionMessage(gen: number, message: MqttMessage): void | Promise<void> {
		if (gen !== this._gen || this._state === "closed") return;
		const topic = message.topic;
		if (topic.startsWith("$iothub/twin/res/")) this._onTwinReply(message);
		else if (isDesiredPatch(topic)) this._onDesiredPatch(message);
		else if (topic.startsWith("$iothub/methods/POST/")) this._onMethod(gen, message);
		else {
			const bag = c2dBag(topic, this._deviceId);
			if (bag !== undefined) return this._onCloudMessage(bag, message);
			this._log(`ignored a message on ${clip(topic, 100)}`);
		}
	}

	private _onCloudMessage(bag: string, message: MqttMessage): void | Promise<void> {
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
		const failed = (error: unknown) => this._log(`onMessage failed: ${this._scrub(error instanceof Error ? error.message : String(error))}`);
		try {
			const result = handler(cloudMessage);
			if (result && typeof (result as Promise<void>).then === "function") return (result as Promise<void>).then(undefined, failed);
		}
		catch (error) {
			failed(error);
		}
	}

	private _onMethod(gen: number, message: MqttMessage): void {
		const request = parseMethodTopic(message.topic);
		if (!request) {
			this._error(new AzureIoTError("hub.badReply", `Ignored a direct method request on an unexpected topic: ${clip(message.topic, 100)}`, {retriable: true}));
			return;
		}
		const {name, rid} = request;
		const respond = (status: number, payload: unknown) => {
			const session = this._session;
			if (gen !== this._gen || !session) return; // that connection is gone: the caller times out
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
				respond(500, {message: `Method ${name} failed: ${clip(this._scrub(detail))}`});
			});
	}

	// --- reporting ---

	private _emit(name: string, call: () => void): void {
		try {
			call();
		}
		catch (error) {
			this._log(`${name} threw: ${this._scrub(error instanceof Error ? error.message : String(error))}`);
		}
	}

	private _error(error: AzureIoTError): void {
		this._log(`${error.code}: ${error.message}`);
		this._emit("onError", () => this.#options.onError?.(error));
	}

	private _closedError(): AzureIoTError {
		return new AzureIoTError("hub.closed", "The hub client was closed. Create a new HubClient to connect again");
	}

	private _log(line: string): void {
		try {
			this._host.log?.(`hub: ${line}`);
		}
		catch {
			// logging must never break the client
		}
	}
}

Object.freeze(HubClient.prototype);
Object.freeze(HubClient);

