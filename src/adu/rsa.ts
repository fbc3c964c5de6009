/*
 * RS256 verification (RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017 §8.2.2) with native BigInt, so the
 * same code runs in XS and Node. The check rebuilds the whole expected encoded message
 * 00 01 FF..FF 00 || DigestInfo(SHA-256) || H and compares every byte, as mbedTLS does. Moddable's
 * pkcs1_5.js is not used: its emsaDecode skips over the DigestInfo OID without comparing it (that
 * code is commented out) and accepts any padding length, so a signature over another digest type
 * that happened to end in the same 32 bytes would pass there.
 */
import {sha256Of, type CreateSha256} from "./hash.js";

export interface RsaPublicKey {
	readonly n: bigint;
	readonly e: number;
	/** Length of the modulus in bytes: every signature must have exactly this length. */
	readonly size: number;
}

// Bounds on what this device agrees to check: ADU keys are RSA-3072; below 2048 bits is unsafe,
// above 4096 is only a way to make the device spend its time on exponentiation.
export const RSA_MIN_BITS = 2048;

/** base^e mod n; a host may lend a native one (hosts/moddable: the SDK's Modular, no JavaScript garbage per step). */
export type ModPow = (base: bigint, e: bigint, n: bigint) => bigint;
export const RSA_MAX_BITS = 4096;

const HEX: readonly string[] = Object.freeze(Array.from({length: 256}, (_, i) => (i < 16 ? "0" : "") + i.toString(16)));

/**
 * Big-endian bytes to a BigInt, 32 bytes (64 hex digits) at a time: the strings stay short, so
 * building them makes little garbage in XS, and there is no array of numbers and no recursion.
 */
export function bigIntFromBytes(bytes: Uint8Array): bigint {
	let x = 0n;
	let i = 0;
	let end = bytes.length % 32 || 32;
	while (i < bytes.length) {
		let hex = "0x";
		for (; i < end; i++) hex += HEX[bytes[i]];
		x = (x << 256n) | BigInt(hex);
		end += 32;
	}
	return x;
}

/** I2OSP: a BigInt to exactly `size` big-endian bytes; undefined when it does not fit. */
export function bytesFromBigInt(x: bigint, size: number): Uint8Array | undefined {
	if (x < 0n) return undefined;
	if (x === 0n) return new Uint8Array(size);
	const hex = x.toString(16);
	const digits = hex.length;
	if (digits > size * 2) return undefined;
	const out = new Uint8Array(size);
	// Walk from the last digit backwards so that an odd number of digits needs no padded copy.
	let o = size - 1;
	for (let i = digits - 1; i >= 0; i -= 2) {
		const lo = hexValue(hex.charCodeAt(i));
		const hi = i > 0 ? hexValue(hex.charCodeAt(i - 1)) : 0;
		out[o--] = (hi << 4) | lo;
	}
	return out;
}

function hexValue(c: number): number {
	return c <= 57 ? c - 48 : c - 87; // toString(16) gives 0-9 and a-f only
}

/**
 * A public key from the modulus and exponent bytes (leading zero bytes allowed), or the reason
 * it is refused.
 */
export function rsaPublicKey(nBytes: Uint8Array, eBytes: Uint8Array): RsaPublicKey | string {
	let start = 0;
	while (start < nBytes.length && nBytes[start] === 0) start++;
	const size = nBytes.length - start;
	if (size === 0) return "the modulus is empty";
	const top = nBytes[start];
	const bits = (size - 1) * 8 + (32 - Math.clz32(top));
	if (bits < RSA_MIN_BITS || bits > RSA_MAX_BITS)
		return `the modulus has ${bits} bits; ${RSA_MIN_BITS} to ${RSA_MAX_BITS} are accepted`;
	if ((nBytes[nBytes.length - 1] & 1) === 0) return "the modulus is even";
	let e = 0;
	let eStart = 0;
	while (eStart < eBytes.length && eBytes[eStart] === 0) eStart++;
	if (eBytes.length - eStart > 4) return "the exponent is longer than 4 bytes";
	for (let i = eStart; i < eBytes.length; i++) e = e * 256 + eBytes[i];
	if (e < 3 || e % 2 === 0) return `the exponent ${e} is not an odd number of at least 3`;
	return Object.freeze({n: bigIntFromBytes(start ? nBytes.subarray(start) : nBytes), e, size});
}

/** base^e mod n by left-to-right square-and-multiply: 16 squarings and one product for e = 65537. */
export function modPow(base: bigint, e: number, n: bigint): bigint {
	let bit = 31 - Math.clz32(e);
	let r = base % n;
	const b = r;
	while (--bit >= 0) {
		r = (r * r) % n;
		if ((e >>> bit) & 1) r = (r * b) % n;
	}
	return r;
}

// DigestInfo for SHA-256 with NULL parameters, RFC 8017 §9.2 note 1.
const DIGEST_INFO_SHA256 = Object.freeze([0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20]);

/** EMSA-PKCS1-v1_5 encoding of a SHA-256 digest into `size` bytes (RFC 8017 §9.2). */
export function pkcs1Sha256Encoding(digest: Uint8Array, size: number): Uint8Array {
	const t = DIGEST_INFO_SHA256.length + digest.length;
	const em = new Uint8Array(size);
	em[1] = 0x01;
	em.fill(0xff, 2, size - t - 1);
	em.set(DIGEST_INFO_SHA256, size - t);
	em.set(digest, size - digest.length);
	return em;
}

/**
 * Whether `signature` is a valid RS256 signature of `message` under `key`. The digest is taken
 * before the exponentiation, so that the message bytes are garbage while the big numbers live.
 */
export function rs256Verify(message: Uint8Array, signature: Uint8Array, key: RsaPublicKey, createSha256: CreateSha256, nativeModPow?: ModPow): boolean {
	if (signature.length !== key.size) return false;
	const digest = sha256Of(createSha256, message);
	const s = bigIntFromBytes(signature);
	if (s >= key.n) return false; // RSAVP1: the signature representative must be below n
	const m = nativeModPow ? nativeModPow(s, BigInt(key.e), key.n) : modPow(s, key.e, key.n);
	const em = typeof m === "bigint" && m >= 0n && m < key.n ? bytesFromBigInt(m, key.size) : undefined;
	if (!em) return false;
	const expected = pkcs1Sha256Encoding(digest, key.size);
	let diff = 0;
	for (let i = 0; i < expected.length; i++) diff |= em[i] ^ expected[i];
	return diff === 0;
}

Object.freeze(bigIntFromBytes);
Object.freeze(bytesFromBigInt);
Object.freeze(rsaPublicKey);
Object.freeze(modPow);
Object.freeze(pkcs1Sha256Encoding);
Object.freeze(rs256Verify);
