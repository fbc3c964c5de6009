/*
 * Topic and property-bag handling for the emulator, independent of the device core's code.
 */

export interface PropertyBag {
	/** Application properties. */
	properties: Record<string, string>;
	/** `$.`-prefixed keys (`$.mid`, `$.ct`, ...), key kept with its `$.` prefix. */
	systemProperties: Record<string, string>;
}

function decode(value: string): string {
	try {
		return decodeURIComponent(value);
	}
	catch {
		throw new Error(`bad URL encoding in "${value}"`);
	}
}

/**
 * Parses `k=v&k2=v2` with URL-encoded keys and values. Keys are decoded before classification:
 * Microsoft's Node SDK encodes `$.ct` as `%24.ct`.
 */
export function parsePropertyBag(bag: string): PropertyBag {
	const result: PropertyBag = {properties: {}, systemProperties: {}};
	if (!bag) return result;
	for (const pair of bag.split("&")) {
		if (!pair) continue;
		const eq = pair.indexOf("=");
		const key = decode(eq < 0 ? pair : pair.slice(0, eq));
		const value = eq < 0 ? "" : decode(pair.slice(eq + 1));
		if (!key || key === "__proto__") throw new Error(`bad property name "${key}"`);
		if (key.startsWith("$.")) result.systemProperties[key] = value;
		else result.properties[key] = value;
	}
	return result;
}

/** Encodes like IoT Hub does on device-bound topics: `$` becomes `%24`. */
export function encodeBagComponent(value: string): string {
	return encodeURIComponent(value).replace(/[!'()*]/g, c => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

export function buildPropertyBag(entries: [string, string][]): string {
	return entries.map(([k, v]) => `${encodeBagComponent(k)}=${encodeBagComponent(v)}`).join("&");
}

/** Parses the query after `?` in `$iothub/...` and `$dps/...` topics; undefined when malformed. */
export function parseQuery(query: string): Map<string, string> | undefined {
	const result = new Map<string, string>();
	if (!query) return result;
	for (const pair of query.split("&")) {
		if (!pair) continue;
		const eq = pair.indexOf("=");
		if (eq <= 0) return undefined;
		try {
			result.set(decodeURIComponent(pair.slice(0, eq)), decodeURIComponent(pair.slice(eq + 1)));
		}
		catch {
			return undefined;
		}
	}
	return result;
}

/** Splits `prefix?query` where the topic must start with `prefix` exactly. */
export function matchRequest(topic: string, prefix: string): Map<string, string> | undefined {
	if (!topic.startsWith(prefix + "?")) return undefined;
	return parseQuery(topic.slice(prefix.length + 1));
}

/** MQTT topic filter matching (`+` one level, `#` the rest). */
export function topicMatches(filter: string, topic: string): boolean {
	const f = filter.split("/");
	const t = topic.split("/");
	for (let i = 0; i < f.length; i++) {
		if (f[i] === "#") return true;
		if (i >= t.length) return false;
		if (f[i] !== "+" && f[i] !== t[i]) return false;
	}
	return f.length === t.length;
}

/** JSON merge patch (RFC 7386), as the twin applies reported and desired patches. */
export function mergePatch(target: Record<string, unknown>, patch: Record<string, unknown>): void {
	for (const [key, value] of Object.entries(patch)) {
		if (key === "__proto__") continue;
		if (value === null) delete target[key];
		else if (typeof value === "object" && !Array.isArray(value)) {
			const current = target[key];
			const next: Record<string, unknown> = current && typeof current === "object" && !Array.isArray(current) ? current as Record<string, unknown> : {};
			mergePatch(next, value as Record<string, unknown>);
			target[key] = next;
		}
		else target[key] = value;
	}
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * IoT Hub's twin rules: keys without `.`, `$`, space or control characters, at most 1 KB long,
 * nesting at most 10 levels. Returns the problem, or undefined when the document is acceptable.
 */
export function twinDocumentProblem(value: unknown, depth = 1): string | undefined {
	if (!isPlainObject(value)) return undefined;
	if (depth > 10) return "nested deeper than 10 levels";
	for (const [key, child] of Object.entries(value)) {
		if (!key || /[.$ \u0000-\u001f\u007f-\u009f]/.test(key)) return `property name "${key}" contains ".", "$", a space or a control character`;
		if (Buffer.byteLength(key) > 1024) return "a property name is longer than 1 KB";
		const problem = twinDocumentProblem(child, depth + 1);
		if (problem) return problem;
	}
	return undefined;
}
