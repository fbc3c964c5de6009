/*
 * UTF-8 and base64 without TextEncoder, Buffer or Uint8Array.fromBase64: XS has no global
 * TextEncoder and Node 20 has no fromBase64, and the core must behave the same on both.
 */

export function utf8Encode(text: string): Uint8Array {
	// Two passes, sizing first: on the device a temporary array of numbers would cost ~16 bytes per byte.
	let length = 0;
	for (let i = 0; i < text.length; i++) {
		const c = text.charCodeAt(i);
		if (c < 0x80) length += 1;
		else if (c < 0x800) length += 2;
		else if (c >= 0xd800 && c <= 0xdbff && isLow(text.charCodeAt(i + 1))) { length += 4; i++; }
		else length += 3;
	}
	const out = new Uint8Array(length);
	let o = 0;
	for (let i = 0; i < text.length; i++) {
		let c = text.charCodeAt(i);
		if (c >= 0xd800 && c <= 0xdbff && isLow(text.charCodeAt(i + 1))) {
			c = 0x10000 + ((c - 0xd800) << 10) + (text.charCodeAt(++i) - 0xdc00);
			out[o++] = 0xf0 | (c >> 18);
			out[o++] = 0x80 | ((c >> 12) & 63);
			out[o++] = 0x80 | ((c >> 6) & 63);
			out[o++] = 0x80 | (c & 63);
			continue;
		}
		if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // lone surrogate
		if (c < 0x80) out[o++] = c;
		else if (c < 0x800) {
			out[o++] = 0xc0 | (c >> 6);
			out[o++] = 0x80 | (c & 63);
		}
		else {
			out[o++] = 0xe0 | (c >> 12);
			out[o++] = 0x80 | ((c >> 6) & 63);
			out[o++] = 0x80 | (c & 63);
		}
	}
	return out;
}

function isLow(c: number): boolean {
	return c >= 0xdc00 && c <= 0xdfff;
}

type NativeDecode = (buffer: ArrayBufferLike, offset: number, length: number) => string;

/**
 * Whether `bytes` is well-formed UTF-8 (no overlong form, surrogate or code point above U+10FFFF):
 * exactly what utf8Decode takes without a replacement. Allocates nothing.
 */
function wellFormed(bytes: Uint8Array): boolean {
	for (let i = 0; i < bytes.length;) {
		const b = bytes[i];
		if (b < 0x80) { i++; continue; }
		let need: number, cp: number, min: number;
		if ((b & 0xe0) === 0xc0) { need = 1; cp = b & 0x1f; min = 0x80; }
		else if ((b & 0xf0) === 0xe0) { need = 2; cp = b & 0x0f; min = 0x800; }
		else if ((b & 0xf8) === 0xf0) { need = 3; cp = b & 0x07; min = 0x10000; }
		else return false;
		for (let j = 1; j <= need; j++) {
			const n = bytes[i + j];
			if (n === undefined || (n & 0xc0) !== 0x80) return false;
			cp = (cp << 6) | (n & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
		i += need + 1;
	}
	return true;
}

/**
 * Decodes UTF-8; invalid sequences become U+FFFD rather than throwing (server data is untrusted).
 * In XS, well-formed input goes to String.fromArrayBuffer, which makes the one string at once: the
 * decoder below builds it in pieces, and so holds about twice its size at the end (a 12 KB method
 * payload ran the ESP32-sized heap out of memory there; bench/limits.ts).
 */
export function utf8Decode(bytes: Uint8Array): string {
	// Not named `native`: xsc reads native(...) as its own syntax for a host function.
	const fromBuffer = (String as unknown as {fromArrayBuffer?: NativeDecode}).fromArrayBuffer;
	if (fromBuffer && bytes.buffer instanceof ArrayBuffer && wellFormed(bytes)) return fromBuffer(bytes.buffer, bytes.byteOffset, bytes.length);
	let s = "";
	let chunk: number[] = [];
	const flush = () => {
		s += String.fromCharCode.apply(null, chunk);
		chunk = [];
	};
	for (let i = 0; i < bytes.length;) {
		const b = bytes[i];
		let cp = 0xfffd, need = 0, min = 0;
		if (b < 0x80) { cp = b; need = 0; }
		else if ((b & 0xe0) === 0xc0) { cp = b & 0x1f; need = 1; min = 0x80; }
		else if ((b & 0xf0) === 0xe0) { cp = b & 0x0f; need = 2; min = 0x800; }
		else if ((b & 0xf8) === 0xf0) { cp = b & 0x07; need = 3; min = 0x10000; }
		else { i++; chunk.push(0xfffd); continue; }
		let j = 1;
		for (; j <= need; j++) {
			const n = bytes[i + j];
			if (n === undefined || (n & 0xc0) !== 0x80) break;
			cp = (cp << 6) | (n & 0x3f);
		}
		if (j <= need || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
			chunk.push(0xfffd);
			i += Math.max(1, j);
			continue;
		}
		i += need + 1;
		if (cp >= 0x10000) {
			cp -= 0x10000;
			chunk.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
		}
		else chunk.push(cp);
		// Small batches: in XS every argument of fromCharCode.apply takes a stack slot.
		if (chunk.length >= 64) flush();
	}
	flush();
	return s;
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

export function base64Encode(bytes: Uint8Array): string {
	let s = "";
	let i = 0;
	for (; i + 2 < bytes.length; i += 3) {
		const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
		s += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + ALPHABET[n & 63];
	}
	const rest = bytes.length - i;
	if (rest === 1) {
		const n = bytes[i] << 16;
		s += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + "==";
	}
	else if (rest === 2) {
		const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
		s += ALPHABET[n >> 18] + ALPHABET[(n >> 12) & 63] + ALPHABET[(n >> 6) & 63] + "=";
	}
	return s;
}

/** Strict standard base64 (padding required): returns undefined for anything else, so callers can say what is wrong. */
export function base64Decode(text: string): Uint8Array | undefined {
	if (text.length % 4 !== 0) return undefined;
	const out = new Uint8Array((text.length / 4) * 3);
	let o = 0;
	for (let i = 0; i < text.length; i += 4) {
		const v: number[] = [];
		let pad = 0;
		for (let j = 0; j < 4; j++) {
			const ch = text[i + j];
			if (ch === "=") {
				if (i + 4 !== text.length || j < 2) return undefined;
				pad++;
				v.push(0);
				continue;
			}
			if (pad) return undefined; // data after padding
			const x = ALPHABET.indexOf(ch);
			if (x < 0) return undefined;
			v.push(x);
		}
		const n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
		out[o++] = n >> 16;
		if (pad < 2) out[o++] = (n >> 8) & 255;
		if (pad < 1) out[o++] = n & 255;
	}
	return out.slice(0, o);
}

export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
	let length = 0;
	for (const p of parts) length += p.length;
	const out = new Uint8Array(length);
	let o = 0;
	for (const p of parts) {
		out.set(p, o);
		o += p.length;
	}
	return out;
}

/**
 * Strict unpadded base64url (RFC 4648 §5, as JWS uses it) of text[start, end): returns undefined
 * for "=", a character outside the alphabet, a length of 4n+1 or non-zero leftover bits, so callers
 * can say what is wrong. The range lets a caller decode a part of a JWS without copying it out.
 */
export function base64UrlDecode(text: string, start = 0, end = text.length): Uint8Array | undefined {
	const length = end - start;
	const rest = length % 4;
	if (rest === 1 || length < 0) return undefined;
	const out = new Uint8Array(((length - rest) / 4) * 3 + (rest ? rest - 1 : 0));
	let acc = 0, bits = 0, o = 0;
	for (let i = start; i < end; i++) {
		const v = base64UrlValue(text.charCodeAt(i));
		if (v < 0) return undefined;
		acc = ((acc << 6) | v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (acc >> bits) & 255;
		}
	}
	// The 2 or 4 bits left over must be zero, or two texts would decode to the same bytes.
	if (bits && (acc & ((1 << bits) - 1))) return undefined;
	return out;
}

function base64UrlValue(c: number): number {
	if (c >= 65 && c <= 90) return c - 65;       // A-Z
	if (c >= 97 && c <= 122) return c - 71;      // a-z
	if (c >= 48 && c <= 57) return c + 4;        // 0-9
	if (c === 45) return 62;                     // -
	if (c === 95) return 63;                     // _
	return -1;
}
