/*
 * The IoT Hub device client: telemetry, cloud-to-device messages, the device twin and direct
 * methods over one MQTT session, kept alive across token expiry, dropped links and throttling.
 * This file checks the options once and dispatches what the hub sends; each feature lives in a
 * module of its own under hub/ (as in Microsoft's Embedded C SDK, one file per feature), and only
 * hub/topics.ts looks into topic strings.
 *
 * What it guards against (the peer SDKs' reported failures): a reconnect loop that hammers a
 * throttling hub; state lost on reconnect (subscriptions are made again and the twin is re-read
 * after every connect); disconnects at SAS expiry (renewed by a clean reconnect before it expires);
 * telemetry lost silently (hub/outbox.ts); and a message larger than the device can hold, which is
 * refused unread (src/limits.ts) instead of exhausting the heap.
 *
 * No I/O of its own: the MQTT session, timers, clock, randomness and HMAC come from the host adapter.
 */
import type {HostAdapter} from "./host.js";
import {AzureIoTError, configError} from "./errors.js";
import {MqttClient} from "./mqtt/client.js";
import type {MqttClientOptions, MqttMessage, MqttSession, Subscription} from "./mqtt/types.js";
import {DEFAULT_LIMITS, HUB_MAXIMUM_BYTES, type IncomingLimits} from "./limits.js";
import {checkDeviceId, checkHostName, checkKey, checkModelId, checkPort, checkPositive, checkRoots} from "./validate.js";
import {HubConnection, type ConnectionEvents, type ConnectionSettings} from "./hub/connection.js";
import {Telemetry, type TelemetryDone, type TelemetryHooks, type TelemetryOptions} from "./hub/telemetry.js";
import {TwinFeature, type DesiredInfo, type Twin, type TwinHooks, type TwinRefusal} from "./hub/twin.js";
import {Methods, type MethodHooks, type MethodRequest, type MethodResponse} from "./hub/methods.js";
import {onCloudMessage, type CloudMessage, type RefusedMessage} from "./hub/c2d.js";
import {DESIRED_PATCHES, METHOD_REQUESTS, TWIN_RESPONSES, c2dSubscription, classifyTopic, topicKind} from "./hub/topics.js";

export type {CloudMessage, RefusedMessage} from "./hub/c2d.js";
export type {MethodRequest, MethodResponse} from "./hub/methods.js";
export type {TelemetryOptions} from "./hub/telemetry.js";
export type {DesiredInfo, Twin, TwinRefusal} from "./hub/twin.js";
export type {IncomingLimits} from "./limits.js";

/** How this client announces itself in the CONNECT user name, as Microsoft's SDKs do theirs. */
export const CLIENT_TYPE = "moddable-azure-iot/0.2.0";

/** The callbacks are called as methods of this object, so it may be an object of a class (src/device/lifecycle.ts). */
export interface HubOptions {
	adapter: HostAdapter;
	/** The hub's host name, e.g. `contoso.azure-devices.net` (DPS's assignedHub). */
	hubHost: string;
	deviceId: string;
	/** Base64 device key. Leave it out with an X.509 identity. */
	symmetricKey?: string;
	/** X.509: the device's certificate first, then any intermediates (DER). No password is sent. */
	clientCertificates?: readonly Uint8Array[];
	/** X.509: the certificate's key, unencrypted PKCS#8 DER, RSA. */
	clientKey?: Uint8Array;
	roots: readonly Uint8Array[];
	/** Default 8883. */
	port?: number;
	/** IoT Plug and Play model id (dtmi:…). */
	modelId?: string;
	/** Announced as `DeviceClientType` in the user name; default CLIENT_TYPE, "" for none. */
	clientType?: string;
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
	/** Telemetry messages published and awaiting PUBACK at once. Default 8. */
	maxInFlight?: number;
	/** Reconnect delays: full jitter, uniform in [initialMs / 2, min(maxMs, initialMs * 2^n)]. */
	backoff?: {initialMs?: number; maxMs?: number};
	/** Twin requests; default 30000. */
	operationTimeoutMs?: number;
	/** The most the device takes of each kind of incoming message (src/limits.ts). */
	limits?: Partial<IncomingLimits>;
	onConnect?(info: {sessionPresent: boolean; reconnect: boolean}): void;
	/** Every failed connection attempt or dropped connection, with the delay before the next attempt. */
	onDisconnect?(error: AzureIoTError, retryInMs: number | undefined): void;
	/** A cloud-to-device message. It is acknowledged (completed) once this returns or its promise settles. */
	onMessage?(message: CloudMessage): void | Promise<void>;
	/** A cloud-to-device message over maxMessageBytes: completed unread, so that the hub does not send it again. */
	onMessageRefused?(message: RefusedMessage): void;
	/** Desired-properties patch; also the full desired document after each connect's twin read, if its $version changed. */
	onDesired?(patch: Record<string, unknown>, version: number, info: DesiredInfo): void;
	onMethod?(request: MethodRequest): MethodResponse | Promise<MethodResponse>;
	/**
	 * A desired patch, or the twin document read after a connect, over maxTwinBytes: skipped unread;
	 * the device keeps the desired values it has. Without this callback it goes to onError.
	 */
	onTwinRefused?(refusal: TwinRefusal): void;
	/** A method request answered without the handler: over maxMethodBytes (413) or not JSON (400). */
	onMethodRefused?(info: {name: string; status: number; size: number; reason: string}): void;
	/**
	 * CONNACK 4/5 on any attempt (for the first connection open() also rejects with the same error).
	 * The client waits (the backoff's longest delay); re-provision and call retarget(), or it retries.
	 */
	onAuthFailure?(error: AzureIoTError): void;
	/** A message was refused because the queue is full (the promise also rejects with queue.full). */
	onQueueOverflow?(refused: {messageId: string}): void;
	/** Problems that do not end the connection: malformed or oversized desired updates, failed twin reads. */
	onError?(error: AzureIoTError): void;
	/** Test seam: how MQTT sessions are made. Default: new MqttClient(options). */
	createSession?(options: MqttClientOptions): MqttSession;
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

function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

function checkIdentity(options: HubOptions): {symmetricKey?: string; clientCertificates?: readonly Uint8Array[]; clientKey?: Uint8Array} {
	const certificates = options.clientCertificates;
	if (certificates === undefined) return {symmetricKey: checkKey(options.symmetricKey)};
	if (options.symmetricKey !== undefined)
		throw configError("symmetricKey", "is given together with clientCertificates", "Use one credential: the X.509 certificate, or the symmetric key");
	if (!Array.isArray(certificates) || !certificates.length || !certificates.every(c => c instanceof Uint8Array && c.length > 0))
		throw configError("clientCertificates", "is not a list of DER certificates", "Give the device's certificate first, then any intermediates, each as DER bytes");
	if (!(options.clientKey instanceof Uint8Array) || !options.clientKey.length)
		throw configError("clientKey", "is missing", "Give the certificate's private key as unencrypted PKCS#8 DER");
	return {clientCertificates: certificates, clientKey: options.clientKey};
}

function checkLimits(limits: Partial<IncomingLimits> | undefined): IncomingLimits {
	if (limits !== undefined && !isRecord(limits)) throw configError("limits", "is not an object", "Give {maxMessageBytes, maxMethodBytes, maxTwinBytes}, or leave it out");
	const l = limits ?? {};
	const one = (name: keyof IncomingLimits) => Math.floor(checkPositive(l[name] ?? DEFAULT_LIMITS[name], `limits.${name}`, 0, HUB_MAXIMUM_BYTES));
	return Object.freeze({maxMessageBytes: one("maxMessageBytes"), maxMethodBytes: one("maxMethodBytes"), maxTwinBytes: one("maxTwinBytes")});
}

// State is in TypeScript-private properties, not #private names: XS copies every outer name a
// function uses, #names included, into its stack frame, so they made every method's frame larger
// (BENCHMARKS.md, finding 6). Only #options (it holds the key) stays #private.
export class HubClient {
	#options: HubOptions;
	private _connection: HubConnection;
	private _telemetry: Telemetry;
	private _twin: TwinFeature;
	private _methods: Methods;
	private _limits: IncomingLimits;
	private _opened = false;
	private _openWaiter: {promise: Promise<void>; resolve(): void; reject(error: AzureIoTError): void} | undefined;

	constructor(options: HubOptions) {
		if (!isRecord(options)) throw configError("options", "is missing", "Pass one options object to new HubClient()");
		const adapter = options.adapter;
		if (!adapter || typeof adapter.setTimer !== "function" || typeof adapter.hmacSha256 !== "function")
			throw configError("adapter", "is missing or incomplete", "Pass the platform's host adapter (createNodeHost() under Node)");
		const ttl = Math.floor(checkPositive(options.tokenTtlSeconds ?? 3600, "tokenTtlSeconds", 2, 365 * 24 * 3600));
		const defaultRenew = Math.min(Math.max(10, ttl / 4), ttl / 2);
		const b = options.backoff ?? {};
		const initialMs = checkPositive(b.initialMs ?? 1000, "backoff.initialMs", 1, 3600000);
		const backoff = {initialMs, maxMs: checkPositive(b.maxMs ?? 60000, "backoff.maxMs", initialMs, 24 * 3600000)};
		const clientType = options.clientType ?? CLIENT_TYPE;
		if (typeof clientType !== "string" || clientType.length > 128)
			throw configError("clientType", "is not a short string", "Give a name/version such as my-product/1.2, \"\" for none, or leave it out");
		const settings: ConnectionSettings = {
			adapter,
			hubHost: checkHostName(options.hubHost, "hubHost"),
			deviceId: checkDeviceId(options.deviceId),
			...checkIdentity(options),
			roots: checkRoots(options.roots),
			port: checkPort(options.port ?? 8883, "port"),
			modelId: options.modelId === undefined || options.modelId === "" ? undefined : checkModelId(options.modelId),
			clientType: clientType || undefined,
			clean: options.clean ?? false,
			keepAliveSeconds: Math.floor(checkPositive(options.keepAliveSeconds ?? 120, "keepAliveSeconds", 1, 1177)),
			tokenTtlSeconds: ttl,
			renewBeforeSeconds: checkPositive(options.renewBeforeSeconds ?? defaultRenew, "renewBeforeSeconds", 0.001, ttl - 1),
			backoff,
			createSession: options.createSession ?? newMqttClient,
		};
		const operationTimeoutMs = checkPositive(options.operationTimeoutMs ?? 30000, "operationTimeoutMs", 1, 3600000);
		const maxInFlight = Math.floor(checkPositive(options.maxInFlight ?? 8, "maxInFlight", 1, 65535));
		const queueLimit = Math.floor(checkPositive(options.queueLimit ?? 64, "queueLimit", 1, 65535));
		this._limits = checkLimits(options.limits);
		this.#options = options;

		const hooks = new HubClient.Hooks(this);
		const connection = this._connection = new HubConnection(settings, hooks);
		this._telemetry = new Telemetry(connection, {queueLimit, maxInFlight}, hooks);
		this._twin = new TwinFeature(connection, {operationTimeoutMs, backoff}, hooks);
		this._methods = new Methods(connection, hooks);
	}

	/**
	 * What the connection and the features call back, as one object: a closure costs about 6 heap
	 * slots on XS, an object of this class 2, and its methods stay in flash with the preloaded module
	 * (BENCHMARKS.md). Inside the class body, so that it reaches the client's private members.
	 */
	private static Hooks = class implements ConnectionEvents, TelemetryHooks, TwinHooks, MethodHooks {
		private _hub: HubClient;

		constructor(hub: HubClient) {
			this._hub = hub;
		}

		// HubConnection's
		subscriptions(): Subscription[] {
			return this._hub._subscriptions();
		}

		incomingLimit(topic: string): number {
			return this._hub._limitFor(topic);
		}

		onReady(gen: number, info: {sessionPresent: boolean; reconnect: boolean}): void {
			this._hub._onReady(gen, info);
		}

		onMessage(gen: number, message: MqttMessage): void | Promise<void> {
			return this._hub._onMessage(gen, message);
		}

		onEnd(gen: number, closing: boolean): void {
			this._hub._onEnd(gen, closing);
		}

		onDisconnect(error: AzureIoTError, retryInMs: number): void {
			this._hub._onDisconnect(error, retryInMs);
		}

		onAuthFailure(error: AzureIoTError): void {
			const hub = this._hub;
			hub._emit("onAuthFailure", () => hub.#options.onAuthFailure?.(error));
		}

		log(line: string): void {
			this._hub._log(line);
		}

		// Telemetry's
		onOverflow(refused: {messageId: string}): void {
			const hub = this._hub;
			hub._emit("onQueueOverflow", () => hub.#options.onQueueOverflow?.(refused));
		}

		refuse(error: unknown): AzureIoTError {
			return error instanceof AzureIoTError ? new AzureIoTError(error.code, this.scrub(error.message), {status: error.status}) : new AzureIoTError("config", this.scrub(String(error)));
		}

		uuid(): string {
			return uuid(this._hub.#options.adapter);
		}

		// TwinFeature's
		onDesired(patch: Record<string, unknown>, version: number, info: DesiredInfo): void {
			// Called as a method of the options (they may be an object of a class: src/device/lifecycle.ts),
			// and not through _emit: two stack frames fewer under a deployment's handling (Device Update).
			try {
				this._hub.#options.onDesired?.(patch, version, info);
			}
			catch (error) {
				this._hub._threw("onDesired", error);
			}
		}

		error(error: AzureIoTError): void {
			this._hub._error(error);
		}

		refused(refusal: TwinRefusal, error: AzureIoTError): void {
			const hub = this._hub;
			hub._log(`${error.code}: ${error.message}`);
			const o = hub.#options;
			if (o.onTwinRefused) hub._emit("onTwinRefused", () => o.onTwinRefused!(refusal));
			else hub._emit("onError", () => o.onError?.(error));
		}

		readDone(): void {
			this._hub._resolveOpen();
		}

		scrub(text: string): string {
			return this._hub._connection.scrub(text);
		}

		get maxTwinBytes(): number {
			return this._hub._limits.maxTwinBytes;
		}

		// Methods'
		get handles(): boolean {
			return typeof this._hub.#options.onMethod === "function";
		}

		handle(request: MethodRequest): MethodResponse | Promise<MethodResponse> {
			return this._hub.#options.onMethod!(request);
		}

		methodRefused(info: {name: string; status: number; size: number; reason: string}): void {
			const hub = this._hub;
			hub._emit("onMethodRefused", () => hub.#options.onMethodRefused?.(info));
		}

		get maxMethodBytes(): number {
			return this._hub._limits.maxMethodBytes;
		}
	};

	static {
		// Preloaded and frozen, as every class here: then it stays in flash.
		Object.freeze(HubClient.Hooks.prototype);
		Object.freeze(HubClient.Hooks);
	}

	/** True once connected, subscribed and able to publish. */
	get connected(): boolean {
		return this._connection.state === "ready";
	}

	get hubHost(): string {
		return this._connection.hubHost;
	}

	get deviceId(): string {
		return this._connection.deviceId;
	}

	get limits(): IncomingLimits {
		return this._limits;
	}

	get stats(): HubStats {
		const t = this._telemetry;
		return Object.freeze({sent: t.sent, acked: t.acked, resent: t.resent, reconnects: this._connection.reconnects, queued: t.queued});
	}

	/**
	 * Connects. Resolves after the first connection is subscribed and its twin read has finished
	 * (a failed read is reported to onError and retried). Rejects with hub.unauthorized when the
	 * credentials are refused (the client keeps retrying slowly unless closed or retargeted), or
	 * hub.closed. Network and TLS failures are retried with backoff and reported to onDisconnect.
	 */
	open(): Promise<void> {
		if (this._connection.state === "closed") return Promise.reject(closedError());
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
		this._connection.open();
		return waiter.promise;
	}

	/**
	 * Queues a QoS 1 telemetry message and resolves on its PUBACK, across reconnects if need be.
	 * Rejects at once with queue.full (and calls onQueueOverflow) if queueLimit messages are
	 * already waiting; rejects with hub.closed if the client is closed before the hub acknowledges it.
	 */
	sendTelemetry(body: string | Uint8Array | object, options: TelemetryOptions = {}): Promise<{messageId: string}> {
		if (this._connection.state === "closed") return Promise.reject(closedError());
		return this._telemetry.send(body, options);
	}

	/**
	 * sendTelemetry() with a callback instead of a promise: null and the message id once the hub
	 * acknowledged it, or the error; never from inside this call. Cheaper while the message waits
	 * (XS gives each promise and handler heap slots), which is why the Device uses it.
	 */
	queueTelemetry(body: string | Uint8Array | object, options: TelemetryOptions, done: TelemetryDone): void {
		if (this._connection.state === "closed") {
			const error = closedError();
			Promise.resolve().then(() => done(error));
			return;
		}
		this._telemetry.queue(body, options, done);
	}

	getTwin(): Promise<Twin> {
		return this._twin.get();
	}

	/** Sends a reported-properties patch (null deletes a property); resolves with the new reported $version. */
	updateReported(patch: Record<string, unknown>): Promise<number> {
		return new Promise((resolve, reject) => this.queueReported(patch, (error, version) => error ? reject(error) : resolve(version!)));
	}

	/**
	 * updateReported() with a callback: null and the new reported $version, or the error; never
	 * from inside this call. The Device's way: a patch waiting for its reply then holds no promises.
	 */
	queueReported(patch: Record<string, unknown>, done: (error: AzureIoTError | null, version?: number) => void): void {
		let json: string | undefined, problem: AzureIoTError | undefined;
		if (!isRecord(patch)) problem = configError("patch", "is not an object", "Pass the reported properties to change, e.g. {temperature: 21}");
		else {
			try {
				json = JSON.stringify(patch);
			}
			catch {
				problem = configError("patch", "cannot be serialized as JSON", "Remove cycles and BigInt values");
			}
		}
		if (problem) {
			const error = problem;
			Promise.resolve().then(() => done(error));
			return;
		}
		this._twin.reportWith(json!, done);
	}

	/**
	 * Sends a reported-properties patch given as JSON text, sent as it is: for payloads written to
	 * match another SDK's bytes (Device Update's, src/adu/agent.ts). Resolves with the new $version.
	 */
	updateReportedJson(json: string): Promise<number> {
		if (typeof json !== "string" || !json.startsWith("{"))
			return Promise.reject(configError("patch", "is not JSON object text", "Pass the patch as the text of a JSON object"));
		return this._twin.report(json);
	}

	/**
	 * Points the client at another hub or device (after re-provisioning) and reconnects at once.
	 * Queued telemetry is kept and goes to the new hub.
	 */
	retarget(target: {hubHost: string; deviceId: string; symmetricKey?: string}): void {
		if (this._connection.state === "closed") throw closedError();
		if (!isRecord(target)) throw configError("retarget()", "needs {hubHost, deviceId, symmetricKey?}", "Pass DPS's assignedHub and deviceId");
		const hubHost = checkHostName(target.hubHost, "hubHost");
		const deviceId = checkDeviceId(target.deviceId);
		const symmetricKey = target.symmetricKey === undefined ? undefined : checkKey(target.symmetricKey);
		if (hubHost !== this._connection.hubHost || deviceId !== this._connection.deviceId) this._twin.forget();
		this._connection.retarget({hubHost, deviceId, symmetricKey});
	}

	/** Sends DISCONNECT and stops. Queued telemetry and pending twin requests reject with hub.closed. */
	close(): Promise<void> {
		if (this._connection.state === "closed") return Promise.resolve();
		this._connection.close();
		this._openWaiter?.reject(closedError());
		this._openWaiter = undefined;
		this._log("closed");
		return Promise.resolve();
	}

	// --- what the connection tells us ---

	private _subscriptions(): Subscription[] {
		const o = this.#options;
		const list: Subscription[] = [{topic: TWIN_RESPONSES, qos: 0}];
		if (o.onMessage || o.onMessageRefused) list.push({topic: c2dSubscription(this._connection.deviceId), qos: 1});
		if (o.onDesired) list.push({topic: DESIRED_PATCHES, qos: 0});
		if (o.onMethod) list.push({topic: METHOD_REQUESTS, qos: 0});
		return list;
	}

	/** How much of a message on `topic` to take: more is dropped unread and refused (see the features). */
	private _limitFor(topic: string): number {
		const l = this._limits;
		switch (topicKind(topic, this._connection.deviceId)) {
		case "twinResponse":
		case "desired":
			return l.maxTwinBytes;
		case "method":
			return l.maxMethodBytes;
		case "c2d":
			return l.maxMessageBytes;
		default:
			return 0; // a topic we never subscribed to: acknowledged and ignored without reading it
		}
	}

	private _onReady(gen: number, info: {sessionPresent: boolean; reconnect: boolean}): void {
		// Not through _emit: a stack frame fewer under the application's first sends (the XS stack is small on the ESP32).
		try {
			this.#options.onConnect?.(info);
		}
		catch (error) {
			this._threw("onConnect", error);
		}
		if (!this._connection.isReady(gen)) return;
		this._twin.onReady(gen);
		this._telemetry.onReady();
	}

	private _onEnd(gen: number, closing: boolean): void {
		const error = closedError();
		this._telemetry.onEnd(gen, closing, error);
		this._twin.onEnd(closing, error);
	}

	private _onDisconnect(error: AzureIoTError, delay: number): void {
		if (error.code === "hub.unauthorized" && this._openWaiter) {
			this._openWaiter.reject(error);
			this._openWaiter = undefined;
		}
		this._emit("onDisconnect", () => this.#options.onDisconnect?.(error, delay));
	}

	private _onMessage(gen: number, message: MqttMessage): void | Promise<void> {
		const o = this.#options;
		const topic = classifyTopic(message.topic, this._connection.deviceId);
		switch (topic.kind) {
		case "twinResponse":
			this._twin.onReply(topic.status, topic.rid, topic.version, message);
			return;
		case "desired":
			this._twin.onDesiredPatch(topic.version, message);
			return;
		case "method":
			this._methods.onRequest(gen, topic, message);
			return;
		case "c2d":
			return onCloudMessage(topic.bag, message, {
				handler: o.onMessage && (m => o.onMessage!(m)),
				refused: o.onMessageRefused && (m => this._emit("onMessageRefused", () => o.onMessageRefused!(m))),
				failed: error => this._log(`onMessage failed: ${this._connection.scrub(error instanceof Error ? error.message : String(error))}`),
				maxMessageBytes: this._limits.maxMessageBytes,
			});
		default:
			this._log(`ignored a message${message.dropped ? ` of ${message.size} bytes, unread,` : ""} on ${clipTopic(message.topic)} (${topic.reason})`);
		}
	}

	private _resolveOpen(): void {
		this._opened = true;
		const waiter = this._openWaiter;
		this._openWaiter = undefined;
		waiter?.resolve();
	}

	// --- reporting ---

	private _emit(name: string, call: () => void): void {
		try {
			call();
		}
		catch (error) {
			this._threw(name, error);
		}
	}

	private _threw(name: string, error: unknown): void {
		this._log(`${name} threw: ${this._connection.scrub(error instanceof Error ? error.message : String(error))}`);
	}

	private _error(error: AzureIoTError): void {
		this._log(`${error.code}: ${error.message}`);
		this._emit("onError", () => this.#options.onError?.(error));
	}

	private _log(line: string): void {
		try {
			this.#options.adapter.log?.(`hub: ${line}`);
		}
		catch {
			// logging must never break the client
		}
	}
}

/** The default session: a module function, so that no closure is made for it. */
function newMqttClient(options: MqttClientOptions): MqttSession {
	return new MqttClient(options);
}

function closedError(): AzureIoTError {
	return new AzureIoTError("hub.closed", "The hub client was closed. Create a new HubClient to connect again");
}

function clipTopic(topic: string): string {
	return topic ? (topic.length > 100 ? topic.slice(0, 100) + "…" : topic) : "(a topic too long to read)";
}

function uuid(adapter: HostAdapter): string {
	let hex = "";
	for (let i = 0; i < 16; i++) {
		let byte = Math.floor(adapter.random() * 256) & 255;
		if (i === 6) byte = (byte & 0x0f) | 0x40;
		if (i === 8) byte = (byte & 0x3f) | 0x80;
		hex += (byte < 16 ? "0" : "") + byte.toString(16);
		if (i === 3 || i === 5 || i === 7 || i === 9) hex += "-";
	}
	return hex;
}

Object.freeze(HubClient.prototype);
Object.freeze(HubClient);
