/*
 * The device, as an application sees it: one options object (checked before anything is taken),
 * callbacks in the options that are never called from inside the call that triggered them, an
 * idempotent close() — the ECMA-419 base class pattern Moddable's own modules follow. Underneath
 * it does what a device on Azure must (src/device/lifecycle.ts: network, clock, DPS with its cache
 * and re-provisioning, the hub connection with renewal and reconnects) and speaks IoT Plug and Play
 * as Microsoft's samples do (src/pnp.ts): component telemetry and properties, writable properties
 * handed over from the initial twin and from every update and acknowledged, commands per
 * component, cloud-to-device messages.
 *
 * Settings come from the platform (build values and Preference on the device, device.json under
 * Node) and are checked here once. A bad setting is data, not code: it is reported (an `error`
 * event, onError, the state "failed") and the device idles, rather than throw from a constructor
 * that an application may run at boot — a device that threw would reboot into the same error.
 * Bad options are code: they throw.
 */
import {AzureIoTError, configError} from "./errors.js";
import type {CloudMessage, DesiredInfo, HubClient, MethodRequest, MethodResponse, RefusedMessage, TelemetryOptions, TwinRefusal} from "./hub.js";
import {utf8Decode} from "./encoding.js";
import {checkModelId} from "./validate.js";
import {isDtdlName} from "./chars.js";
import {checkSettings, publicSettings, SETTING_NAMES, SETTINGS, type SettingName, type Settings} from "./settings.js";
import {acknowledgementPatch, alreadyAcknowledged, reportedPatch, writableProperties, type Acknowledgement, type WritableProperty} from "./pnp.js";
import {asError, Lifecycle, type DeviceState, type Identity, type LifecycleOwner} from "./device/lifecycle.js";
import {ReportQueue} from "./device/reports.js";
import type {DeviceEvent, Platform, ResetInfo} from "./device/platform.js";
import {ADU_CONTRACT_MODEL_ID, DeviceUpdate, resolveUpdateConfig, type UpdateOptions} from "./device/update.js";

export type {CloudMessage, RefusedMessage} from "./hub.js";
export type {Acknowledgement, WritableProperty} from "./pnp.js";
export type {DeviceState} from "./device/lifecycle.js";
export type {DeviceEvent, Platform, ResetInfo} from "./device/platform.js";
export type {Settings, SettingName} from "./settings.js";
export type {UpdateOptions} from "./device/update.js";

/** A command (direct method) for the application to answer. */
export interface CommandRequest {
	/** The component, for `component*command` methods; undefined for the root. */
	component?: string;
	/** The command's name, without its component. */
	name: string;
	/** The method name as called (`thermostat1*getMaxMinReport`). */
	method: string;
	/** The request's JSON payload; null when there was none. */
	payload: unknown;
}

export interface CommandResponse {
	status: number;
	payload?: unknown;
}

/** What the device refused before the application saw it, with its size. */
export type Refusal =
	| {kind: "message"; size: number; limit: number; messageId?: string; properties: Readonly<Record<string, string>>}
	| {kind: "command"; method: string; status: number; size: number; reason: string}
	/** A desired patch, or the twin read after a connect, over maxTwinBytes: the device keeps the desired values it has. */
	| {kind: "twin"; what: "desired" | "document"; size: number; limit: number; version?: number};

export interface StateInfo {
	/** Why the device is disconnected or failed. */
	error?: AzureIoTError;
	/** When it tries again. */
	retryInMs?: number;
}

export interface SendOptions {
	/** IoT Plug and Play component (`$.sub`). */
	component?: string;
	/** Application properties. */
	properties?: Record<string, string>;
	contentType?: string;
	contentEncoding?: string;
	messageId?: string;
	correlationId?: string;
}

export type Callback<T> = (error: AzureIoTError | null, result?: T) => void;

export interface DeviceOptions {
	platform: Platform;
	/** The IoT Plug and Play model the application implements (sent to DPS and the hub); default the modelId setting. */
	modelId?: string;
	/** The model's components: a desired key is a component only if it is named here (the hub does not say). */
	components?: readonly string[];
	/** Settings given in code; they win over the platform's (build values, Preference, device.json). */
	settings?: Partial<Record<SettingName, unknown>>;
	/** Report the reason of the last reset (an event and the reported property lastReset). Default true. */
	reportReset?: boolean;
	/**
	 * Device Update for IoT Hub (the `deviceUpdate` component; src/device/update.ts): its fields, or
	 * true to take them all from the settings (aduManufacturer, aduModel, ...). Left out: on when the
	 * aduManufacturer setting is set. false: off.
	 */
	update?: UpdateOptions | boolean;
	onStateChange?(this: Device, state: DeviceState, info: StateInfo): void;
	/**
	 * A writable property from the twin read after each connect (when its version changed) and from
	 * every update. Return the acknowledgement (a status, or {status, description, value}) to have it
	 * reported; return nothing to acknowledge later with acknowledge(), or not at all.
	 */
	onWritable?(this: Device, property: WritableProperty): Acknowledgement | number | void | Promise<Acknowledgement | number | void>;
	/** A command. Return the status and payload; return nothing for "no such command" (404). */
	onCommand?(this: Device, command: CommandRequest): CommandResponse | void | Promise<CommandResponse | void>;
	/** A cloud-to-device message; it is completed once this returns (or its promise settles). */
	onMessage?(this: Device, message: CloudMessage): void | Promise<void>;
	/** Something refused for its size or form, before the application saw it. */
	onRefused?(this: Device, refusal: Refusal): void;
	/** Problems the device reports and carries on from (and a bad setting, after which it idles). */
	onError?(this: Device, error: AzureIoTError): void;
}

/** How much of a cloud-to-device message's body its event shows. */
const EVENT_BODY_BYTES = 256;
const CALLBACKS = Object.freeze(["onStateChange", "onWritable", "onCommand", "onMessage", "onRefused", "onError"] as const);
/** A DTDL component name, at most 64 characters (without RegExp: src/chars.ts says why). */
function isComponentName(name: unknown): boolean {
	return typeof name === "string" && name.length <= 64 && isDtdlName(name);
}

function checkOptions(options: DeviceOptions): {modelId?: string; components: readonly string[]} {
	if (!options || typeof options !== "object") throw configError("options", "is missing", "Pass one options object to new Device()");
	const platform = options.platform;
	if (!platform || typeof platform !== "object" || !platform.adapter || typeof platform.setting !== "function" || typeof platform.emit !== "function")
		throw configError("platform", "is missing or incomplete", "Pass the platform of the build: import {createPlatform} from \"azure-iot/platform\"");
	for (const name of CALLBACKS) {
		if (options[name] !== undefined && typeof options[name] !== "function") throw configError(name, "is not a function", "Give a function, or leave it out");
	}
	const components = options.components ?? [];
	if (!Array.isArray(components) || !components.every(isComponentName))
		throw configError("components", "is not a list of component names", "Give the model's component names, e.g. [\"thermostat1\", \"deviceInformation\"]");
	if (options.update !== undefined && typeof options.update !== "boolean" && (typeof options.update !== "object" || options.update === null))
		throw configError("update", "is not an object or a boolean", "Pass {manufacturer, model, ...}, true (from the settings) or false");
	if (options.settings !== undefined) {
		if (typeof options.settings !== "object" || options.settings === null) throw configError("settings", "is not an object", "Give settings by name, e.g. {intervalMs: 5000}");
		for (const name of Object.keys(options.settings))
			if (!SETTING_NAMES.includes(name as SettingName)) throw configError(`settings.${name}`, "is not a setting", `Use one of ${SETTING_NAMES.join(", ")}`);
	}
	const modelId = options.modelId === undefined ? undefined : checkModelId(options.modelId);
	return {modelId, components: Object.freeze(components.slice())};
}

/** Splits concatenated DER certificates (each a SEQUENCE with a definite length). */
function splitDer(bytes: Uint8Array, field: string): Uint8Array[] {
	const out: Uint8Array[] = [];
	for (let at = 0; at < bytes.length;) {
		let length = 0, header = 2;
		const first = bytes[at + 1];
		if (bytes[at] !== 0x30 || first === undefined) throw configError(field, "is not DER certificates", "Store the intermediates as DER, one after the other");
		if (first < 0x80) length = first;
		else {
			const n = first & 0x7f;
			if (n < 1 || n > 3 || at + 2 + n > bytes.length) throw configError(field, "is not DER certificates", "Store the intermediates as DER, one after the other");
			for (let i = 0; i < n; i++) length = length * 256 + bytes[at + 2 + i];
			header = 2 + n;
		}
		if (at + header + length > bytes.length) throw configError(field, "ends inside a certificate", "Store the whole DER of each intermediate");
		out.push(bytes.subarray(at, at + header + length));
		at += header + length;
	}
	return out;
}

// State is in TypeScript-private properties, not #private names: XS copies every outer name a
// function uses, #names included, into its stack frame (BENCHMARKS.md, finding 6).
export class Device {
	private _options: DeviceOptions;
	private _platform: Platform;
	private _modelId: string | undefined;
	private _components: readonly string[];
	private _settings: Readonly<Partial<Settings>> = Object.freeze({});
	private _lifecycle: Lifecycle | undefined;
	private _hub: HubClient | undefined;
	private _reports: ReportQueue;
	private _state: DeviceState = "starting";
	private _closed = false;
	/** Telemetry sent before the hub client exists (while provisioning), bounded by queueLimit. */
	private _early: {body: string | Uint8Array | object; options: TelemetryOptions; callback?: Callback<{messageId: string}>}[] = [];
	private _queueLimit = 16;
	private _resetReported = false;
	private _update: DeviceUpdate | undefined;
	/** Why the device last reset, reported once connected. */
	private _reset: ResetInfo | undefined;
	private _link: InstanceType<typeof Device.Link>;

	constructor(options: DeviceOptions) {
		const checked = checkOptions(options);
		this._options = options;
		this._platform = options.platform;
		this._components = checked.components;
		this._link = new Device.Link(this);
		this._reports = new ReportQueue(options.platform.adapter, this._link);
		// Everything else happens in a job of its own: never inside the constructor.
		Promise.resolve().then(() => this._start(checked.modelId));
	}

	/** "starting", "provisioning", "connecting", "connected", "disconnected" (retrying), "failed" (a bad setting) or "closed". */
	get state(): DeviceState {
		return this._state;
	}

	/** The settings in use, without the secrets. */
	get settings(): Readonly<Partial<Settings>> {
		return this._settings;
	}

	get deviceId(): string | undefined {
		return this._lifecycle?.assignment?.deviceId;
	}

	get hubHost(): string | undefined {
		return this._lifecycle?.assignment?.assignedHub;
	}

	get bootCount(): number {
		return this._lifecycle?.bootCount ?? 0;
	}

	get modelId(): string | undefined {
		return this._modelId;
	}

	/**
	 * Sends telemetry (QoS 1). The callback gets null once the hub acknowledged it, or the error:
	 * queue.full when queueLimit messages wait already (the hub is unreachable), a config error for
	 * a body that cannot be sent. Without a callback, failures go to onError.
	 */
	send(body: string | Uint8Array | object, options?: SendOptions, callback?: Callback<{messageId: string}>): void {
		const o = options ?? {};
		if (o.component !== undefined && this._components.length && !this._components.includes(o.component)) {
			this._fail(callback, configError("component", `"${o.component}" is not one of the model's components (${this._components.join(", ")})`, "Send with a component named in the options' components, or none"));
			return;
		}
		const telemetry: TelemetryOptions = {...o};
		if (this._closed) {
			this._fail(callback, closedError());
			return;
		}
		const hub = this._hub;
		if (!hub) {
			if (this._early.length >= this._queueLimit) {
				this._fail(callback, new AzureIoTError("queue.full", `The telemetry queue is full (${this._queueLimit} messages wait for the hub connection), so the message was not accepted. Send it again later, or raise queueLimit`, {retriable: true}));
				return;
			}
			this._early.push({body, options: telemetry, callback});
			return;
		}
		this._sendNow(hub, body, telemetry, callback);
	}

	/**
	 * Reports properties, for the root or one component (`{"<component>":{"__t":"c",...}}`); null
	 * deletes one. Reports made in one turn, or while the hub is unreachable, leave as one patch.
	 */
	report(properties: Record<string, unknown>, options?: {component?: string}, callback?: Callback<number>): void {
		const component = options?.component;
		if (!properties || typeof properties !== "object" || Array.isArray(properties)) {
			this._fail(callback, configError("properties", "is not an object", "Report properties as {name: value}"));
			return;
		}
		if (component !== undefined && !this._components.includes(component)) {
			this._fail(callback, configError("component", `"${component}" is not one of the model's components`, "Name it in the options' components"));
			return;
		}
		if (this._closed) {
			this._fail(callback, closedError());
			return;
		}
		let copy: Record<string, unknown>;
		try {
			copy = JSON.parse(JSON.stringify(properties));
		}
		catch {
			this._fail(callback, configError("properties", "cannot be serialized as JSON", "Remove cycles and BigInt values"));
			return;
		}
		this._reports.add(reportedPatch(copy, component), component ? {component} : {}, this._reportCallback(callback));
	}

	/**
	 * Acknowledges a writable property the IoT Plug and Play way: `{"value","ac","av","ad"}`, with
	 * `av` the desired version (0 and status 203 for a value of the device's own, with no desired
	 * one). The value defaults to the desired value.
	 */
	acknowledge(property: WritableProperty, ack: Acknowledgement | number, callback?: Callback<number>): void {
		const a = typeof ack === "number" ? {status: ack} : ack;
		if (!property || typeof property.name !== "string" || typeof property.version !== "number" ||
			!a || !Number.isInteger(a.status) || a.status < 100 || a.status > 999) {
			this._fail(callback, configError("acknowledge()", "needs a writable property and a status", "Pass the property onWritable got (or {name, value, version}) and {status: 200}"));
			return;
		}
		if (this._closed) {
			this._fail(callback, closedError());
			return;
		}
		const value = a.value === undefined ? property.value : a.value;
		const summary: Record<string, unknown> = {[property.name]: value, ac: a.status};
		if (property.component !== undefined) summary.component = property.component;
		this._reports.add(acknowledgementPatch(property, a), summary, this._reportCallback(callback));
	}

	/** Forgets the DPS assignment and registers again (for a "reprovision" command, say). */
	reprovision(): void {
		if (!this._closed) this._lifecycle?.reprovision();
	}

	/** Stops: disconnects from the hub; what was not sent fails with device.closed. May be called more than once. */
	close(): void {
		if (this._closed) return;
		this._closed = true;
		const error = closedError();
		for (const e of this._early.splice(0)) this._fail(e.callback, error);
		this._reports.close(error);
		this._update?.close();
		const lifecycle = this._lifecycle;
		this._lifecycle = undefined;
		void lifecycle?.stop();
		this._state = "closed";
		this._reports.connected = false;
		// Never from inside close() itself.
		Promise.resolve().then(() => this._invoke(() => this._options.onStateChange?.call(this, "closed", {})));
	}

	// --- start ---

	private _start(modelId: string | undefined): void {
		if (this._closed) return;
		const p = this._platform;
		const overrides = this._options.settings ?? {};
		let settings: Settings;
		let identity: Identity | undefined;
		let update: DeviceUpdate | undefined;
		try {
			if (p.setupError) throw p.setupError;
			settings = checkSettings(name => name in overrides ? overrides[name] : p.setting(name), p.settingLabels ?? "name");
			if (settings.x509Cert && settings.x509Key) {
				const label = (name: SettingName) => p.settingLabels === "file" ? SETTINGS[name].file : name;
				const chain = settings.x509Chain ? splitDer(settings.x509Chain, label("x509Chain")) : [];
				identity = {
					clientCertificates: [settings.x509Cert, ...chain],
					clientKey: settings.x509Key,
					// Certificate i of the list is x509Cert (0), then x509Chain's (1...).
					fields: {certificates: chain.length ? `${label("x509Cert")}+${label("x509Chain")}` : label("x509Cert"), key: label("x509Key")},
				};
			}
			const u = this._options.update ?? (settings.aduManufacturer !== undefined);
			if (u !== false)
				update = new DeviceUpdate(p, resolveUpdateConfig(u, settings, p), this._link);
		}
		catch (e) {
			const error = asError(e);
			this._emit({event: "error", code: error.code, message: error.message});
			this._setState("failed", {error});
			this._call("onError", error);
			return;
		}
		this._settings = publicSettings(settings);
		this._queueLimit = settings.queueLimit;
		// Without a model of its own, a device with Device Update announces ADU's, as Microsoft's ESP32 sample does.
		this._modelId = modelId ?? settings.modelId ?? (update ? ADU_CONTRACT_MODEL_ID : undefined);
		this._update = update;
		const reset = this._options.reportReset === false ? undefined : p.lastReset?.();
		if (reset) this._emit({event: "device.reset", ...reset});
		this._reset = reset;
		this._lifecycle = new Lifecycle(p, settings, identity, this._modelId, this._link);
		this._lifecycle.start().catch(e => {
			const error = asError(e);
			this._emit({event: "error", code: error.code, message: error.message});
		});
	}

	private _attach(hub: HubClient): void {
		this._hub = hub;
		this._update?.attach(hub);
		this._reports.attach(hub);
		for (const e of this._early.splice(0)) this._sendNow(hub, e.body, e.options, e.callback);
	}

	private _sendNow(hub: HubClient, body: string | Uint8Array | object, options: TelemetryOptions, callback?: Callback<{messageId: string}>): void {
		// A callback all the way down, not a promise chain: each message waiting for its PUBACK costs less heap.
		hub.queueTelemetry(body, options, callback
			? (error, result) => this._invoke(() => callback(error && asError(error), result))
			: this._telemetryDone);
	}

	/** For telemetry sent without a callback: failures go to onError (one function for all of them). */
	private readonly _telemetryDone = (error: AzureIoTError | null): void => {
		// queue.full is reported by the hub client's overflow callback already; closing says so itself.
		if (error && error.code !== "queue.full" && error.code !== "hub.closed") this._call("onError", asError(error));
	};

	/**
	 * What the lifecycle, the hub client, the report queue and Device Update call back, as one
	 * object: a closure costs about 6 heap slots on XS, an object of this class 2, and its methods
	 * stay in flash with the preloaded module (BENCHMARKS.md). Inside the class body, so that it
	 * reaches the device's private members.
	 */
	private static Link = class implements LifecycleOwner {
		private _device: Device;

		constructor(device: Device) {
			this._device = device;
		}

		// the hub client's (HubFeatures)
		onDesired(patch: Record<string, unknown>, version: number, info: DesiredInfo): void {
			this._device._onDesired(patch, version, info.complete ? info.reported : undefined);
		}

		onMethod(request: MethodRequest): Promise<MethodResponse> {
			return this._device._onMethod(request);
		}

		onMethodRefused(info: {name: string; status: number; size: number; reason: string}): void {
			const device = this._device;
			device._emit({event: "method.rejected", name: info.name, status: info.status, size: info.size});
			device._call("onRefused", {kind: "command", method: info.name, status: info.status, size: info.size, reason: info.reason});
		}

		onMessage(message: CloudMessage): void | Promise<void> {
			return this._device._onMessage(message);
		}

		onMessageRefused(message: RefusedMessage): void {
			this._device._onMessageRefused(message);
		}

		onTwinRefused(refusal: TwinRefusal): void {
			this._device._onTwinRefused(refusal);
		}

		onQueueOverflow(refused: {messageId: string}): void {
			this._device._emit({event: "error", code: "queue.full", message: `telemetry ${refused.messageId} was not accepted: the outbound queue is full while the hub is unreachable`});
		}

		onError(error: AzureIoTError): void {
			this._device._emit({event: "error", code: error.code, message: error.message});
			this._device._call("onError", error);
		}

		// the lifecycle's (LifecycleHooks)
		state(state: DeviceState, info: StateInfo): void {
			this._device._setState(state, info);
		}

		hub(hub: HubClient): void {
			this._device._attach(hub);
		}

		opened(): void {
			this._device._update?.opened();
		}

		connected(): void {
			const device = this._device;
			if (device._reset && !device._resetReported) {
				device._resetReported = true;
				device.report({lastReset: device._reset});
			}
		}

		// also Device Update's and the report queue's
		error(error: AzureIoTError): void {
			this._device._call("onError", error);
		}

		emit(event: DeviceEvent): void {
			this._device._emit(event);
		}
	};

	static {
		// Preloaded and frozen, as every class here: then it stays in flash.
		Object.freeze(Device.Link.prototype);
		Object.freeze(Device.Link);
	}

	// --- what the hub sends ---

	private _onDesired(patch: Record<string, unknown>, version: number, reported: Record<string, unknown> | undefined): void {
		this._emit({event: "twin.desired", version, keys: Object.keys(patch).filter(k => !k.startsWith("$"))});
		let desired = patch;
		if (this._update && Object.prototype.hasOwnProperty.call(patch, "deviceUpdate")) {
			// Device Update's component is the agent's, never the application's writable property.
			const component = patch.deviceUpdate;
			if (component && typeof component === "object" && Object.prototype.hasOwnProperty.call(component, "service"))
				this._update.desired(version, (component as Record<string, unknown>).service);
			desired = {...patch};
			delete desired.deviceUpdate;
		}
		const handler = this._options.onWritable;
		if (!handler) return;
		for (const property of writableProperties(desired, version, this._components)) {
			Promise.resolve()
				.then(() => handler.call(this, Object.freeze(property)))
				.then(result => {
					if (result === undefined || this._closed) return;
					const ack = typeof result === "number" ? {status: result} : result;
					if (reported && alreadyAcknowledged(reported, property, ack)) return;
					this.acknowledge(property, ack);
				}, e => {
					const detail = e instanceof Error ? e.message : String(e);
					this.acknowledge(property, {status: 500, description: `failed: ${detail.slice(0, 120)}`});
				});
		}
	}

	private async _onMethod(request: MethodRequest): Promise<MethodResponse> {
		let response: MethodResponse;
		const component = request.component;
		const handler = this._options.onCommand;
		if (component !== undefined && !this._components.includes(component))
			response = {status: 404, payload: {message: `no component "${component.slice(0, 64)}" on this device`}};
		else if (!handler)
			response = {status: 404, payload: {message: `no command "${request.name.slice(0, 64)}": this device takes no commands`}};
		else {
			const command: CommandRequest = {name: request.command, method: request.name, payload: request.payload};
			if (component !== undefined) command.component = component;
			const result = await handler.call(this, Object.freeze(command));
			response = result ?? {status: 404, payload: {message: `no command "${request.name.slice(0, 64)}" on this device`}};
		}
		this._emit({event: "method.invoked", name: request.name, status: response.status});
		return response;
	}

	private _onMessage(message: CloudMessage): void | Promise<void> {
		this._emit({
			event: "c2d.received",
			messageId: message.systemProperties["$.mid"] ?? message.systemProperties["message-id"],
			// The start only, decoded from the start only: the whole body as a string would double its memory.
			body: utf8Decode(message.body.subarray(0, EVENT_BODY_BYTES)).slice(0, EVENT_BODY_BYTES),
			size: message.body.length,
			properties: message.properties,
		});
		const handler = this._options.onMessage;
		if (handler) return handler.call(this, message);
	}

	private _onMessageRefused(message: RefusedMessage): void {
		const messageId = message.systemProperties["$.mid"];
		this._emit({event: "c2d.rejected", messageId, size: message.size, limit: message.limit, properties: message.properties});
		const refusal: Refusal = {kind: "message", size: message.size, limit: message.limit, properties: message.properties};
		if (messageId !== undefined) refusal.messageId = messageId;
		this._call("onRefused", refusal);
	}

	private _onTwinRefused(refusal: TwinRefusal): void {
		const event: DeviceEvent = {event: "twin.rejected", what: refusal.kind, size: refusal.size, limit: refusal.limit};
		if (refusal.version !== undefined) event.version = refusal.version;
		this._emit(event);
		const out: Refusal = {kind: "twin", what: refusal.kind, size: refusal.size, limit: refusal.limit};
		if (refusal.version !== undefined) out.version = refusal.version;
		this._call("onRefused", out);
	}

	// --- reporting ---

	private _setState(state: DeviceState, info: StateInfo): void {
		if (this._state === "closed" || (state === this._state && state !== "disconnected")) return;
		this._state = state;
		this._reports.connected = state === "connected";
		this._update?.setConnected(state === "connected");
		this._call("onStateChange", state, info);
	}

	private _reportCallback(callback: Callback<number> | undefined): ((error: AzureIoTError | null, version?: number) => void) | undefined {
		if (callback) return (error, version) => this._invoke(() => callback(error, version));
		return error => {
			if (error && error.code !== "device.closed") this._call("onError", error);
		};
	}

	private _fail<T>(callback: Callback<T> | undefined, error: AzureIoTError): void {
		// Never from inside the call that failed: in a job of its own.
		Promise.resolve().then(() => {
			if (callback) this._invoke(() => callback(error));
			else this._call("onError", error);
		});
	}

	private _call<K extends "onStateChange" | "onRefused" | "onError">(name: K, ...args: Parameters<NonNullable<DeviceOptions[K]>>): void {
		const f = this._options[name] as ((...a: unknown[]) => void) | undefined;
		if (!f) return;
		// Not through _invoke: two stack frames fewer under every state change (the XS stack is small on the ESP32).
		try {
			f.apply(this, args);
		}
		catch (e) {
			this._threw(e);
		}
	}

	private _invoke(call: () => void): void {
		try {
			call();
		}
		catch (e) {
			this._threw(e);
		}
	}

	private _threw(e: unknown): void {
		this._emit({event: "error", code: "internal", message: `an application callback threw: ${e instanceof Error ? e.message : String(e)}`});
	}

	private _emit(event: DeviceEvent): void {
		try {
			this._platform.emit(event);
		}
		catch {
			// printing must never stop the device
		}
	}
}

function closedError(): AzureIoTError {
	return new AzureIoTError("device.closed", "The device was closed. Make a new Device to connect again");
}

Object.freeze(Device.prototype);
Object.freeze(Device);
