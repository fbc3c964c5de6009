/*
 * Query strings in topics and property bags (`a=1&b=2`), shared by DPS and hub parsing, and the
 * percent-encoding Azure's clients use. Server text is untrusted: a malformed escape keeps its raw
 * text instead of throwing.
 */
import {hasAnyOf} from "./chars.js";

function decode(text: string): string {
	try {
		return decodeURIComponent(text);
	}
	catch {
		return text;
	}
}

/** `a=1&b=2` into pairs, decoded; a key without `=` gets "". Later duplicates win. */
export function parseQuery(query: string): Record<string, string> {
	const out: Record<string, string> = {};
	if (!query) return out;
	for (const pair of query.split("&")) {
		if (!pair) continue;
		const eq = pair.indexOf("=");
		const key = decode(eq < 0 ? pair : pair.slice(0, eq));
		if (!key) continue;
		out[key] = eq < 0 ? "" : decode(pair.slice(eq + 1));
	}
	return out;
}

/**
 * Percent-encoding as Microsoft's SDKs do it: encodeURIComponent plus `! ' ( ) *`, which it leaves
 * alone (azure-iot-common's encodeUriComponentStrict, the Embedded C SDK's URL encoder). A SAS
 * token signs its `sr` as sent, so for a device id such as `a(1)` only this encoding gives the
 * signature Azure's own clients give. Throws URIError on lone surrogates.
 */
export function encodeComponent(text: string): string {
	const encoded = encodeURIComponent(text);
	// Without RegExp: src/chars.ts says why.
	if (!hasAnyOf(encoded, STRICT)) return encoded;
	let out = "";
	for (let i = 0; i < encoded.length; i++) {
		const c = encoded[i];
		out += STRICT.indexOf(c) < 0 ? c : "%" + c.charCodeAt(0).toString(16).toUpperCase();
	}
	return out;
}

/** What encodeURIComponent leaves and Microsoft's SDKs encode. */
const STRICT = "!'()*";

export {decode as decodeComponent};

Object.freeze(parseQuery);
Object.freeze(encodeComponent);
Object.freeze(decode);
