/*
 * Checks of identities and keys, done before anything goes on the wire, so that a typo gives a
 * message naming the field and the fix instead of an opaque CONNACK 5 from Azure.
 */
import {configError} from "./errors.js";
import {decodeKey} from "./sas.js";
import {firstNotIn, isDigit, isDigits, isDtdlName, isLetter} from "./chars.js";

// Characters are tested without RegExp: src/chars.ts says why.
/** Registration ids: ASCII letters, digits and these. */
const REGISTRATION_ID_EXTRA = "-._:";
/** IoT Hub device ids: ASCII letters, digits and these: - . + % _ # * ? ! ( ) , : = @ $ ' */
const DEVICE_ID_EXTRA = "-.+%_#*?!(),:=@$'";

/** DTDL v2 model ids: dtmi:<segment>(:<segment>)*;<version>, segments of letters, digits and _ starting with a letter, not ending in _; the version 1 to 999999999. */
function isModelId(value: string): boolean {
	const semicolon = value.lastIndexOf(";");
	if (!value.startsWith("dtmi:") || semicolon < 0) return false;
	const version = value.slice(semicolon + 1);
	if (!isDigits(version) || version.length > 9 || version[0] === "0") return false;
	return value.slice(5, semicolon).split(":").every(isDtdlName);
}

export function checkRegistrationId(value: unknown, field = "registrationId"): string {
	if (typeof value !== "string" || value.length === 0)
		throw configError(field, "is missing", "Set it to the device's registration id as enrolled in DPS");
	if (value.length > 128)
		throw configError(field, `is ${value.length} characters long; DPS allows at most 128`, "Use a shorter registration id");
	const bad = firstNotIn(value, REGISTRATION_ID_EXTRA);
	if (bad >= 0) {
		const c = value.codePointAt(bad) ?? 0;
		throw configError(field, `contains ${JSON.stringify(String.fromCodePoint(c))}, which DPS refuses`, "Use only letters, digits and - . _ : (lowercase recommended)");
	}
	const last = value.charCodeAt(value.length - 1);
	if (!isLetter(last) && !isDigit(last) && last !== 45)
		throw configError(field, `ends in ${JSON.stringify(value.slice(-1))}, which DPS refuses`, "End the registration id with a letter, a digit or -");
	return value;
}

export function checkDeviceId(value: unknown, field = "deviceId"): string {
	if (typeof value !== "string" || !value)
		throw configError(field, "is missing", "Set it to the deviceId that DPS assigned (RegistrationResult.deviceId)");
	if (value.length > 128 || firstNotIn(value, DEVICE_ID_EXTRA) >= 0)
		throw configError(field, `${JSON.stringify(value.slice(0, 64))} is not a valid IoT Hub device id`,
			"Use at most 128 letters, digits and - . + % _ # * ? ! ( ) , : = @ $ '");
	if (value.includes("+") || value.includes("#"))
		throw configError(field, `${JSON.stringify(value.slice(0, 64))} holds + or #, which IoT Hub allows in device ids but MQTT does not allow in the topics that carry them`,
			"Give the device an id without + and # (in its DPS enrollment or its registration id)");
	return value;
}

export function checkModelId(value: unknown, field = "modelId"): string {
	if (typeof value !== "string" || !isModelId(value))
		throw configError(field, `${JSON.stringify(String(value).slice(0, 80))} is not a DTDL model id`, "Use the form dtmi:com:example:Thermostat;1, or leave it out");
	return value;
}

export function checkIdScope(value: unknown, field = "idScope"): string {
	if (typeof value !== "string" || value.length === 0)
		throw configError(field, "is missing", "Copy the ID Scope from the DPS overview page or `az iot dps show --query properties.idScope`");
	if (value.length > 64 || firstNotIn(value, "") >= 0)
		throw configError(field, "is not an ID scope (letters and digits only, like 0ne00A1B2C3)", "Copy the ID Scope from the DPS overview page");
	return value;
}

export function checkKey(value: unknown, field = "symmetricKey"): string {
	if (typeof value !== "string" || value.length === 0)
		throw configError(field, "is missing", "Set the enrollment's primary key, or for a group enrollment the key derived with `npm run derive-key`");
	const bytes = decodeKey(value, field);
	if (bytes.length < 16)
		throw configError(field, `decodes to only ${bytes.length} bytes`, "Azure keys are 32 or 64 bytes of base64; copy the whole key");
	return value.trim();
}

export function checkHostName(value: unknown, field: string): string {
	if (typeof value !== "string" || value.length === 0)
		throw configError(field, "is missing", "Set a host name such as global.azure-devices-provisioning.net");
	if (value.length > 253 || firstNotIn(value, ".-:[]") >= 0 || value.startsWith(".") || value.includes("//"))
		throw configError(field, `${JSON.stringify(value.slice(0, 64))} is not a host name`, "Give only the host name, without scheme, port or path");
	return value;
}

export function checkPort(value: unknown, field: string): number {
	const port = typeof value === "string" && isDigits(value) ? Number(value) : value;
	if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
		throw configError(field, `${JSON.stringify(value)} is not a TCP port`, "Use a whole number from 1 to 65535 (Azure uses 8883)");
	return port;
}

export function checkRoots(value: unknown, field = "roots"): readonly Uint8Array[] {
	if (!Array.isArray(value) || value.length === 0 || !value.every(r => r instanceof Uint8Array && r.length > 0))
		throw configError(field, "has no trusted root certificate", "Pin DigiCert Global Root G2 and Microsoft RSA Root Certificate Authority 2017 (certs/), or the emulator's root in development");
	return value;
}

export function checkPositive(value: unknown, field: string, min: number, max: number): number {
	const n = typeof value === "string" && isDigits(value) ? Number(value) : value;
	if (typeof n !== "number" || !Number.isFinite(n) || n < min || n > max)
		throw configError(field, `${JSON.stringify(value)} is out of range`, `Use a number from ${min} to ${max}`);
	return n;
}
