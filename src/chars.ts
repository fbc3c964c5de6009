/*
 * Character checks without RegExp, for the preloaded modules. XS (Moddable SDK 8.2) crashes
 * (SIGSEGV in fx_RegExp_prototype_exec) when a RegExp made at build time (a literal in a
 * preloaded module, kept in flash) matches and the garbage collector runs while the match result
 * is built: reproduced on the simulator with a preloaded /^[A-Za-z0-9\-._:]{1,128}$/ tested in a
 * loop, with the ESP32 project's heap sizes as with small ones; the same literal in a module that
 * is not preloaded does not crash. So the library tests characters itself.
 */

/** An ASCII letter. */
export function isLetter(c: number): boolean {
	return (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
}

/** An ASCII digit. */
export function isDigit(c: number): boolean {
	return c >= 48 && c <= 57;
}

/** The index of the first character that is neither an ASCII letter or digit nor one of `extra`; -1 when there is none. */
export function firstNotIn(text: string, extra: string): number {
	for (let i = 0; i < text.length; i++) {
		const c = text.charCodeAt(i);
		if (!isLetter(c) && !isDigit(c) && extra.indexOf(text[i]) < 0) return i;
	}
	return -1;
}

/** A hexadecimal digit, either case. */
export function isHexDigit(c: number): boolean {
	return isDigit(c) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}

/** One or more ASCII digits and nothing else. */
export function isDigits(text: string): boolean {
	if (!text.length) return false;
	for (let i = 0; i < text.length; i++) if (!isDigit(text.charCodeAt(i))) return false;
	return true;
}

/** A DTDL name (a model id's segment, a component): a letter, then letters, digits and `_`, not ending in `_`. */
export function isDtdlName(text: string): boolean {
	return text.length > 0 && isLetter(text.charCodeAt(0)) && firstNotIn(text, "_") < 0 && text[text.length - 1] !== "_";
}

/** Whether `text` holds one of the characters of `set`. */
export function hasAnyOf(text: string, set: string): boolean {
	for (let i = 0; i < set.length; i++) if (text.indexOf(set[i]) >= 0) return true;
	return false;
}

/** Whitespace as RegExp \s has it, in the ASCII range and the no-break space. */
export function isSpace(c: number): boolean {
	return c === 32 || (c >= 9 && c <= 13) || c === 0xa0 || c === 0xfeff || c === 0x2028 || c === 0x2029 || (c >= 0x2000 && c <= 0x200a) || c === 0x1680 || c === 0x202f || c === 0x205f || c === 0x3000;
}

/**
 * Replaces, after each `marker`, the value up to the first of `stops` or whitespace with
 * `replacement` (what /marker[^stops\s]+/g would replace); a marker with no value is left.
 */
export function replaceValues(text: string, marker: string, stops: string, replacement: string): string {
	let out = "";
	let from = 0;
	for (let at = text.indexOf(marker); at >= 0; at = text.indexOf(marker, at)) {
		let end = at + marker.length;
		while (end < text.length && stops.indexOf(text[end]) < 0 && !isSpace(text.charCodeAt(end))) end++;
		if (end === at + marker.length) {
			at++;
			continue;
		}
		out += text.slice(from, at) + replacement;
		from = at = end;
	}
	return from ? out + text.slice(from) : text;
}

for (const f of [isLetter, isDigit, isHexDigit, firstNotIn, isDigits, isDtdlName, hasAnyOf, isSpace, replaceValues]) Object.freeze(f);
