/*
 * The device's configuration, checked as a whole before anything connects. Values may arrive as
 * strings (mcconfig's key=value build settings and Preference both give strings), so numbers
 * are accepted in either form; every error names the field and says how to fix it.
 */
import {AzureIoTError, configError} from "../errors.js";
import {checkHostName, checkIdScope, checkKey, checkPort, checkPositive, checkRegistrationId} from "../validate.js";

export interface DeviceConfig {
	dps: {host: string; port: number; idScope: string; registrationId: string; symmetricKey: string; modelId?: string};
	hub: {port: number};
	/** queueLimit: telemetry held while the hub is unreachable; each message costs heap (docs/reliability.md). */
	telemetry: {intervalMs: number; queueLimit: number};
	firmwareVersion: string;
}

export const TELEMETRY_INTERVAL_MIN_MS = 1000;
export const TELEMETRY_INTERVAL_MAX_MS = 24 * 3600 * 1000;
// Sized for the ESP32's heap (hosts/esp32: 6144 slots, 48 KB of chunks): on the simulator, with the same
// sizes, a reconnect with 32 messages queued went through and one with 40 ran out of chunk memory
// (docs/reliability.md); 16 leaves room for the application, the TLS handshake and the re-sends.
export const DEFAULT_QUEUE_LIMIT = 16;

function section(raw: Record<string, unknown>, name: string, required: boolean): Record<string, unknown> {
	const value = raw[name];
	if (value === undefined && !required) return {};
	if (!value || typeof value !== "object" || Array.isArray(value))
		throw configError(name, required ? "is missing" : "is not an object", `Give "${name}" as an object (see device.example.json)`);
	return value as Record<string, unknown>;
}

export function validateDeviceConfig(raw: unknown): DeviceConfig {
	if (!raw || typeof raw !== "object" || Array.isArray(raw))
		throw new AzureIoTError("config", "configuration: not an object. Give {\"dps\":{...}} as in device.example.json");
	const root = raw as Record<string, unknown>;
	const dps = section(root, "dps", true);
	const hub = section(root, "hub", false);
	const telemetry = section(root, "telemetry", false);
	const modelId = dps.modelId;
	if (modelId !== undefined && modelId !== "" && (typeof modelId !== "string" || !/^dtmi:[A-Za-z0-9_:]+;[1-9][0-9]*$/.test(modelId)))
		throw configError("dps.modelId", "is not a DTMI", "Use a model id such as dtmi:com:example:Thermostat;1, or leave it out");
	const version = root.firmwareVersion ?? "0.1.0";
	if (typeof version !== "string" || version.length > 64) throw configError("firmwareVersion", "is not a short string", "Use a version such as 1.2.0");
	const config: DeviceConfig = {
		dps: {
			host: checkHostName(dps.host ?? "global.azure-devices-provisioning.net", "dps.host"),
			port: checkPort(dps.port ?? 8883, "dps.port"),
			idScope: checkIdScope(dps.idScope, "dps.idScope"),
			registrationId: checkRegistrationId(dps.registrationId, "dps.registrationId"),
			symmetricKey: checkKey(dps.symmetricKey, "dps.symmetricKey"),
		},
		hub: {port: checkPort(hub.port ?? 8883, "hub.port")},
		telemetry: {
			intervalMs: checkPositive(telemetry.intervalMs ?? 10_000, "telemetry.intervalMs", TELEMETRY_INTERVAL_MIN_MS, TELEMETRY_INTERVAL_MAX_MS),
			queueLimit: Math.floor(checkPositive(telemetry.queueLimit ?? DEFAULT_QUEUE_LIMIT, "telemetry.queueLimit", 1, 10_000)),
		},
		firmwareVersion: version,
	};
	if (typeof modelId === "string" && modelId) config.dps.modelId = modelId;
	return config;
}
