/*
 * The Device Provisioning Service client: register over MQTT with a symmetric key, poll the
 * operation until DPS decides, and hand back everything DPS said. Retries are for what Azure calls
 * retriable (429, 5xx, dropped connections, malformed replies), always with a delay that honours
 * retry-after, so that a fleet never storms DPS. 401/403/404, "failed" and "disabled" end it at once
 * with an error that says what to fix.
 */
import type {HostAdapter} from "./host.js";
import {AzureIoTError, configError} from "./errors.js";
import {dpsPassword} from "./sas.js";
import {utf8Decode} from "./encoding.js";
import {Backoff} from "./backoff.js";
import {MqttClient} from "./mqtt/client.js";
import type {MqttClientOptions, MqttMessage, MqttSession} from "./mqtt/types.js";
import {
	DPS_RESPONSE_FILTER, dpsUsername, parseErrorBody, parseOperationReply, parseReplyTopic, pollTopic, registerTopic,
	type RegistrationResult,
} from "./dps/topics.js";
import {checkHostName, checkIdScope, checkKey, checkModelId, checkPort, checkPositive, checkRegistrationId, checkRoots} from "./validate.js";

export type {RegistrationResult} from "./dps/topics.js";

export const DPS_GLOBAL_ENDPOINT = "global.azure-devices-provisioning.net";

export interface ProvisioningStatus {
	state: "connecting" | "registering" | "assigning" | "retrying";
	attempt: number;
	retryAfterMs?: number;
	reason?: string;
}

export interface ProvisioningOptions {
	adapter: HostAdapter;
	idScope: string;
	registrationId: string;
	/** The device's key: the enrollment's key, or for a group the key derived from the group key. Leave it out with X.509. */
	symmetricKey?: string;
	/** X.509 attestation: the device's certificate (CN = registrationId) first, then the intermediates up to the group's verified CA (DER). */
	clientCertificates?: readonly Uint8Array[];
	/** X.509: the certificate's key, unencrypted PKCS#8 DER, RSA. */
	clientKey?: Uint8Array;
	roots: readonly Uint8Array[];
	endpoint?: string;
	port?: number;
	/** Custom data for allocation policies and webhooks. */
	payload?: unknown;
	/** IoT Plug and Play model id, sent in the payload as `modelId`. */
	modelId?: string;
	tokenTtlSeconds?: number;
	/** Bound on the whole registration, retries included. Default 5 minutes. */
	timeoutMs?: number;
	/** Bound on one request's reply. Default 30 s. */
	replyTimeoutMs?: number;
	/** Retries of retriable failures before giving up. Default 12. */
	maxRetries?: number;
	/** Sent as `ClientVersion` in the user name, as the Embedded C SDK does; default none. */
	clientVersion?: string;
	onStatus?(status: ProvisioningStatus): void;
	/** Test seam: how MQTT sessions are made. */
	createSession?(options: MqttClientOptions): MqttSession;
}

interface Reply {
	status: number;
	retryAfter?: number;
	body: string;
}

// Azure's guidance: exponential backoff with jitter between about 1 s and 100 s when no retry-after is given.
const BACKOFF_INITIAL_MS = 1000;
const BACKOFF_MAX_MS = 100_000;
// DPS sets retry-after to keep polls within its limit (5 per 10 s); below a second is never asked for.
const MIN_POLL_INTERVAL_MS = 1000;

const DEFAULT_POLL_INTERVAL_MS = 3000;

/** Checked options: what the client works with. */
interface Checked {
	adapter: HostAdapter;
	idScope: string;
	registrationId: string;
	symmetricKey?: string;
	clientCertificates?: readonly Uint8Array[];
	clientKey?: Uint8Array;
	roots: readonly Uint8Array[];
	endpoint: string;
	port: number;
	payload?: unknown;
	modelId?: string;
	tokenTtlSeconds: number;
	timeoutMs: number;
	replyTimeoutMs: number;
	maxRetries: number;
	clientVersion?: string;
	onStatus?: (status: ProvisioningStatus) => void;
	createSession: (options: MqttClientOptions) => MqttSession;
}

function checkOptions(options: ProvisioningOptions): Checked {
	if (!options || typeof options !== "object") throw configError("options", "is missing", "Pass one options object to new ProvisioningClient()");
	const adapter = options.adapter;
	if (!adapter || typeof adapter.setTimer !== "function" || typeof adapter.hmacSha256 !== "function")
		throw configError("adapter", "is missing or incomplete", "Pass the platform's host adapter (hosts/node or hosts/moddable)");
	const checked: Checked = {
		adapter,
		idScope: checkIdScope(options.idScope),
		registrationId: checkRegistrationId(options.registrationId),
		roots: checkRoots(options.roots),
		endpoint: checkHostName(options.endpoint ?? DPS_GLOBAL_ENDPOINT, "endpoint"),
		port: checkPort(options.port ?? 8883, "port"),
		tokenTtlSeconds: Math.floor(checkPositive(options.tokenTtlSeconds ?? 3600, "tokenTtlSeconds", 60, 365 * 24 * 3600)),
		timeoutMs: checkPositive(options.timeoutMs ?? 5 * 60_000, "timeoutMs", 1, 24 * 3600_000),
		replyTimeoutMs: checkPositive(options.replyTimeoutMs ?? 30_000, "replyTimeoutMs", 1, 3600_000),
		maxRetries: Math.floor(checkPositive(options.maxRetries ?? 12, "maxRetries", 0, 10_000)),
		createSession: options.createSession ?? ((o: MqttClientOptions) => new MqttClient(o)),
	};
	if (options.clientCertificates !== undefined) {
		if (options.symmetricKey !== undefined)
			throw configError("symmetricKey", "is given together with clientCertificates", "Use one attestation: the X.509 certificate, or the symmetric key");
		const certificates = options.clientCertificates;
		if (!Array.isArray(certificates) || !certificates.length || !certificates.every(c => c instanceof Uint8Array && c.length > 0))
			throw configError("clientCertificates", "is not a list of DER certificates", "Give the device's certificate first, then any intermediates, each as DER bytes");
		if (!(options.clientKey instanceof Uint8Array) || !options.clientKey.length)
			throw configError("clientKey", "is missing", "Give the certificate's private key as unencrypted PKCS#8 DER");
		checked.clientCertificates = certificates;
		checked.clientKey = options.clientKey;
	}
	else checked.symmetricKey = checkKey(options.symmetricKey);
	if (options.payload !== undefined) checked.payload = options.payload;
	if (options.modelId !== undefined && options.modelId !== "") checked.modelId = checkModelId(options.modelId);
	if (options.clientVersion !== undefined) {
		if (typeof options.clientVersion !== "string" || options.clientVersion.length > 128)
			throw configError("clientVersion", "is not a short string", "Give a name/version such as my-product/1.2, or leave it out");
		if (options.clientVersion) checked.clientVersion = options.clientVersion;
	}
	if (options.onStatus !== undefined) {
		if (typeof options.onStatus !== "function") throw configError("onStatus", "is not a function", "Give a callback, or leave it out");
		checked.onStatus = options.onStatus;
	}
	return checked;
}

const STATUSES: readonly string[] = Object.freeze(["unassigned", "assigning", "assigned", "failed", "disabled"]);

// State is in TypeScript-private properties, not #private names: XS copies every outer name a
// function uses, #names included, into its stack frame, so they made every method's frame larger
// (BENCHMARKS.md, finding 6). Only #o (it holds the key) stays #private.
export class ProvisioningClient {
	readonly #o: Checked;
	private _session?: MqttSession;
	/** The request awaiting its reply: a dropped connection fails it. */
	private _waiting?: {rid: string; resolve(r: Reply): void; reject(e: AzureIoTError): void};
	/** Ends whatever register() is awaiting (a reply or a delay), for close(). */
	private _cancel?: (e: AzureIoTError) => void;
	private _ridCounter: number;
	private _timers = new Set<unknown>();
	private _closed = false;
	private _busy = false;
	/** Requests sent, for tests and benchmarks: register and poll counted apart, as DPS throttles them. */
	readonly counts = {register: 0, poll: 0, connects: 0};

	constructor(options: ProvisioningOptions) {
		// Checked once, and only the checked values are kept: nothing of the raw options reaches the session.
		this.#o = checkOptions(options);
		this._ridCounter = Math.floor(this.#o.adapter.random() * 1e6);
	}

	/** Registers and resolves with the assignment. Rejects with an AzureIoTError saying what failed. */
	async register(): Promise<RegistrationResult> {
		if (this._busy) throw new AzureIoTError("config", "register(): a registration is already under way. Await it before calling again");
		if (this._closed) throw new AzureIoTError("dps.closed", "register(): this ProvisioningClient was closed. Make a new one");
		this._busy = true;
		// The rest runs as promise jobs on a fresh stack: the first, synchronous part of an async call
		// holds two frames of it in XS, and the TLS client's set-up would stack on top of them.
		await null;
		const o = this.#o;
		const deadline = o.adapter.now() + o.timeoutMs;
		let operationId: string | undefined;
		let retries = 0;
		const backoff = new Backoff({initialMs: BACKOFF_INITIAL_MS, maxMs: BACKOFF_MAX_MS}, () => o.adapter.random());
		let throttled = 0;
		let attempt = 0;
		const retry = async (error: AzureIoTError, retryAfterSeconds?: number) => {
			if (++retries > o.maxRetries)
				throw new AzureIoTError(error.code === "dps.badReply" ? "dps.badReply" : "dps.timeout",
					`DPS registration gave up after ${o.maxRetries} retries; the last failure: ${error.message}`, {status: error.status});
			const delay = retryAfterSeconds !== undefined ? throttleDelay(retryAfterSeconds, ++throttled, () => o.adapter.random()) : backoff.next();
			if (o.adapter.now() + delay > deadline)
				throw new AzureIoTError("dps.timeout", `DPS registration did not finish within ${Math.round(o.timeoutMs / 1000)} s; the last failure: ${error.message}`, {status: error.status});
			o.onStatus?.({state: "retrying", attempt, retryAfterMs: delay, reason: error.message});
			await this._sleep(delay);
		};
		try {
			for (;;) {
				if (this._closed) throw new AzureIoTError("dps.closed", "register(): the client was closed during registration");
				attempt++;
				let reply: Reply;
				try {
					const session = await this.#connect(attempt);
					const rid = String(++this._ridCounter);
					if (operationId === undefined) {
						o.onStatus?.({state: "registering", attempt});
						this.counts.register++;
						reply = await this._request(session, rid, registerTopic(rid), this._registrationBody());
					}
					else {
						o.onStatus?.({state: "assigning", attempt});
						this.counts.poll++;
						reply = await this._request(session, rid, pollTopic(rid, operationId), "");
					}
				}
				catch (e) {
					const error = asError(e);
					if (!error.retriable) throw error;
					this._dropSession();
					await retry(error);
					continue;
				}

				if (reply.status === 200 || reply.status === 202) {
					throttled = 0;
					let parsed;
					try {
						parsed = parseOperationReply(reply.body, o.registrationId);
					}
					catch (e) {
						await retry(asError(e));
						continue;
					}
					operationId = parsed.operationId ?? operationId;
					const status = parsed.result?.status ?? parsed.status;
					if (status === "assigned") {
						const result = parsed.result ?? {registrationId: o.registrationId, status};
						result.operationId ??= operationId;
						if (!result.assignedHub || !result.deviceId) {
							await retry(new AzureIoTError("dps.badReply", "DPS said assigned but gave no assignedHub or deviceId", {retriable: true}));
							continue;
						}
						return result;
					}
					if (status === "failed" || status === "disabled") throw terminal(status, parsed.result, o.registrationId);
					// A status DPS does not define: polling on could not end well.
					if (!STATUSES.includes(status))
						throw new AzureIoTError("dps.badReply", `DPS answered with the registration status ${JSON.stringify(status.slice(0, 40))}, which it does not define (unassigned, assigning, assigned, failed, disabled); stopped rather than poll on. Check the endpoint (a DPS instance, api-version ${"2019-03-31"})`);
					// unassigned or assigning: poll after the server's delay
					if (operationId === undefined) {
						await retry(new AzureIoTError("dps.badReply", "DPS accepted the registration but gave no operationId", {retriable: true}));
						continue;
					}
					const wait = reply.retryAfter !== undefined ? reply.retryAfter * 1000 : DEFAULT_POLL_INTERVAL_MS;
					const delay = Math.max(wait, MIN_POLL_INTERVAL_MS);
					if (o.adapter.now() + delay > deadline)
						throw new AzureIoTError("dps.timeout", `DPS was still assigning after ${Math.round(o.timeoutMs / 1000)} s. Check the DPS instance's linked hubs and allocation policy`);
					await this._sleep(delay);
					continue;
				}
				const error = httpError(reply, o.registrationId, o.clientCertificates !== undefined);
				if (!error.retriable) throw error;
				await retry(error, reply.retryAfter);
			}
		}
		finally {
			this._busy = false;
			this._finish();
		}
	}

	/** Stops a registration under way (it rejects) and frees the connection. */
	close(): void {
		this._closed = true;
		this._cancel?.(new AzureIoTError("dps.closed", "the provisioning client was closed"));
		this._finish();
	}

	private _registrationBody(): string {
		const o = this.#o;
		let payload = o.payload;
		if (o.modelId !== undefined) payload = {...(payload && typeof payload === "object" ? payload : {}), modelId: o.modelId};
		return JSON.stringify(payload === undefined ? {registrationId: o.registrationId} : {registrationId: o.registrationId, payload});
	}

	async #connect(attempt: number): Promise<MqttSession> {
		if (this._session?.connected) return this._session;
		this._dropSession();
		const o = this.#o;
		o.onStatus?.({state: "connecting", attempt});
		this.counts.connects++;
		const expiry = Math.floor(o.adapter.now() / 1000) + o.tokenTtlSeconds;
		const session = await new Promise<MqttSession>((resolve, reject) => {
			let settled = false;
			const options: MqttClientOptions = {
				adapter: o.adapter,
				server: {host: o.endpoint, port: o.port, roots: o.roots},
				clientId: o.registrationId,
				username: dpsUsername(o.idScope, o.registrationId, o.clientVersion),
				clean: true,
				// DPS replies are small: anything larger is not a registration result this device could use.
				maxIncomingPacketBytes: 16 * 1024,
				keepAliveSeconds: 60,
				connectTimeoutMs: o.replyTimeoutMs,
				ackTimeoutMs: o.replyTimeoutMs,
				onConnect: () => {
					settled = true;
					resolve(s);
				},
				onMessage: (m: MqttMessage) => this._onMessage(m),
				onClose: (error: AzureIoTError) => {
					if (this._session === s) this._session = undefined;
					if (!settled) {
						settled = true;
						reject(connectError(error, o.clientCertificates !== undefined));
					}
					else this._waiting?.reject(new AzureIoTError("network", `the DPS connection dropped: ${error.message}`, {retriable: true}));
				},
			};
			this._cancel = e => {
				if (settled) return;
				settled = true;
				reject(e);
			};
			// X.509: the certificate attests; DPS needs no password.
			if (o.symmetricKey !== undefined) options.password = dpsPassword(o.idScope, o.registrationId, o.symmetricKey, expiry, (k, m) => o.adapter.hmacSha256(k, m));
			else {
				options.server.clientCertificates = o.clientCertificates;
				options.server.clientKey = o.clientKey;
			}
			const s = o.createSession(options);
			this._session = s;
		});
		this._cancel = undefined;
		await session.subscribe([{topic: DPS_RESPONSE_FILTER, qos: 1}]);
		return session;
	}

	private _request(session: MqttSession, rid: string, topic: string, body: string): Promise<Reply> {
		return new Promise<Reply>((resolve, reject) => {
			const timer = this.#o.adapter.setTimer(() => {
				this._timers.delete(timer);
				done();
				reject(new AzureIoTError("mqtt.timeout", `DPS did not answer within ${this.#o.replyTimeoutMs / 1000} s`, {retriable: true}));
			}, this.#o.replyTimeoutMs);
			this._timers.add(timer);
			const done = () => {
				this.#o.adapter.clearTimer(timer);
				this._timers.delete(timer);
				if (this._waiting?.rid === rid) this._waiting = undefined;
				this._cancel = undefined;
			};
			this._waiting = {
				rid,
				resolve: r => { done(); resolve(r); },
				reject: e => { done(); reject(e); },
			};
			this._cancel = e => this._waiting?.rid === rid && this._waiting.reject(e);
			session.publish(topic, body, {qos: 1}).catch((e: unknown) => this._waiting?.rid === rid && this._waiting.reject(asRetriable(e)));
		});
	}

	private _onMessage(message: MqttMessage): void {
		const topic = parseReplyTopic(message.topic);
		if (!topic || !this._waiting || topic.rid !== this._waiting.rid) return; // a late reply to an abandoned request
		if (message.dropped) {
			this._waiting.reject(new AzureIoTError("dps.badReply",
				`DPS sent a reply of ${message.size} bytes (status ${topic.status}), more than this device takes (16 KB); it was not read. A registration result is far smaller: check the enrollment's custom allocation payload`));
			return;
		}
		this._waiting.resolve({status: topic.status, retryAfter: topic.retryAfter, body: utf8Decode(message.payload)});
	}

	private _sleep(ms: number): Promise<void> {
		return new Promise((resolve, reject) => {
			const timer = this.#o.adapter.setTimer(() => {
				this._timers.delete(timer);
				this._cancel = undefined;
				resolve();
			}, ms);
			this._timers.add(timer);
			this._cancel = e => {
				this.#o.adapter.clearTimer(timer);
				this._timers.delete(timer);
				this._cancel = undefined;
				reject(e);
			};
		});
	}

	private _dropSession(): void {
		const s = this._session;
		this._session = undefined;
		s?.close();
	}

	private _finish(): void {
		for (const t of this._timers) this.#o.adapter.clearTimer(t);
		this._timers.clear();
		const s = this._session;
		this._session = undefined;
		if (s?.connected) {
			// Unsubscribe, DISCONNECT and let go of the TLS session before the hub connection opens (the
			// protocol note): both packets leave together, in order, without waiting for UNSUBACK, so the
			// DPS connection is gone before register() resolves. On the device two TLS sessions at once
			// is what sets the peak of the XS heap (BENCHMARKS.md).
			s.unsubscribe([DPS_RESPONSE_FILTER]).catch(() => {});
			s.disconnect();
		}
		else s?.close();
	}
}

/**
 * The wait after a refusal that carried retry-after (429, 5xx). retry-after is a floor, never
 * shortened; but a throttled fleet all told "3 s" would come back in the same second and be refused
 * together again. So each device adds a random share of it, wider with each consecutive refusal
 * (up to 4 times retry-after): uniform in [r, r * (1 + min(n, 4))].
 */
export function throttleDelay(retryAfterSeconds: number, consecutive: number, random: () => number): number {
	const floor = Math.max(retryAfterSeconds * 1000, 1000);
	let r = random();
	if (!(r >= 0 && r < 1)) r = 0.5;
	return Math.round(floor * (1 + r * Math.min(Math.max(consecutive, 1), 4)));
}

function asError(e: unknown): AzureIoTError {
	if (e instanceof AzureIoTError) return e;
	return new AzureIoTError("network", `unexpected failure: ${e instanceof Error ? e.message : String(e)}`, {retriable: true});
}

function asRetriable(e: unknown): AzureIoTError {
	const error = asError(e);
	return error.retriable ? error : new AzureIoTError(error.code, error.message, {status: error.status, retriable: error.code === "mqtt.closed" || error.code === "mqtt.timeout"});
}

/** How a failed connect is judged: bad credentials and certificates end the registration; the rest is retried. */
function connectError(error: AzureIoTError, x509: boolean): AzureIoTError {
	if (error.code === "mqtt.connack") {
		if (error.status === 4 || error.status === 5)
			return new AzureIoTError("dps.unauthorized", `DPS refused the credentials (CONNACK ${error.status}). ${x509 ? CHECK_CERTIFICATE : "Check idScope, registrationId and the key (for a group enrollment, the key derived from the group key with npm run derive-key)"}`, {status: error.status});
		return new AzureIoTError("network", `DPS refused the connection (CONNACK ${error.status}); retrying`, {status: error.status, retriable: true});
	}
	if (error.code === "tls") return error;
	if (error.code === "mqtt.protocol" || error.code === "mqtt.tooLarge") return new AzureIoTError(error.code, error.message, {retriable: true});
	return new AzureIoTError(error.code === "mqtt.timeout" ? "mqtt.timeout" : "network", error.message, {status: error.status, retriable: true});
}

function terminal(status: string, result: RegistrationResult | undefined, registrationId: string): AzureIoTError {
	const detail = result?.errorMessage ? `: ${result.errorMessage}` : "";
	const code = result?.errorCode !== undefined ? ` (errorCode ${result.errorCode})` : "";
	const error = status === "disabled"
		? new AzureIoTError("dps.disabled", `The enrollment for ${registrationId} is disabled${detail}. Enable it in DPS (az iot dps enrollment update --provisioning-status enabled)`)
		: new AzureIoTError("dps.failed", `DPS could not assign ${registrationId}${code}${detail}. Check the enrollment's allocation policy and linked hubs`);
	(error as AzureIoTError & {result?: RegistrationResult}).result = result;
	return error;
}

const CHECK_CERTIFICATE = "Check idScope and registrationId (the certificate's CN), and that DPS knows the certificate: an individual enrollment holding it (or its thumbprint), or a group whose CA is verified (proof of possession) and reached by the chain the device sends (leaf, then each intermediate up to that CA)";

function httpError(reply: Reply, registrationId: string, x509: boolean): AzureIoTError {
	const body = parseErrorBody(reply.body);
	const said = body.message ? ` DPS said: ${body.message}` : "";
	const code = body.errorCode !== undefined ? ` (errorCode ${body.errorCode})` : "";
	const extra = {status: reply.status, retryAfter: reply.retryAfter};
	switch (true) {
	case reply.status === 429:
		return new AzureIoTError("dps.rejected", `DPS is throttling (429)${code}; waiting before retrying.${said}`, {...extra, retriable: true});
	case reply.status >= 500:
		return new AzureIoTError("dps.rejected", `DPS had an internal error (${reply.status})${code}; retrying.${said}`, {...extra, retriable: true});
	case reply.status === 401:
		return new AzureIoTError("dps.unauthorized", x509
			? `DPS refused ${registrationId} (401)${code}: the certificate does not match any enrollment. ${CHECK_CERTIFICATE}.${said}`
			: `DPS refused ${registrationId} (401)${code}: the key does not match any enrollment. Check the id scope, the registration id and the key (group enrollments need the derived key).${said}`, extra);
	case reply.status === 403:
		return new AzureIoTError("dps.forbidden", `DPS forbade the registration (403)${code}. Check that the enrollment is enabled and the DPS instance is linked to a hub.${said}`, extra);
	case reply.status === 404:
		return new AzureIoTError("dps.notFound", `DPS has no enrollment for ${registrationId} (404)${code}. Create one (az iot dps enrollment create) or check the id scope.${said}`, extra);
	default:
		return new AzureIoTError("dps.rejected", `DPS rejected the registration (${reply.status})${code}.${said}`, extra);
	}
}
