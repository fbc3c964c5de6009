/*
 * Every setting of a device, named once. Each has one name, used as the build-time value (the
 * manifest's `config`, or `mcconfig ... idScope=...`) and as the Preference key in domain "azure"
 * (NVS on the ESP32, so one firmware image serves a fleet); the field of device.json that the tools
 * read it from; how it is checked; and its default. Values arrive as strings from both mcconfig and
 * Preference, so numbers are taken in either form. They are checked here, once, and only checked
 * values go further in.
 */
import {AzureIoTError, configError} from "./errors.js";
import {DEFAULT_LIMITS, HUB_MAXIMUM_BYTES} from "./limits.js";
import {checkHostName, checkIdScope, checkKey, checkModelId, checkPort, checkPositive, checkRegistrationId} from "./validate.js";

export const DPS_GLOBAL_ENDPOINT = "global.azure-devices-provisioning.net";
export const TELEMETRY_INTERVAL_MIN_MS = 1000;
export const TELEMETRY_INTERVAL_MAX_MS = 24 * 3600 * 1000;
// Sized for the ESP32 firmware's heap (hosts/esp32: 6144 slots, 48 KB of chunks): on the simulator, with
// the same sizes, a reconnect with 32 messages queued went through and one with 40 ran out of chunk
// memory (docs/reliability.md); 16 leaves room for the application, the TLS handshake and the re-sends.
export const DEFAULT_QUEUE_LIMIT = 16;

export interface Settings {
	dpsHost: string;
	dpsPort: number;
	idScope: string;
	registrationId: string;
	/** Undefined with an X.509 identity. */
	symmetricKey?: string;
	modelId?: string;
	hubPort: number;
	intervalMs: number;
	queueLimit: number;
	maxMessageBytes: number;
	maxMethodBytes: number;
	maxTwinBytes: number;
	ssid?: string;
	password?: string;
	sntp: readonly string[];
	firmwareVersion: string;
	/** X.509: the device's certificate (DER), the intermediates after it (DER, concatenated), its PKCS#8 key (DER). */
	x509Cert?: Uint8Array;
	x509Chain?: Uint8Array;
	x509Key?: Uint8Array;
	/** Device Update (src/device/update.ts): what the device is (the manifests' compatibility) and what its image is (its update id). */
	aduManufacturer?: string;
	aduModel?: string;
	/** The update id of the running image: provider and name (default manufacturer and model); its version is firmwareVersion. */
	aduProvider?: string;
	aduName?: string;
	/** A root key trusted besides Microsoft's: the emulator's, {kid, n, e}, in builds for it only. */
	aduRootKey?: AduRootKeySetting;
	/** A new image that has not reached the hub after this long goes back to the previous one (ESP32). */
	aduRollbackMs: number;
}

export interface AduRootKeySetting {
	readonly kid: string;
	/** Standard base64 of the modulus and the exponent. */
	readonly n: string;
	readonly e: string;
}

export type SettingName = keyof Settings;

interface Spec {
	/** The field of device.json. */
	readonly file: string;
	/** Checks a raw value (undefined when unset: the check applies the default or says it is missing). */
	readonly check: (value: unknown, field: string) => unknown;
	/** Never printed, never in an event. */
	readonly secret?: boolean;
	/** Taken from the build only: storage cannot change it. */
	readonly buildOnly?: boolean;
	/** Bytes (X.509), not text: read as such from storage and files. */
	readonly bytes?: boolean;
}

// The checks are closures over consts (not parameters): this module is preloaded, and XS keeps in
// flash only closures whose captured variables cannot change.
function optional<T>(check: (value: unknown, field: string) => T): (value: unknown, field: string) => T | undefined {
	const inner = check;
	return (value, field) => value === undefined ? undefined : inner(value, field);
}

function number(min: number, max: number, fallback: number): (value: unknown, field: string) => number {
	const lo = min, hi = max, otherwise = fallback;
	return (value, field) => Math.floor(checkPositive(value ?? otherwise, field, lo, hi));
}

function text(max: number, fallback?: string): (value: unknown, field: string) => string | undefined {
	const most = max, otherwise = fallback;
	return (value, field) => {
		if (value === undefined) return otherwise;
		if (typeof value !== "string" || value.length > most) throw configError(field, `is not a string of at most ${most} characters`, "Give it as text");
		return value;
	};
}

function rootKey(value: unknown, field: string): AduRootKeySetting {
	let v = value;
	if (typeof v === "string") {
		try {
			v = JSON.parse(v);
		}
		catch {
			v = undefined;
		}
	}
	const k = v as Record<string, unknown> | undefined;
	if (!k || typeof k !== "object" || typeof k.kid !== "string" || !k.kid || typeof k.n !== "string" || typeof k.e !== "string")
		throw configError(field, "is not a root key {\"kid\",\"n\",\"e\"}", "Give the emulator's aduRootKey (its adu-root-key.json) as it prints it, or leave it out for Microsoft's keys only");
	return Object.freeze({kid: k.kid, n: k.n, e: k.e});
}

function spec(s: Spec): Spec {
	return Object.freeze(s);
}

function der(value: unknown, field: string): Uint8Array {
	const bytes = value instanceof ArrayBuffer ? new Uint8Array(value) : value;
	if (!(bytes instanceof Uint8Array) || bytes.length < 16)
		throw configError(field, "is not DER bytes", "Store the certificate or key as DER (openssl x509 -outform der; openssl pkcs8 -topk8 -nocrypt -outform der)");
	return bytes;
}

function servers(value: unknown, field: string): readonly string[] {
	const list = (typeof value === "string" ? value : "pool.ntp.org,time.google.com,time.cloudflare.com").split(",").map(s => s.trim()).filter(s => s);
	if (!list.length) throw configError(field, "names no time server", "Give comma-separated SNTP host names, e.g. pool.ntp.org");
	return Object.freeze(list.map(s => checkHostName(s, field)));
}

/** The one table. */
export const SETTINGS: Readonly<Record<SettingName, Spec>> = Object.freeze({
	dpsHost: spec({file: "dps.host", check: (v, f) => checkHostName(v ?? DPS_GLOBAL_ENDPOINT, f)}),
	dpsPort: spec({file: "dps.port", check: (v, f) => checkPort(v ?? 8883, f)}),
	idScope: spec({file: "dps.idScope", check: checkIdScope}),
	registrationId: spec({file: "dps.registrationId", check: checkRegistrationId}),
	symmetricKey: spec({file: "dps.symmetricKey", check: optional(checkKey), secret: true}),
	modelId: spec({file: "dps.modelId", check: optional(checkModelId)}),
	hubPort: spec({file: "hub.port", check: (v, f) => checkPort(v ?? 8883, f)}),
	intervalMs: spec({file: "telemetry.intervalMs", check: number(TELEMETRY_INTERVAL_MIN_MS, TELEMETRY_INTERVAL_MAX_MS, 10_000)}),
	queueLimit: spec({file: "telemetry.queueLimit", check: number(1, 10_000, DEFAULT_QUEUE_LIMIT)}),
	maxMessageBytes: spec({file: "limits.maxMessageBytes", check: number(0, HUB_MAXIMUM_BYTES, DEFAULT_LIMITS.maxMessageBytes)}),
	maxMethodBytes: spec({file: "limits.maxMethodBytes", check: number(0, HUB_MAXIMUM_BYTES, DEFAULT_LIMITS.maxMethodBytes)}),
	maxTwinBytes: spec({file: "limits.maxTwinBytes", check: number(0, HUB_MAXIMUM_BYTES, DEFAULT_LIMITS.maxTwinBytes)}),
	ssid: spec({file: "wifi.ssid", check: text(32)}),
	password: spec({file: "wifi.password", check: text(64), secret: true}),
	sntp: spec({file: "clock.sntp", check: servers}),
	firmwareVersion: spec({file: "firmwareVersion", check: text(64, "0.1.0"), buildOnly: true}),
	x509Cert: spec({file: "dps.x509.certificate", check: optional(der), bytes: true}),
	x509Chain: spec({file: "dps.x509.chain", check: optional(der), bytes: true}),
	x509Key: spec({file: "dps.x509.key", check: optional(der), secret: true, bytes: true}),
	aduManufacturer: spec({file: "update.manufacturer", check: text(64), buildOnly: true}),
	aduModel: spec({file: "update.model", check: text(64), buildOnly: true}),
	aduProvider: spec({file: "update.provider", check: text(64), buildOnly: true}),
	aduName: spec({file: "update.name", check: text(64), buildOnly: true}),
	// Build-only: nothing in storage may widen what the device trusts.
	aduRootKey: spec({file: "update.emulatorRootKey", check: optional(rootKey), buildOnly: true}),
	aduRollbackMs: spec({file: "update.rollbackMs", check: number(10_000, 24 * 3600 * 1000, 300_000)}),
});

export const SETTING_NAMES = Object.freeze(Object.keys(SETTINGS) as SettingName[]);

/** How an error names a setting: by its name (build value, Preference key) or its device.json field. */
export type SettingLabels = "name" | "file";

/**
 * Reads and checks every setting from `source` (which gives the raw value of a name, or undefined
 * when unset; "" counts as unset). Throws the first problem as a config error naming the setting.
 */
export function checkSettings(source: (name: SettingName) => unknown, labels: SettingLabels = "name"): Settings {
	const out: Record<string, unknown> = {};
	for (const name of SETTING_NAMES) {
		const spec = SETTINGS[name];
		let raw = source(name);
		if (raw === null || raw === "") raw = undefined;
		const value = spec.check(raw, labels === "file" ? spec.file : name);
		if (value !== undefined) out[name] = value;
	}
	const settings = out as unknown as Settings;
	const x509 = settings.x509Cert !== undefined || settings.x509Key !== undefined;
	const label = (name: SettingName) => labels === "file" ? SETTINGS[name].file : name;
	if (x509 && settings.symmetricKey !== undefined)
		throw configError(label("symmetricKey"), `is set together with an X.509 identity (${label("x509Cert")})`, "Give one credential: the symmetric key, or the certificate and its key");
	if (x509 && (settings.x509Cert === undefined || settings.x509Key === undefined))
		throw configError(label(settings.x509Cert === undefined ? "x509Cert" : "x509Key"), "is missing", "An X.509 identity needs both the device's certificate and its private key");
	if (settings.x509Chain !== undefined && settings.x509Cert === undefined)
		throw configError(label("x509Chain"), "is set without a certificate", `Give the device's certificate too (${label("x509Cert")})`);
	if (!x509 && settings.symmetricKey === undefined)
		throw configError(label("symmetricKey"), "is missing", "Set the enrollment's primary key, or for a group enrollment the key derived with `npm run derive-key`; or give an X.509 certificate and key");
	return Object.freeze(settings);
}

/** A device.json object's values by setting name (the tools' side of the table). */
export function settingsFromFile(json: unknown): Partial<Record<SettingName, unknown>> {
	if (!json || typeof json !== "object" || Array.isArray(json))
		throw new AzureIoTError("config", "configuration: not an object. Give {\"dps\":{...}} as in device.example.json");
	const out: Partial<Record<SettingName, unknown>> = {};
	for (const name of SETTING_NAMES) {
		let value: unknown = json;
		for (const part of SETTINGS[name].file.split(".")) {
			value = value && typeof value === "object" ? (value as Record<string, unknown>)[part] : undefined;
		}
		if (value !== undefined) out[name] = value;
	}
	return out;
}

/** The settings without the secrets, for an application to read (and for logs). */
export function publicSettings(settings: Settings): Readonly<Partial<Settings>> {
	const out: Record<string, unknown> = {};
	for (const name of SETTING_NAMES) if (!SETTINGS[name].secret && settings[name] !== undefined) out[name] = settings[name];
	return Object.freeze(out) as Partial<Settings>;
}

for (const f of [checkSettings, settingsFromFile, publicSettings]) Object.freeze(f);
