/*
 * The life of the hub connection: connect, subscribe, renew the SAS token before it expires (MQTT
 * 3.1.1 cannot re-authenticate in-band, so renewing is a clean reconnect), and reconnect after a
 * drop with jittered backoff that never retries at once (an unexplained disconnect may be the hub
 * throttling us). The features (telemetry, twin, methods, cloud-to-device) hear of each connection
 * through the generation number it carries: whatever they sent on an older generation is theirs to
 * take back when it ends.
 */
import type {HostAdapter, TimerHandle} from "../host.js";
import {AzureIoTError} from "../errors.js";
import {hubPassword, redact, signatureOf} from "../sas.js";
import {Backoff} from "../backoff.js";
import type {MqttClientOptions, MqttMessage, MqttSession, QoS, Subscription} from "../mqtt/types.js";
import {hubUsername} from "./topics.js";

/** A connection that stayed up this long resets the backoff. */
const STABLE_MS = 30000;

export type ConnectionState = "idle" | "connecting" | "subscribing" | "ready" | "waiting" | "closed";

/** Checked values (src/hub.ts checks the options once). */
export interface ConnectionSettings {
	adapter: HostAdapter;
	hubHost: string;
	deviceId: string;
	/** Base64 device key; undefined with an X.509 identity. */
	symmetricKey?: string;
	/** X.509: the leaf and its intermediates (DER), and its PKCS#8 key. */
	clientCertificates?: readonly Uint8Array[];
	clientKey?: Uint8Array;
	roots: readonly Uint8Array[];
	port: number;
	modelId?: string;
	clientType?: string;
	clean: boolean;
	keepAliveSeconds: number;
	tokenTtlSeconds: number;
	renewBeforeSeconds: number;
	backoff: {initialMs: number; maxMs: number};
	createSession: (options: MqttClientOptions) => MqttSession;
}

export interface ConnectionEvents {
	/** What to subscribe to on each connection. */
	subscriptions(): Subscription[];
	/** The largest payload to take for a topic (more is dropped unread). */
	incomingLimit(topic: string): number;
	/** Subscribed and ready on connection `gen`. */
	onReady(gen: number, info: {sessionPresent: boolean; reconnect: boolean}): void;
	onMessage(gen: number, message: MqttMessage): void | Promise<void>;
	/** Connection `gen` is over (dropped, renewed, retargeted or closed): take back what was in flight on it. */
	onEnd(gen: number, closing: boolean): void;
	/** A failed attempt or a drop, and the wait before the next attempt. */
	onDisconnect(error: AzureIoTError, retryInMs: number): void;
	/** CONNACK 4/5. */
	onAuthFailure(error: AzureIoTError): void;
	log(line: string): void;
}

// State is in TypeScript-private properties, not #private names: XS copies every outer name a
// function uses, #names included, into its stack frame (BENCHMARKS.md, finding 6). Only #key and
// #password (secrets) stay #private.
export class HubConnection {
	private _s: ConnectionSettings;
	#key: string | undefined;
	#password = "";
	private _events: ConnectionEvents;
	private _state: ConnectionState = "idle";
	private _gen = 0;
	private _session: MqttSession | undefined;
	private _tokenExpiryMs = 0;
	private _everConnected = false;
	private _connectedAt = 0;
	private _backoff: Backoff;
	private _retryTimer: TimerHandle | undefined;
	private _renewTimer: TimerHandle | undefined;
	/** Connections made after the first (token renewals included). */
	reconnects = 0;

	constructor(settings: ConnectionSettings, events: ConnectionEvents) {
		this._s = settings;
		this.#key = settings.symmetricKey;
		this._events = events;
		this._backoff = new Backoff(settings.backoff, () => settings.adapter.random());
	}

	get state(): ConnectionState {
		return this._state;
	}

	get generation(): number {
		return this._gen;
	}

	get adapter(): HostAdapter {
		return this._s.adapter;
	}

	get hubHost(): string {
		return this._s.hubHost;
	}

	get deviceId(): string {
		return this._s.deviceId;
	}

	/** The session of `gen` while it is ready (or subscribing, for the subscriptions' own use). */
	sessionFor(gen: number): MqttSession | undefined {
		return gen === this._gen && (this._state === "ready" || this._state === "subscribing") ? this._session : undefined;
	}

	isReady(gen: number): boolean {
		return gen === this._gen && this._state === "ready";
	}

	/**
	 * Publishes on connection `gen` (ready, or still subscribing: answers to what came first):
	 * done(undefined) once sent (QoS 0) or acknowledged (QoS 1), else the error (mqtt.closed when
	 * that connection is gone); never from inside this call. A callback, not a promise: a message in
	 * flight then holds one function, not two promises and their handlers.
	 */
	send(gen: number, topic: string, payload: Uint8Array, qos: QoS, done: (error: unknown) => void): void {
		const session = this.sessionFor(gen);
		if (!session) {
			const error = new AzureIoTError("mqtt.closed", "The connection to the hub ended before the message was sent", {retriable: true});
			Promise.resolve().then(() => done(error));
			return;
		}
		try {
			if (session.send) session.send(topic, payload, qos, done);
			else session.publish(topic, payload, {qos}).then(() => done(undefined), done);
		}
		catch (error) {
			Promise.resolve().then(() => done(error));
		}
	}

	open(): void {
		if (this._state === "idle") this._connect();
	}

	/** Points the connection at another hub or device (after re-provisioning) and reconnects at once. */
	retarget(target: {hubHost: string; deviceId: string; symmetricKey?: string; clientCertificates?: readonly Uint8Array[]; clientKey?: Uint8Array}): void {
		this._s = {...this._s, hubHost: target.hubHost, deviceId: target.deviceId,
			clientCertificates: target.clientCertificates ?? this._s.clientCertificates, clientKey: target.clientKey ?? this._s.clientKey};
		if (target.symmetricKey !== undefined) this.#key = target.symmetricKey;
		this._log(`retargeted to ${target.hubHost} as ${target.deviceId}`);
		this._backoff.reset();
		if (this._state !== "idle") this._reconnectNow();
	}

	/** A feature found the connection of `gen` dead (a PUBACK that never came): drop it and retry. */
	fail(gen: number, cause: unknown): void {
		if (gen === this._gen && this._state === "ready") this._drop(gen, cause, this._session);
	}

	close(): void {
		if (this._state === "closed") return;
		const gen = this._gen;
		this._state = "closed";
		this._gen++;
		this._clearTimers();
		const session = this._session;
		this._session = undefined;
		if (session) endSession(session);
		this._events.onEnd(gen, true);
	}

	/** Whatever a lower layer wrote, no key, token or signature leaves the client. */
	scrub(text: string): string {
		let out = String(text);
		const password = this.#password;
		const sig = signatureOf(password);
		let decoded: string | undefined;
		try {
			decoded = sig && decodeURIComponent(sig);
		}
		catch {
			decoded = undefined;
		}
		for (const secret of [this.#key, password, sig, decoded]) {
			if (secret && secret.length >= 8) out = out.split(secret).join("<redacted>");
		}
		return redact(out);
	}

	private _connect(): void {
		const s = this._s;
		const adapter = s.adapter;
		adapter.clearTimer(this._retryTimer);
		this._retryTimer = undefined;
		const gen = ++this._gen;
		this._state = "connecting";
		this._session = undefined;
		const expiry = Math.floor(adapter.now() / 1000) + s.tokenTtlSeconds;
		this._tokenExpiryMs = expiry * 1000;
		let session: MqttSession;
		try {
			// With an X.509 identity the certificate is the credential: no password (the hub needs none).
			const key = this.#key;
			this.#password = key === undefined ? "" : hubPassword(s.hubHost, s.deviceId, key, expiry, (k, m) => adapter.hmacSha256(k, m));
			this._log(`connecting to ${s.hubHost}:${s.port} as ${s.deviceId}`);
			const options: MqttClientOptions = {
				adapter,
				server: {host: s.hubHost, port: s.port, roots: s.roots},
				clientId: s.deviceId,
				username: hubUsername(s.hubHost, s.deviceId, s.modelId, s.clientType),
				clean: s.clean,
				keepAliveSeconds: s.keepAliveSeconds,
				incomingLimit: topic => this._events.incomingLimit(topic),
				onConnect: info => this._onSessionConnect(gen, info.sessionPresent),
				onMessage: message => gen === this._gen && this._state !== "closed" ? this._events.onMessage(gen, message) : undefined,
				onClose: error => this._onSessionClose(gen, error),
			};
			if (key !== undefined) options.password = this.#password;
			if (s.clientCertificates) {
				options.server.clientCertificates = s.clientCertificates;
				options.server.clientKey = s.clientKey;
			}
			session = s.createSession(options);
		}
		catch (error) {
			if (gen === this._gen && this._state === "connecting") this._drop(gen, error, undefined);
			return;
		}
		// A session that reported its end synchronously has already moved the state on.
		if (gen === this._gen && this._state === "connecting") this._session = session;
		else if (gen !== this._gen || this.state === "closed") endSession(session);
	}

	private _onSessionConnect(gen: number, sessionPresent: boolean): void {
		if (gen !== this._gen || this._state !== "connecting") return;
		const session = this._session;
		if (!session) { // CONNACK reported from inside the constructor: finish once it has returned
			Promise.resolve().then(() => this._onSessionConnect(gen, sessionPresent));
			return;
		}
		const adapter = this._s.adapter;
		this._state = "subscribing";
		this._connectedAt = adapter.now();
		const reconnect = this._everConnected;
		this._everConnected = true;
		if (reconnect) this.reconnects++;
		if (this.#key !== undefined) {
			// Counted from when the token was made, not from CONNACK: a slow handshake must not eat the margin.
			const renewInMs = Math.max(1000, this._tokenExpiryMs - this._s.renewBeforeSeconds * 1000 - adapter.now());
			this._renewTimer = adapter.setTimer(() => {
				this._renewTimer = undefined;
				if (gen === this._gen && (this._state === "ready" || this._state === "subscribing")) {
					this._log("renewing the SAS token");
					this._reconnectNow();
				}
			}, renewInMs);
		}
		let subscribing: Promise<unknown>;
		try {
			subscribing = session.subscribe(this._events.subscriptions());
		}
		catch (error) {
			subscribing = Promise.reject(error);
		}
		subscribing.then(() => {
			if (gen !== this._gen || this._state !== "subscribing") return;
			this._state = "ready";
			this._log(`connected to ${this._s.hubHost}${reconnect ? " again" : ""}`);
			this._events.onReady(gen, {sessionPresent, reconnect});
		}, error => {
			if (gen === this._gen && this._state === "subscribing") this._drop(gen, error, session);
		});
	}

	private _onSessionClose(gen: number, error: AzureIoTError): void {
		if (gen !== this._gen) return;
		if (this._state !== "connecting" && this._state !== "subscribing" && this._state !== "ready") return;
		this._drop(gen, error, undefined);
	}

	/** The connection of `gen` is over. */
	private _endConnection(gen: number): void {
		const wasUp = this._state === "ready" || this._state === "subscribing";
		if (wasUp && this._s.adapter.now() - this._connectedAt >= STABLE_MS) this._backoff.reset();
		this._session = undefined;
		this._s.adapter.clearTimer(this._renewTimer);
		this._renewTimer = undefined;
		this._events.onEnd(gen, false);
	}

	/** Unexpected end (or a failure treated as one): report it and retry after a backoff delay. */
	private _drop(gen: number, cause: unknown, closeSession: MqttSession | undefined): void {
		this._endConnection(gen);
		if (closeSession) endSession(closeSession, true);
		const error = this._classify(cause);
		const slow = error.code === "hub.unauthorized" || error.code === "tls";
		const delay = slow ? this._backoff.long() : this._backoff.next();
		this._state = "waiting";
		const retryGen = this._gen;
		this._retryTimer = this._s.adapter.setTimer(() => {
			this._retryTimer = undefined;
			if (this._state === "waiting" && this._gen === retryGen) this._connect();
		}, delay);
		this._log(`disconnected (${error.code}${error.status !== undefined ? " " + error.status : ""}); retrying in ${delay} ms`);
		this._events.onDisconnect(error, delay);
		if (error.code === "hub.unauthorized" && this.state !== "closed" && this._gen === retryGen) this._events.onAuthFailure(error);
	}

	/** Planned reconnect (token renewal, retarget): DISCONNECT cleanly, then connect with a fresh token at once. */
	private _reconnectNow(): void {
		const session = this._session;
		this._endConnection(this._gen);
		if (session) endSession(session);
		this._s.adapter.clearTimer(this._retryTimer);
		this._retryTimer = undefined;
		this._connect();
	}

	private _clearTimers(): void {
		const adapter = this._s.adapter;
		adapter.clearTimer(this._retryTimer);
		adapter.clearTimer(this._renewTimer);
		this._retryTimer = this._renewTimer = undefined;
	}

	private _classify(cause: unknown): AzureIoTError {
		const s = this._s;
		if (cause instanceof AzureIoTError) {
			if (cause.code === "mqtt.connack" && (cause.status === 4 || cause.status === 5))
				return new AzureIoTError("hub.unauthorized",
					`${s.hubHost} refused the credentials of device ${s.deviceId} (CONNACK ${cause.status}): ${s.clientCertificates ? "the certificate is not registered for this device (thumbprint or CA), has expired, or its CN is not the device id" : "the key is wrong"}, or the device was deleted, disabled or moved to another hub. Re-provision with DPS and call retarget(); until then the client retries slowly`,
					{status: cause.status});
			if (cause.code === "mqtt.connack" && cause.status === 3)
				return new AzureIoTError("hub.unavailable", `${s.hubHost} is unavailable (CONNACK 3); retrying with backoff`, {status: 3, retriable: true});
			return new AzureIoTError(cause.code, this.scrub(cause.message),
				{status: cause.status, retryAfter: cause.retryAfter, retriable: cause.code !== "config"});
		}
		const message = cause instanceof Error ? cause.message : String(cause);
		return new AzureIoTError("network", this.scrub(`Connecting to ${s.hubHost} failed: ${message}`), {retriable: true});
	}

	private _log(line: string): void {
		this._events.log(line);
	}
}

function endSession(session: MqttSession, abort = false): void {
	try {
		if (!abort && session.connected) session.disconnect();
		else session.close();
	}
	catch {
		// already gone
	}
}

Object.freeze(HubConnection.prototype);
Object.freeze(HubConnection);
