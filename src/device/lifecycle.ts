/*
 * A device's way onto its hub: network, clock, provisioning (cached, so a reboot goes straight to
 * the hub; Microsoft asks devices not to register on every boot), the hub connection, and
 * re-provisioning when the hub refuses the credentials or has been unreachable for a long while.
 * It never gives up and never spins: every failure is reported and retried after a delay.
 */
import type {HostAdapter} from "../host.js";
import {AzureIoTError} from "../errors.js";
import {ProvisioningClient, type RegistrationResult} from "../dps.js";
import {HubClient, type CloudMessage, type DesiredInfo, type HubOptions, type MethodRequest, type MethodResponse, type RefusedMessage, type TwinRefusal} from "../hub.js";
import type {Settings} from "../settings.js";
import {checkClientIdentity} from "../x509.js";
import {clearAssignment, loadAssignment, nextBootCount, saveAssignment, type Assignment} from "./assignment.js";
import type {DeviceEvent, Platform} from "./platform.js";

// Slow retries for what needs a person (bad key, disabled enrollment) or a service that keeps failing.
const RETRY_AFTER_TERMINAL_MS = 10 * 60_000;
const RETRY_AFTER_TRANSIENT_MS = 60_000;
// Microsoft's guidance: keep trying the assigned hub for 15-30 minutes before asking DPS again.
const REPROVISION_AFTER_OFFLINE_MS = 20 * 60_000;
// A hub refusing credentials twice within this window is not fixed by another DPS round trip.
const REPROVISION_MIN_INTERVAL_MS = 10 * 60_000;
const CLOCK_VALID_AFTER = Date.UTC(2024, 0, 1);

export type DeviceState = "starting" | "provisioning" | "connecting" | "connected" | "disconnected" | "failed" | "closed";

/** What the hub client calls back that is not about getting connected: the features' callbacks. */
export type HubFeatures = Required<Pick<HubOptions, "onDesired" | "onMethod" | "onMethodRefused" | "onMessage" | "onMessageRefused" | "onTwinRefused" | "onQueueOverflow" | "onError">>;

/** The hub client's options that say where and who, not what to call back. */
type HubSetting = "adapter" | "hubHost" | "deviceId" | "symmetricKey" | "clientCertificates" | "clientKey" | "roots" | "port" | "modelId" | "queueLimit" | "limits";

export interface LifecycleHooks {
	state(state: DeviceState, info: {error?: AzureIoTError; retryInMs?: number}): void;
	/** The hub client was made (once): hand it what waits for it. */
	hub(hub: HubClient): void;
	/** Connected (or again), subscribed. */
	connected(info: {reconnect: boolean}): void;
	/** The first connection's twin read is over (HubClient.open() resolved). */
	opened?(): void;
	/** Errors worth the application's attention that do not change the state. */
	error(error: AzureIoTError): void;
}

/** What the Device hands the lifecycle: the hub's callbacks and the lifecycle's own, as one object. */
export type LifecycleOwner = HubFeatures & LifecycleHooks;

/**
 * The hub client's options: the settings as fields, the callbacks as methods that pass them on to
 * the owner and the lifecycle. An object of a class rather than a literal of closures: a closure
 * costs about 6 heap slots on XS, and these methods stay in flash with the preloaded module.
 */
class HubLink implements HubOptions {
	adapter!: HostAdapter;
	hubHost!: string;
	deviceId!: string;
	symmetricKey?: string;
	clientCertificates?: readonly Uint8Array[];
	clientKey?: Uint8Array;
	roots!: readonly Uint8Array[];
	port?: number;
	modelId?: string;
	queueLimit?: number;
	limits?: HubOptions["limits"];
	private _lifecycle: Lifecycle;
	private _owner: LifecycleOwner;

	constructor(lifecycle: Lifecycle, owner: LifecycleOwner, settings: Pick<HubOptions, HubSetting>) {
		Object.assign(this, settings);
		this._lifecycle = lifecycle;
		this._owner = owner;
	}

	onConnect(info: {sessionPresent: boolean; reconnect: boolean}): void {
		this._lifecycle.hubConnected(info);
	}

	onDisconnect(error: AzureIoTError, retryInMs: number | undefined): void {
		this._lifecycle.hubDisconnected(error, retryInMs);
	}

	onAuthFailure(error: AzureIoTError): void {
		this._lifecycle.hubRefused(error);
	}

	onDesired(patch: Record<string, unknown>, version: number, info: DesiredInfo): void {
		this._owner.onDesired(patch, version, info);
	}

	onMethod(request: MethodRequest): MethodResponse | Promise<MethodResponse> {
		return this._owner.onMethod(request);
	}

	onMethodRefused(info: {name: string; status: number; size: number; reason: string}): void {
		this._owner.onMethodRefused(info);
	}

	onMessage(message: CloudMessage): void | Promise<void> {
		return this._owner.onMessage(message);
	}

	onMessageRefused(message: RefusedMessage): void {
		this._owner.onMessageRefused(message);
	}

	onTwinRefused(refusal: TwinRefusal): void {
		this._owner.onTwinRefused(refusal);
	}

	onQueueOverflow(refused: {messageId: string}): void {
		this._owner.onQueueOverflow(refused);
	}

	onError(error: AzureIoTError): void {
		this._owner.onError(error);
	}
}

Object.freeze(HubLink.prototype);
Object.freeze(HubLink);

/** The X.509 identity: read from the settings, checked against the clock (checkClientIdentity) before each registration. */
export interface Identity {
	clientCertificates: readonly Uint8Array[];
	clientKey: Uint8Array;
	/** How errors name the certificates and the key (the settings' names or device.json fields). */
	fields?: {certificates: string; key: string};
}

// State is in TypeScript-private properties, not #private names: XS copies every outer name a
// function uses, #names included, into its stack frame (BENCHMARKS.md, finding 6). Only #settings
// and #identity (they hold the key) stay #private.
export class Lifecycle {
	private _platform: Platform;
	readonly #settings: Settings;
	readonly #identity: Identity | undefined;
	private _modelId: string | undefined;
	/** The hub's callbacks (HubFeatures) and the lifecycle's (LifecycleHooks), in one object. */
	private _hooks: LifecycleOwner;
	private _hub?: HubClient;
	private _assignment?: Assignment;
	private _retryTimer?: unknown;
	private _offlineSince?: number;
	private _lastReprovision = -Infinity;
	private _stopped = false;
	private _provisioning = false;
	/** When the checked X.509 chain is valid (notBefore, notAfter): registrations outside it are checked again. */
	private _identityValid: [number, number] = [Infinity, -Infinity];
	bootCount = 0;

	constructor(platform: Platform, settings: Settings, identity: Identity | undefined, modelId: string | undefined, owner: LifecycleOwner) {
		this._platform = platform;
		this.#settings = settings;
		this.#identity = identity;
		this._modelId = modelId;
		this._hooks = owner;
	}

	get assignment(): Assignment | undefined {
		return this._assignment;
	}

	private get _adapter(): HostAdapter {
		return this._platform.adapter;
	}

	private _emit(event: DeviceEvent): void {
		this._platform.emit(event);
	}

	async start(): Promise<void> {
		const p = this._platform;
		const s = this.#settings;
		this._hooks.state("starting", {});
		try {
			if (p.connectNetwork) {
				await p.connectNetwork({ssid: s.ssid, password: s.password});
				this._emit({event: "wifi.connected"});
			}
			else this._emit({event: "wifi.connected", network: "host"});
			if (p.syncClock) await p.syncClock(s.sntp);
			if (this._adapter.now() < CLOCK_VALID_AFTER)
				throw new AzureIoTError("config", "clock: the time is not set, so certificates and SAS tokens cannot be checked. Let SNTP reach a time server (the firmware syncs before any TLS)");
			this._emit({event: "time.synced", time: new Date(this._adapter.now()).toISOString()});
			// Only now can validity be judged; a bad identity is a setting to fix, never a connection to try.
			this._checkIdentity();
		}
		catch (e) {
			const error = asError(e);
			this._report(error);
			if (error.code === "config" && !error.message.startsWith("clock:")) {
				// A setting no retry can fix (no Wi-Fi name): say so once and idle.
				this._hooks.state("failed", {error});
				return;
			}
			this._hooks.state("disconnected", {error, retryInMs: RETRY_AFTER_TRANSIENT_MS});
			this._retryLater(() => this.start(), RETRY_AFTER_TRANSIENT_MS);
			return;
		}
		if (this._stopped) return;
		this.bootCount = nextBootCount(this._adapter.storage);
		const cached = loadAssignment(this._adapter.storage, s);
		if (cached) {
			this._assignment = cached;
			this._emit({event: "dps.cached", assignedHub: cached.assignedHub, deviceId: cached.deviceId});
			this._connectHub();
		}
		else await this._provision();
	}

	stop(): Promise<void> {
		this._stopped = true;
		this._adapter.clearTimer(this._retryTimer);
		const hub = this._hub;
		this._hub = undefined;
		return hub ? hub.close() : Promise.resolve();
	}

	/** Forgets the assignment and registers again (a user-initiated "reprovision"). */
	reprovision(): void {
		clearAssignment(this._adapter.storage);
		this._lastReprovision = -Infinity;
		this._reprovision();
	}

	/** Registers with DPS, then connects (or retargets the open hub client) to the assigned hub. */
	private async _provision(): Promise<void> {
		if (this._stopped || this._provisioning) return;
		this._provisioning = true;
		this._lastReprovision = this._adapter.now();
		const s = this.#settings;
		const now = this._adapter.now();
		if (this.#identity && (now > this._identityValid[1] || now < this._identityValid[0])) {
			// The certificate expired while the device ran (or the clock moved): check it again, for the message.
			try {
				this._checkIdentity();
			}
			catch (e) {
				this._provisioning = false;
				this._fail(asError(e));
				return;
			}
		}
		this._hooks.state("provisioning", {});
		this._emit({event: "dps.registering", registrationId: s.registrationId, idScope: s.idScope});
		let result: RegistrationResult;
		try {
			const identity = this.#identity;
			result = await new ProvisioningClient({
				adapter: this._adapter,
				endpoint: s.dpsHost,
				port: s.dpsPort,
				idScope: s.idScope,
				registrationId: s.registrationId,
				...(identity ? {clientCertificates: identity.clientCertificates, clientKey: identity.clientKey} : {symmetricKey: s.symmetricKey}),
				modelId: this._modelId,
				roots: this._platform.roots,
				onStatus: st => st.state === "retrying" && this._emit({event: "dps.retrying", attempt: st.attempt, retryAfterMs: Math.round(st.retryAfterMs ?? 0), reason: st.reason}),
			}).register();
		}
		catch (e) {
			this._provisioning = false;
			if (this._stopped) return;
			const error = asError(e);
			const detail = (error as AzureIoTError & {result?: RegistrationResult}).result;
			this._emit({event: "dps.failed", code: error.code, message: error.message, status: detail?.status ?? error.status, errorCode: detail?.errorCode});
			if (detail) this._printResult(detail);
			const transient = error.retriable || error.code === "dps.timeout" || error.code === "network" || error.code === "dps.badReply";
			const delay = transient ? RETRY_AFTER_TRANSIENT_MS : RETRY_AFTER_TERMINAL_MS;
			this._hooks.state("disconnected", {error, retryInMs: delay});
			this._retryLater(() => this._provision(), delay);
			return;
		}
		this._provisioning = false;
		if (this._stopped) return;
		this._printResult(result);
		this._emit({
			event: "dps.assigned",
			assignedHub: result.assignedHub, deviceId: result.deviceId, status: result.status, substatus: result.substatus,
			createdDateTimeUtc: result.createdDateTimeUtc, lastUpdatedDateTimeUtc: result.lastUpdatedDateTimeUtc, etag: result.etag,
		});
		this._assignment = {assignedHub: result.assignedHub!, deviceId: result.deviceId!};
		saveAssignment(this._adapter.storage, s, this._assignment);
		if (this._hub) {
			this._emit({event: "hub.connecting", hub: this._assignment.assignedHub, deviceId: this._assignment.deviceId});
			this._hooks.state("connecting", {});
			try {
				this._hub.retarget({hubHost: this._assignment.assignedHub, deviceId: this._assignment.deviceId});
			}
			catch (e) {
				this._report(e);
			}
		}
		else this._connectHub();
	}

	private _connectHub(): void {
		if (this._stopped || !this._assignment) return;
		const s = this.#settings;
		const a = this._assignment;
		const identity = this.#identity;
		this._emit({event: "hub.connecting", hub: a.assignedHub, deviceId: a.deviceId});
		this._hooks.state("connecting", {});
		let hub: HubClient;
		try {
			hub = new HubClient(new HubLink(this, this._hooks, {
				adapter: this._adapter,
				hubHost: a.assignedHub,
				deviceId: a.deviceId,
				...(identity ? {clientCertificates: identity.clientCertificates, clientKey: identity.clientKey} : {symmetricKey: s.symmetricKey}),
				roots: this._platform.roots,
				port: s.hubPort,
				modelId: this._modelId,
				queueLimit: s.queueLimit,
				limits: {maxMessageBytes: s.maxMessageBytes, maxMethodBytes: s.maxMethodBytes, maxTwinBytes: s.maxTwinBytes},
			}));
		}
		catch (e) {
			// The DPS assignment (or the cache) holds something no hub client takes: register again later.
			this._report(e);
			clearAssignment(this._adapter.storage);
			this._hooks.state("disconnected", {error: asError(e), retryInMs: RETRY_AFTER_TRANSIENT_MS});
			this._retryLater(() => this._provision(), RETRY_AFTER_TRANSIENT_MS);
			return;
		}
		this._hub = hub;
		this._hooks.hub(hub);
		hub.open().then(() => this._hooks.opened?.(), e => {
			const error = asError(e);
			// Refused credentials were already handled by onAuthFailure (re-provisioning, then retarget);
			// for anything else the client keeps retrying with backoff on its own.
			if (error.code !== "hub.unauthorized" && error.code !== "hub.closed") this._report(error);
		});
	}

	/** The hub client's onConnect (through HubLink). */
	hubConnected(info: {sessionPresent: boolean; reconnect: boolean}): void {
		this._offlineSince = undefined;
		this._emit({event: "hub.connected", hub: this._assignment?.assignedHub, deviceId: this._assignment?.deviceId, reconnect: info.reconnect, sessionPresent: info.sessionPresent});
		this._hooks.state("connected", {});
		this._hooks.connected(info);
	}

	/** The hub client's onDisconnect: after a long while offline, DPS is asked again. */
	hubDisconnected(error: AzureIoTError, retryInMs: number | undefined): void {
		this._offlineSince ??= this._adapter.now();
		this._emit({event: "hub.disconnected", code: error.code, message: error.message, retryInMs});
		this._hooks.state("disconnected", {error, retryInMs});
		if (this._adapter.now() - this._offlineSince > REPROVISION_AFTER_OFFLINE_MS && this._canReprovision()) {
			this._offlineSince = this._adapter.now();
			this._reprovision();
		}
	}

	/** The hub client's onAuthFailure: the credentials or the assignment are stale, so DPS is asked again. */
	hubRefused(error: AzureIoTError): void {
		this._emit({event: "error", code: error.code, message: error.message});
		if (this._canReprovision()) {
			clearAssignment(this._adapter.storage);
			this._reprovision();
		}
	}

	/**
	 * Checks the X.509 identity as the device will present it (src/x509.ts): expired or not yet
	 * valid, a key that is not the certificate's, an ECC key, a CN that is not the registration id.
	 * Throws the config error; says what it will present when it passes.
	 */
	private _checkIdentity(): void {
		const identity = this.#identity;
		if (!identity) return;
		const checked = checkClientIdentity({
			certificates: identity.clientCertificates,
			key: identity.clientKey,
			now: this._adapter.now(),
			registrationId: this.#settings.registrationId,
			fields: identity.fields,
		});
		this._identityValid = [checked.notBefore, checked.notAfter];
		this._emit({
			event: "x509.identity", commonName: checked.commonName, certificates: checked.certificates.length,
			issuer: checked.leaf.issuerCN, notAfter: new Date(checked.notAfter).toISOString(), keyBits: checked.keyBits,
		});
	}

	/** A setting no retry can fix: said once, then the device idles (state "failed") with nothing open. */
	private _fail(error: AzureIoTError): void {
		this._report(error);
		this._stopped = true;
		this._adapter.clearTimer(this._retryTimer);
		const hub = this._hub;
		this._hub = undefined;
		hub?.close().catch(() => undefined);
		this._hooks.state("failed", {error});
	}

	/** Runs DPS again in the background; on the device an unhandled rejection would abort the VM. */
	private _reprovision(): void {
		this._provision().catch(e => this._report(e));
	}

	private _canReprovision(): boolean {
		return !this._provisioning && this._adapter.now() - this._lastReprovision >= REPROVISION_MIN_INTERVAL_MS;
	}

	/** The registration result as the original nanoFramework sample printed it. */
	private _printResult(r: RegistrationResult): void {
		const print = this._platform.print;
		if (!print) return;
		print("Registration result:");
		print(`  Assigned hub:  ${r.assignedHub ?? ""}`);
		print(`  Created time:  ${r.createdDateTimeUtc ?? ""}`);
		print(`  Device id:     ${r.deviceId ?? ""}`);
		print(`  Error code:    ${r.errorCode ?? ""}`);
		print(`  Error message: ${r.errorMessage ?? ""}`);
		print(`  ETag:          ${r.etag ?? ""}`);
		print(`  Last update:   ${r.lastUpdatedDateTimeUtc ?? ""}`);
		print(`  Status:        ${r.status}`);
		print(`  Substatus:     ${r.substatus ?? ""}`);
	}

	private _report(e: unknown): void {
		if (e === undefined) return;
		const error = asError(e);
		this._emit({event: "error", code: error.code, message: error.message});
		this._hooks.error(error);
	}

	private _retryLater(action: () => Promise<void>, ms: number): void {
		if (this._stopped) return;
		this._adapter.clearTimer(this._retryTimer);
		this._retryTimer = this._adapter.setTimer(() => void action().catch(e => this._report(e)), ms);
	}
}

export function asError(e: unknown): AzureIoTError {
	return e instanceof AzureIoTError ? e : new AzureIoTError("network", e instanceof Error ? e.message : String(e), {retriable: true});
}

Object.freeze(Lifecycle.prototype);
Object.freeze(Lifecycle);
