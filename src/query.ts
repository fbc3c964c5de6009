/*
 * Query strings in topics and property bags (`a=1&b=2`), shared by DPS and hub parsing. Server
 * text is untrusted: a malformed escape keeps its raw text instead of throwing.
 */

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

export {decode as decodeComponent};
