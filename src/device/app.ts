/*
 * The device's life: network, clock, provisioning (cached, so a reboot goes straight to the hub),
 * the hub connection, and the application loop. The same code runs as the firmware in XS and on
 * the Node host; only the DevicePlatform differs. It never gives up and never spins: every failure
 * is reported as an event and retried after a delay.
 */
import type {Host} from "../host.js";
import {AzureIoTError} from "../errors.js";
import {ProvisioningClient, type RegistrationResult} from "../dps.js";
import {HubClient} from "../hub.js";
import {TELEMETRY_INTERVAL_MAX_MS, TELEMETRY_INTERVAL_MIN_MS, type DeviceConfig} from "./config.js";
import {clearAssignment, loadAssignment, nextBootCount, saveAssignment, type Assignment} from "./assignment.js";

export interface DeviceEvent {
	event: string;
	[key: string]: unknown;
}

export interface DevicePlatform {
	host: Host;
	roots: readonly Uint8Array[];
	/** Prints one JSON line. */
	emit(event: DeviceEvent): void;
	/** Prints a human-readable line. */
	print?(line: string): void;
	connectNetwork?(): Promise<void>;
	syncClock?(): Promise<void>;
	reboot?(): void;
}

// Slow retries for what needs a person (bad key, disabled enrollment) or a service that keeps failing.
const RETRY_AFTER_TERMINAL_MS = 10 * 60_000;
const RETRY_AFTER_TRANSIENT_MS = 60_000;
// Microsoft's guidance: keep trying the assigned hub for 15-30 minutes before asking DPS again.
const REPROVISION_AFTER_OFFLINE_MS = 20 * 60_000;
// A hub refusing credentials twice within this window is not fixed by another DPS round trip.
const REPROVISION_MIN_INTERVAL_MS = 10 * 60_000;
const CLOCK_VALID_AFTER = Date.UTC(2024, 0, 1);

// State is in TypeScript-private properties, not #private names: XS copies every outer name a
// function uses, #names included, into its stack frame, so they made every method's frame larger
// (BENCHMARKS.md, finding 6). Only #config (it holds the key) stays #private.
export class Device {
	private readonly _platform: DevicePlatform;
	readonly #config: DeviceConfig;
	private _hub?: HubClient;
	private _assignment?: Assignment;
	private _intervalMs: number;
	private _telemetryTimer?: unknown;
	private _retryTimer?: unknown;
	private _offlineSince?: number;
	private _lastReprovision = -Infinity;
	private _seq = 0;
	private _bootCount = 0;
	private readonly _startedAt: number;
	private _stopped = false;
	private _provisioning = false;
	/** The desired version last applied, once one has been. */
	private _desiredVersion?: number;

	constructor(options: {platform: DevicePlatform; config: DeviceConfig}) {
		this._platform = options.platform;
		this.#config = options.config;
		this._intervalMs = options.config.telemetry.intervalMs;
		this._startedAt = options.platform.host.now();
	}

	get #host(): Host { return this._platform.host; }

	async start(): Promise<void> {
		const p = this._platform;
		try {
			if (p.connectNetwork) {
				await p.connectNetwork();
				p.emit({event: "wifi.connected"});
			}
			else p.emit({event: "wifi.connected", network: "host"});
			if (p.syncClock) await p.syncClock();
			if (this.#host.now() < CLOCK_VALID_AFTER)
				throw new AzureIoTError("config", "clock: the time is not set, so certificates and SAS tokens cannot be checked. Let SNTP reach a time server (the firmware syncs before any TLS)");
			p.emit({event: "time.synced", time: new Date(this.#host.now()).toISOString()});
		}
		catch (e) {
			this._report(e);
			this._retryLater(() => this.start(), RETRY_AFTER_TRANSIENT_MS);
			return;
		}
		this._bootCount = nextBootCount(this.#host.storage);
		const cached = loadAssignment(this.#host.storage, this.#config);
		if (cached) {
			this._assignment = cached;
			p.emit({event: "dps.cached", assignedHub: cached.assignedHub, deviceId: cached.deviceId});
			await this.#connectHub();
		}
		else await this.#provision();
	}

	async stop(): Promise<void> {
		this._stopped = true;
		this.#host.clearTimer(this._telemetryTimer);
		this.#host.clearTimer(this._retryTimer);
		const hub = this._hub;
		this._hub = undefined;
		await hub?.close();
	}

	/** Registers with DPS, then connects (or retargets the open hub client) to the assigned hub. */
	async #provision(): Promise<void> {
		if (this._stopped || this._provisioning) return;
		this._provisioning = true;
		this._lastReprovision = this.#host.now();
		const p = this._platform;
		const c = this.#config;
		p.emit({event: "dps.registering", registrationId: c.dps.registrationId, idScope: c.dps.idScope});
		let result: RegistrationResult;
		try {
			result = await new ProvisioningClient({
				host: this.#host,
				endpoint: c.dps.host,
				port: c.dps.port,
				idScope: c.dps.idScope,
				registrationId: c.dps.registrationId,
				symmetricKey: c.dps.symmetricKey,
				modelId: c.dps.modelId,
				roots: p.roots,
				onStatus: s => s.state === "retrying" && p.emit({event: "dps.retrying", attempt: s.attempt, retryAfterMs: Math.round(s.retryAfterMs ?? 0), reason: s.reason}),
			}).register();
		}
		catch (e) {
			this._provisioning = false;
			const error = asError(e);
			const detail = (error as AzureIoTError & {result?: RegistrationResult}).result;
			p.emit({event: "dps.failed", code: error.code, message: error.message, status: detail?.status, errorCode: detail?.errorCode});
			if (detail) this._printResult(detail);
			const delay = error.retriable || error.code === "dps.timeout" || error.code === "network" || error.code === "dps.badReply" ? RETRY_AFTER_TRANSIENT_MS : RETRY_AFTER_TERMINAL_MS;
			this._retryLater(() => this.#provision(), delay);
			return;
		}
		this._provisioning = false;
		this._printResult(result);
		p.emit({
			event: "dps.assigned",
			assignedHub: result.assignedHub, deviceId: result.deviceId, status: result.status, substatus: result.substatus,
			createdDateTimeUtc: result.createdDateTimeUtc, lastUpdatedDateTimeUtc: result.lastUpdatedDateTimeUtc, etag: result.etag,
		});
		this._assignment = {assignedHub: result.assignedHub!, deviceId: result.deviceId!};
		saveAssignment(this.#host.storage, this.#config, this._assignment);
		if (this._hub) {
			p.emit({event: "hub.connecting", hub: this._assignment.assignedHub, deviceId: this._assignment.deviceId});
			this._hub.retarget({hubName: this._assignment.assignedHub, deviceId: this._assignment.deviceId});
		}
		else await this.#connectHub();
	}

	async #connectHub(): Promise<void> {
		if (this._stopped || !this._assignment) return;
		const p = this._platform;
		const c = this.#config;
		const a = this._assignment;
		p.emit({event: "hub.connecting", hub: a.assignedHub, deviceId: a.deviceId});
		const hub = new HubClient({
			host: this.#host,
			hubName: a.assignedHub,
			deviceId: a.deviceId,
			symmetricKey: c.dps.symmetricKey,
			roots: p.roots,
			port: c.hub.port,
			modelId: c.dps.modelId,
			queueLimit: c.telemetry.queueLimit,
			onConnect: info => {
				this._offlineSince = undefined;
				p.emit({event: "hub.connected", hub: this._assignment?.assignedHub, deviceId: this._assignment?.deviceId, reconnect: info.reconnect, sessionPresent: info.sessionPresent});
				this._reportState();
			},
			onDisconnect: (error, retryInMs) => {
				this._offlineSince ??= this.#host.now();
				p.emit({event: "hub.disconnected", code: error.code, message: error.message, retryInMs});
				if (this.#host.now() - this._offlineSince > REPROVISION_AFTER_OFFLINE_MS && this._canReprovision()) {
					this._offlineSince = this.#host.now();
					this._reprovision();
				}
			},
			onAuthFailure: error => {
				p.emit({event: "error", code: error.code, message: error.message});
				if (this._canReprovision()) {
					clearAssignment(this.#host.storage);
					this._reprovision();
				}
			},
			onDesired: (patch, version) => this._onDesired(patch, version),
			onMethod: request => this._onMethod(request.name, request.payload),
			onMessage: m => p.emit({
				event: "c2d.received",
				messageId: m.systemProperties["$.mid"] ?? m.systemProperties["message-id"],
				body: m.text().slice(0, 256),
				properties: m.properties,
			}),
			onQueueOverflow: dropped => p.emit({event: "error", code: "queue.full", message: `telemetry ${dropped.messageId} was not accepted: the outbound queue is full while the hub is unreachable`}),
			onError: error => p.emit({event: "error", code: error.code, message: error.message}),
		});
		this._hub = hub;
		// The application's clock does not wait for the hub: readings taken while the first connection
		// is still being made (or has dropped) are queued and sent once it is up, or refused, and said so.
		this._scheduleTelemetry();
		try {
			await hub.open();
		}
		catch (e) {
			const error = asError(e);
			// Refused credentials were already handled by onAuthFailure (re-provisioning, then retarget);
			// for anything else the client keeps retrying with backoff on its own.
			if (error.code !== "hub.unauthorized") p.emit({event: "error", code: error.code, message: error.message});
			if (error.code === "config") this.#host.clearTimer(this._telemetryTimer);
		}
	}

	/** Runs DPS again in the background; on the device an unhandled rejection would abort the VM. */
	private _reprovision(): void {
		this.#provision().catch(e => this._report(e));
	}

	private _canReprovision(): boolean {
		return !this._provisioning && this.#host.now() - this._lastReprovision >= REPROVISION_MIN_INTERVAL_MS;
	}

	private _scheduleTelemetry(): void {
		this.#host.clearTimer(this._telemetryTimer);
		if (this._stopped) return;
		this._telemetryTimer = this.#host.setTimer(() => {
			this._sendTelemetry();
			this._scheduleTelemetry();
		}, this._intervalMs);
	}

	private _sendTelemetry(): void {
		const hub = this._hub;
		if (!hub) return;
		const seq = ++this._seq;
		const body = {seq, uptimeMs: Math.round(this.#host.now() - this._startedAt), bootCount: this._bootCount, firmwareVersion: this.#config.firmwareVersion};
		const p = this._platform;
		hub.sendTelemetry(body, {properties: {seq: String(seq)}, contentType: "application/json", contentEncoding: "utf-8"}).then(
			({messageId}) => p.emit({event: "telemetry.acked", seq, messageId}),
			e => {
				const error = asError(e);
				if (error.code !== "queue.full" && error.code !== "hub.closed") p.emit({event: "error", code: error.code, message: `telemetry ${seq}: ${error.message}`});
			},
		);
		p.emit({event: "telemetry.sent", seq});
	}

	private _reportState(): void {
		this._hub?.updateReported({
			firmwareVersion: this.#config.firmwareVersion,
			bootCount: this._bootCount,
			// The writable property in IoT Plug and Play's shape from the start: until a desired value is
			// applied, the interval in use is the configured default (ac 203, av 0).
			...(this._desiredVersion === undefined ? {telemetryIntervalMs: {value: this._intervalMs, ac: 203, av: 0, ad: "default"}} : {}),
		}).then(version => this._platform.emit({event: "twin.reported", version}), e => this._report(e));
	}

	private _onDesired(patch: Record<string, unknown>, version: number): void {
		const p = this._platform;
		p.emit({event: "twin.desired", version, keys: Object.keys(patch).filter(k => !k.startsWith("$"))});
		if (!("telemetryIntervalMs" in patch)) return;
		this._desiredVersion = version;
		const value = patch.telemetryIntervalMs;
		const ok = typeof value === "number" && Number.isFinite(value) && value >= TELEMETRY_INTERVAL_MIN_MS && value <= TELEMETRY_INTERVAL_MAX_MS;
		if (ok) this._setInterval(value);
		// The IoT Plug and Play writable-property acknowledgement: value, status, desired version, description.
		const ack = {telemetryIntervalMs: {
			value: ok ? value : this._intervalMs, ac: ok ? 200 : 400, av: version,
			ad: ok ? "applied" : `rejected: must be a number of ms from ${TELEMETRY_INTERVAL_MIN_MS} to ${TELEMETRY_INTERVAL_MAX_MS}`,
		}};
		this._hub?.updateReported(ack).then(v => p.emit({event: "twin.reported", version: v, telemetryIntervalMs: ack.telemetryIntervalMs.value, ac: ack.telemetryIntervalMs.ac}), e => this._report(e));
	}

	private _setInterval(ms: number): void {
		this._intervalMs = ms;
		if (this._hub) this._scheduleTelemetry();
	}

	private _onMethod(name: string, payload: unknown): {status: number; payload?: unknown} {
		const p = this._platform;
		let response: {status: number; payload?: unknown};
		switch (name) {
		case "reboot":
			response = p.reboot ? {status: 200, payload: {rebooting: true}} : {status: 501, payload: {error: "this platform cannot reboot"}};
			if (p.reboot) this.#host.setTimer(() => p.reboot!(), 500); // after the response has gone out
			break;
		case "reprovision":
			response = {status: 200, payload: {reprovisioning: true}};
			clearAssignment(this.#host.storage);
			this._lastReprovision = -Infinity;
			this.#host.setTimer(() => this._reprovision(), 100);
			break;
		case "setTelemetryInterval": {
			const ms = payload && typeof payload === "object" ? (payload as Record<string, unknown>).intervalMs : payload;
			if (typeof ms === "number" && ms >= TELEMETRY_INTERVAL_MIN_MS && ms <= TELEMETRY_INTERVAL_MAX_MS) {
				this._setInterval(ms);
				response = {status: 200, payload: {intervalMs: ms}};
			}
			else response = {status: 400, payload: {error: `intervalMs must be a number from ${TELEMETRY_INTERVAL_MIN_MS} to ${TELEMETRY_INTERVAL_MAX_MS}`}};
			break;
		}
		default:
			response = {status: 404, payload: {error: `no method ${name}; this device has reboot, reprovision and setTelemetryInterval`}};
		}
		p.emit({event: "method.invoked", name, status: response.status});
		return response;
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
		this._platform.emit({event: "error", code: error.code, message: error.message});
	}

	private _retryLater(action: () => Promise<void>, ms: number): void {
		if (this._stopped) return;
		this.#host.clearTimer(this._retryTimer);
		this._retryTimer = this.#host.setTimer(() => void action().catch(e => this._report(e)), ms);
	}
}

function asError(e: unknown): AzureIoTError {
	return e instanceof AzureIoTError ? e : new AzureIoTError("network", e instanceof Error ? e.message : String(e), {retriable: true});
}
