/*
 * The page's calls to the JSON API (same origin: the browser adds Origin, the server checks it) and
 * small formatting helpers.
 */

export interface CallResult<T = unknown> {
	ok: boolean;
	status: number;
	body: T;
	/** The API's error message, when not ok. */
	error?: string;
}

export async function call<T = unknown>(method: string, path: string, body?: unknown): Promise<CallResult<T>> {
	let response: Response;
	try {
		response = await fetch(path, {
			method,
			headers: body === undefined ? {} : {"content-type": "application/json"},
			body: body === undefined ? undefined : JSON.stringify(body),
			credentials: "same-origin",
			cache: "no-store",
		});
	}
	catch (e) {
		return {ok: false, status: 0, body: undefined as T, error: `the emulator did not answer (${(e as Error).message})`};
	}
	const text = await response.text();
	let parsed: unknown = undefined;
	if (text) {
		try {
			parsed = JSON.parse(text);
		}
		catch {
			parsed = text;
		}
	}
	const error = response.ok ? undefined : (parsed as {error?: string} | undefined)?.error ?? `HTTP ${response.status}`;
	return {ok: response.ok, status: response.status, body: parsed as T, error};
}

export const enc = encodeURIComponent;

/** "3 s ago", "2 min ago", … */
export function ago(iso: string | undefined, now: number): string {
	if (!iso) return "never";
	const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
	if (s < 60) return `${s} s ago`;
	if (s < 3600) return `${Math.floor(s / 60)} min ago`;
	if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
	return `${Math.floor(s / 86400)} d ago`;
}

export function clock(iso: string): string {
	const d = new Date(iso);
	return `${d.toLocaleTimeString([], {hour12: false})}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}

export function pretty(value: unknown): string {
	return value === undefined ? "" : JSON.stringify(value, null, 2);
}

/** Parses editor text as JSON: the value, or the problem to show. `empty` is what an empty editor means. */
export function parseJson(text: string, options: {objectOnly?: boolean; empty?: unknown} = {}): {ok: true; value: unknown} | {ok: false; problem: string} {
	if (!text.trim()) {
		if ("empty" in options) return {ok: true, value: options.empty};
		return {ok: false, problem: "empty: type a JSON value"};
	}
	let value: unknown;
	try {
		value = JSON.parse(text);
	}
	catch (e) {
		return {ok: false, problem: (e as Error).message.replace(/^JSON\.parse: /, "")};
	}
	if (options.objectOnly && (typeof value !== "object" || value === null || Array.isArray(value))) return {ok: false, problem: "must be a JSON object, like {\"name\": value}"};
	return {ok: true, value};
}
