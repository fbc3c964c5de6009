/*
 * Shared access signature checks as DPS and IoT Hub make them. Written independently of src/sas.ts
 * on purpose: the emulator examines the device core, so it must not share its mistakes.
 */
import * as crypto from "node:crypto";
import {noteSecret} from "./secret-log.js";

export interface ParsedSas {
	/** `sr` exactly as sent: the signature covers this string, encoded or not. */
	sr: string;
	/** `sr` URL-decoded: the resource the token grants. */
	resource: string;
	/** Base64 signature (URL-decoded). */
	sig: string;
	se: number;
	skn?: string;
}

export type SasParseResult = {ok: true; sas: ParsedSas} | {ok: false; reason: string};

const PREFIX = "SharedAccessSignature ";

function decode(value: string): string | undefined {
	try {
		return decodeURIComponent(value);
	}
	catch {
		return undefined;
	}
}

export function parseSas(password: string | undefined): SasParseResult {
	if (!password) return {ok: false, reason: "no password (a SAS token is required)"};
	if (!password.startsWith(PREFIX)) return {ok: false, reason: "the password is not a SharedAccessSignature token"};
	const fields = new Map<string, string>();
	for (const part of password.slice(PREFIX.length).split("&")) {
		const eq = part.indexOf("=");
		if (eq <= 0) return {ok: false, reason: "malformed SAS token field"};
		const name = part.slice(0, eq);
		if (fields.has(name)) return {ok: false, reason: `SAS field ${name} appears twice`};
		fields.set(name, part.slice(eq + 1));
	}
	const sr = fields.get("sr");
	const sigRaw = fields.get("sig");
	const seRaw = fields.get("se");
	if (!sr || !sigRaw || !seRaw) return {ok: false, reason: "the SAS token lacks sr, sig or se"};
	for (const name of fields.keys()) {
		if (!["sr", "sig", "se", "skn"].includes(name)) return {ok: false, reason: `unexpected SAS field ${name}`};
	}
	const resource = decode(sr);
	const sig = decode(sigRaw);
	if (resource === undefined || sig === undefined) return {ok: false, reason: "bad URL encoding in the SAS token"};
	if (!/^\d+$/.test(seRaw)) return {ok: false, reason: "se is not a number of seconds"};
	const sknRaw = fields.get("skn");
	const skn = sknRaw === undefined ? undefined : decode(sknRaw);
	return {ok: true, sas: {sr, resource, sig, se: Number(seRaw), skn}};
}

export function signature(keyBase64: string, sr: string, se: number): string {
	return crypto.createHmac("sha256", Buffer.from(keyBase64, "base64")).update(`${sr}\n${se}`, "utf8").digest("base64");
}

/** Constant-time check that the token was signed with `keyBase64` over its own `sr` and `se`. */
export function verifySas(sas: ParsedSas, keyBase64: string): boolean {
	const expected = Buffer.from(signature(keyBase64, sas.sr, sas.se), "base64");
	const given = Buffer.from(sas.sig, "base64");
	if (!/^[A-Za-z0-9+/]+={0,2}$/.test(sas.sig) || given.length !== expected.length) return false;
	const ok = crypto.timingSafeEqual(expected, given);
	if (ok) noteSecret("signature", sas.sig, keyBase64);
	return ok;
}

/** The device key of a group enrollment member: HMAC-SHA256(groupKey, registrationId), base64. */
export function deriveDeviceKey(groupKeyBase64: string, registrationId: string): string {
	const key = crypto.createHmac("sha256", Buffer.from(groupKeyBase64, "base64")).update(registrationId, "utf8").digest("base64");
	noteSecret("derivedKey", key, groupKeyBase64);
	return key;
}

export function newSymmetricKey(): string {
	// Azure generates 64-byte keys.
	return crypto.randomBytes(64).toString("base64");
}

export function isBase64Key(key: unknown): key is string {
	return typeof key === "string" && key.length > 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(key) && key.length % 4 === 0;
}
