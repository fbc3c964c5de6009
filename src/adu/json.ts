/*
 * JSON in and out for Device Update. Reading: XS's JSON.parse recurses on the native stack and
 * aborts the VM when it runs out, so text from the network is first scanned for its nesting depth.
 * Writing: strings are escaped exactly as the Embedded C SDK's az_json_writer does (two-character
 * escapes for " \ \b \f \n \r \t, \u00XX in upper case for other control characters, nothing else),
 * so the payloads match Microsoft's byte for byte.
 */

export type JsonObject = {readonly [key: string]: unknown};

/** The deepest nesting of [ and { in `text`, ignoring brackets inside strings; -1 past `limit`. */
export function jsonDepth(text: string, limit: number): number {
	let depth = 0, deepest = 0, inString = false;
	for (let i = 0; i < text.length; i++) {
		const c = text.charCodeAt(i);
		if (inString) {
			if (c === 92) i++;              // backslash: skip the escaped character
			else if (c === 34) inString = false;
		}
		else if (c === 34) inString = true;
		else if (c === 123 || c === 91) {
			if (++depth > limit) return -1;
			if (depth > deepest) deepest = depth;
		}
		else if (c === 125 || c === 93) depth--;
	}
	return deepest;
}

/** Parses text that must hold a JSON object; a string saying why not otherwise. */
export function parseJsonObject(text: string, maxDepth: number): JsonObject | string {
	if (jsonDepth(text, maxDepth) < 0) return `is nested deeper than ${maxDepth} levels`;
	let value: unknown;
	try {
		value = JSON.parse(text);
	}
	catch {
		return "is not valid JSON";
	}
	return isObject(value) ? value : "is not a JSON object";
}

export function isObject(value: unknown): value is JsonObject {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Own property only: a key such as "__proto__" or "constructor" in server data must not reach the prototype. */
export function field(object: JsonObject, key: string): unknown {
	return Object.prototype.hasOwnProperty.call(object, key) ? object[key] : undefined;
}

const HEX_UPPER = "0123456789ABCDEF";

/** A JSON string literal, escaped as az_json_writer_append_string does. */
export function jsonString(value: string): string {
	let out = "\"";
	let from = 0;
	for (let i = 0; i < value.length; i++) {
		const c = value.charCodeAt(i);
		if (c >= 0x20 && c !== 34 && c !== 92) continue;
		out += value.slice(from, i);
		from = i + 1;
		if (c === 34) out += "\\\"";
		else if (c === 92) out += "\\\\";
		else if (c === 8) out += "\\b";
		else if (c === 12) out += "\\f";
		else if (c === 10) out += "\\n";
		else if (c === 13) out += "\\r";
		else if (c === 9) out += "\\t";
		else out += "\\u00" + HEX_UPPER[c >> 4] + HEX_UPPER[c & 15];
	}
	return out + value.slice(from) + "\"";
}

Object.freeze(jsonDepth);
Object.freeze(parseJsonObject);
Object.freeze(isObject);
Object.freeze(field);
Object.freeze(jsonString);
