/*
 * Shared access signatures for DPS and IoT Hub, and the group-enrollment key derivation.
 * The signature covers exactly the `sr` string that is sent (already URL-encoded), a point on
 * which hand-written clients often go wrong.
 */
import {base64Decode, base64Encode, utf8Encode} from "./encoding.js";
import {configError} from "./errors.js";
import {encodeComponent} from "./query.js";
import {isSpace, replaceValues} from "./chars.js";

export type HmacSha256 = (key: Uint8Array, message: Uint8Array) => Uint8Array;

export interface SasOptions {
	/** The resource URI before encoding, e.g. `0ne00000000/registrations/my-device`. */
	resourceUri: string;
	/** Base64 symmetric key. */
	key: string;
	/** Unix seconds. */
	expiry: number;
	/** `registration` for DPS; omitted for a device key on the hub. */
	keyName?: string;
	hmac: HmacSha256;
}

export function decodeKey(key: string, field = "symmetricKey"): Uint8Array {
	const bytes = typeof key === "string" ? base64Decode(key.trim()) : undefined;
	if (!bytes || bytes.length === 0)
		throw configError(field, "is not valid base64", "Copy the primary or secondary key exactly as the Azure portal or `az iot dps enrollment show --show-keys` prints it");
	return bytes;
}

export function sasToken(options: SasOptions): string {
	const expiry = Math.floor(options.expiry);
	// Encoded as Microsoft's SDKs encode it (src/query.ts), so that the signature over `sr` is theirs.
	const sr = encodeComponent(options.resourceUri);
	const signature = base64Encode(options.hmac(decodeKey(options.key), utf8Encode(sr + "\n" + expiry)));
	let token = `SharedAccessSignature sr=${sr}&sig=${encodeComponent(signature)}&se=${expiry}`;
	if (options.keyName) token += `&skn=${encodeComponent(options.keyName)}`;
	return token;
}

export function dpsPassword(idScope: string, registrationId: string, key: string, expiry: number, hmac: HmacSha256): string {
	return sasToken({resourceUri: `${idScope}/registrations/${registrationId}`, key, expiry, keyName: "registration", hmac});
}

export function hubPassword(hubHost: string, deviceId: string, key: string, expiry: number, hmac: HmacSha256): string {
	return sasToken({resourceUri: `${hubHost}/devices/${deviceId}`, key, expiry, hmac});
}

/**
 * The device key for an enrollment group: base64(HMAC-SHA256(groupKey, registrationId)).
 * Derive it at the factory or with `npm run derive-key`; the group key itself should never ship.
 */
export function deriveDeviceKey(groupKey: string, registrationId: string, hmac: HmacSha256): string {
	return base64Encode(hmac(decodeKey(groupKey, "groupKey"), utf8Encode(registrationId)));
}

/** The signature of a SAS token as it appears in it (percent-encoded), or undefined. */
export function signatureOf(token: string): string | undefined {
	// As /sig=([^&\s]+)/.exec(token): the first "sig=" that has a value.
	for (let at = token.indexOf("sig="); at >= 0; at = token.indexOf("sig=", at + 1)) {
		let end = at + 4;
		while (end < token.length && token[end] !== "&" && !isSpace(token.charCodeAt(end))) end++;
		if (end > at + 4) return token.slice(at + 4, end);
	}
	return undefined;
}

/** Replaces the signature in anything that may hold a token, before it reaches a log. */
export function redact(text: string): string {
	// Without RegExp: src/chars.ts says why.
	return replaceValues(replaceValues(text, "sig=", "&\"'", "sig=<redacted>"), "SharedAccessKey=", ";\"'", "SharedAccessKey=<redacted>");
}
