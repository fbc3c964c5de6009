/*
 * X.509 client identity, checked before any connection: a small DER reader for what the device
 * needs from its certificates (names, validity, public key) and its private key (algorithm, RSA
 * modulus), and checkClientIdentity(), which turns every mistake into a configError that names the
 * problem and the fix instead of a reset halfway through a TLS handshake.
 *
 * Why RSA only: the SDK's TLS signs CertificateVerify with RSA PKCS#1 v1.5 and parses the key as
 * an RSA PKCS#8 key whatever its algorithm says (modules/crypt/ssl/ssl_handshake.js certificateVerify,
 * modules/crypt/etc/pkcs8.js). Intermediates may be ECC: only the server checks their signatures.
 *
 * Pure and I/O-free (it runs in XS on the device and under Node in the tests). Every length read
 * from the DER is checked against the buffer: hostile input yields a configError and nothing else.
 */
import {AzureIoTError, configError} from "./errors.js";
import {utf8Decode} from "./encoding.js";
import {firstNotIn, isDigit, isDigits, isLetter, isSpace} from "./chars.js";

/** The key algorithms told apart; "other" carries its OID in `keyAlgorithmOid`. */
export type KeyAlgorithm = "rsa" | "ec" | "other";

export interface CertificateInfo {
	/** The subject's commonName, if it has one (the first, if several). */
	subjectCN?: string;
	issuerCN?: string;
	/** The subject and issuer Names as DER, for comparing one certificate's issuer with the next one's subject. */
	subject: Uint8Array;
	issuer: Uint8Array;
	/** Validity, in milliseconds since the epoch. */
	notBefore: number;
	notAfter: number;
	/** basicConstraints cA. */
	isCA: boolean;
	keyAlgorithm: KeyAlgorithm;
	keyAlgorithmOid: string;
	/** For ECC keys, the named curve ("P-256", or its OID). */
	curve?: string;
	/** For RSA keys, the modulus and public exponent (big-endian, no leading zero) and the modulus size. */
	rsaModulus?: Uint8Array;
	rsaExponent?: Uint8Array;
	keyBits?: number;
}

export interface PrivateKeyInfo {
	algorithm: KeyAlgorithm;
	algorithmOid: string;
	curve?: string;
	rsaModulus?: Uint8Array;
	rsaExponent?: Uint8Array;
	keyBits?: number;
}

export interface ClientIdentityOptions {
	/** The leaf first, then any intermediates, each DER. */
	certificates: readonly Uint8Array[];
	/** The leaf's private key: unencrypted PKCS#8 DER. */
	key: Uint8Array;
	/** The device's clock, in milliseconds since the epoch. */
	now: number;
	/** When given, the leaf's CN must be this (DPS takes the registration id from the CN). */
	registrationId?: string;
	/** The configuration's names for the two values, used in messages. */
	fields?: {certificates?: string; key?: string};
}

export interface ClientIdentity {
	/** The leaf's CN: the registration id DPS sees (and the device id a group enrollment gives). */
	commonName: string;
	certificates: readonly Uint8Array[];
	key: Uint8Array;
	leaf: CertificateInfo;
	/** Every certificate given, leaf first. */
	chain: readonly CertificateInfo[];
	/** When the whole chain is valid: the latest notBefore and the earliest notAfter. */
	notBefore: number;
	notAfter: number;
	keyBits: number;
}

/**
 * The most certificate bytes (the sum of the DER sizes) the device sends. The SDK's TLS writes the
 * Certificate message, then the rest of the client's flight, in one go; on the ESP32 each write must
 * fit lwIP's free send buffer (CONFIG_LWIP_TCP_SND_BUF_DEFAULT 8192, modules/network/socket/lwip/modSocket.c
 * "can't write all data"). 6 KB leaves room for the rest of the flight with a 4096-bit key.
 */
export const MAX_CHAIN_BYTES = 6144;

const OID_RSA = "1.2.840.113549.1.1.1";
const OID_EC = "1.2.840.10045.2.1";
const OID_CN = "2.5.4.3";
const OID_BASIC_CONSTRAINTS = "2.5.29.19";
// Frozen, as every table of a preloaded module: then it stays in flash instead of being copied to the heap.
const KEY_NAMES: Readonly<Record<string, string>> = Object.freeze({
	"1.2.840.113549.1.1.10": "RSASSA-PSS",
	"1.3.101.112": "Ed25519",
	"1.3.101.113": "Ed448",
	"1.2.840.10040.4.1": "DSA",
	"1.2.840.10046.2.1": "Diffie-Hellman",
});
const CURVES: Readonly<Record<string, string>> = Object.freeze({
	"1.2.840.10045.3.1.7": "P-256",
	"1.3.132.0.34": "P-384",
	"1.3.132.0.35": "P-521",
});

const SEQUENCE = 0x30, SET = 0x31, INTEGER = 0x02, BIT_STRING = 0x03, OCTET_STRING = 0x04, OID = 0x06, BOOLEAN = 0x01;
const UTC_TIME = 0x17, GENERALIZED_TIME = 0x18;

const CONVERT_CERT = "openssl x509 -in cert.pem -outform der -out cert.der";
const CONVERT_KEY = "openssl pkcs8 -topk8 -nocrypt -in key.pem -outform der -out key.der";
const ISSUE_RSA = "Issue the device an RSA-2048 key and certificate instead (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out key.pem, then a certificate for it)";

/** A malformation found by the reader: turned into a configError by the public functions. */
class Malformed {
	constructor(readonly at: number, readonly what: string) {}
}

interface Tlv {
	tag: number;
	/** Offset of the tag byte. */
	header: number;
	/** Content: [start, end). */
	start: number;
	end: number;
}

function readTlv(bytes: Uint8Array, offset: number, limit: number, what: string): Tlv {
	if (offset >= limit) throw new Malformed(offset, `${what} is missing`);
	const tag = bytes[offset];
	if ((tag & 0x1f) === 0x1f) throw new Malformed(offset, `${what} has a multi-byte tag`);
	let p = offset + 1;
	if (p >= limit) throw new Malformed(p, `${what} has no length`);
	let length = bytes[p++];
	if (length & 0x80) {
		const count = length & 0x7f;
		if (count === 0) throw new Malformed(p - 1, `${what} has an indefinite length (BER, not DER)`);
		if (count > 4) throw new Malformed(p - 1, `${what} has a ${count}-byte length`);
		length = 0;
		for (let i = 0; i < count; i++) {
			if (p >= limit) throw new Malformed(p, `${what}'s length is cut off`);
			length = length * 256 + bytes[p++];
		}
	}
	if (length > limit - p) throw new Malformed(offset, `${what} claims ${length} bytes but only ${limit - p} follow`);
	return {tag, header: offset, start: p, end: p + length};
}

function expect(bytes: Uint8Array, offset: number, limit: number, tag: number, what: string): Tlv {
	if (offset < limit && bytes[offset] !== tag) throw new Malformed(offset, `${what} has tag 0x${hex2(bytes[offset])}, not 0x${hex2(tag)}`);
	return readTlv(bytes, offset, limit, what);
}

/** Bytes after the outer SEQUENCE: a second DER object (a chain in one file?) or garbage. */
function trailing(bytes: Uint8Array, end: number, what: string): Malformed {
	let another = false;
	try {
		another = expect(bytes, end, bytes.length, SEQUENCE, what).end <= bytes.length;
	}
	catch {
		// not DER either
	}
	return new Malformed(end, `${bytes.length - end} bytes follow ${what}${another ? " (several in one DER file?)" : ""}`);
}

function children(bytes: Uint8Array, parent: Tlv, what: string): Tlv[] {
	const out: Tlv[] = [];
	for (let p = parent.start; p < parent.end;) {
		const child = readTlv(bytes, p, parent.end, `${what} element ${out.length + 1}`);
		out.push(child);
		p = child.end;
	}
	return out;
}

function child(list: readonly Tlv[], index: number, tag: number, what: string, at: number): Tlv {
	const tlv = list[index];
	if (!tlv) throw new Malformed(at, `${what} is missing`);
	if (tlv.tag !== tag) throw new Malformed(tlv.header, `${what} has tag 0x${hex2(tlv.tag)}, not 0x${hex2(tag)}`);
	return tlv;
}

function hex2(n: number): string {
	return (n < 16 ? "0" : "") + n.toString(16);
}

function readOid(bytes: Uint8Array, tlv: Tlv): string {
	if (tlv.end === tlv.start) throw new Malformed(tlv.header, "an object identifier is empty");
	const arcs: number[] = [];
	let value = 0;
	for (let p = tlv.start; p < tlv.end; p++) {
		const b = bytes[p];
		if (value > 0x1fffffffffff) throw new Malformed(p, "an object identifier arc is too large");
		value = value * 128 + (b & 0x7f);
		if (b & 0x80) {
			if (p === tlv.end - 1) throw new Malformed(p, "an object identifier is cut off");
			continue;
		}
		if (!arcs.length) arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
		else arcs.push(value);
		value = 0;
	}
	return arcs.join(".");
}

/** A non-negative INTEGER's magnitude, without the sign byte. */
function readUnsigned(bytes: Uint8Array, tlv: Tlv, what: string): Uint8Array {
	if (tlv.tag !== INTEGER) throw new Malformed(tlv.header, `${what} is not an INTEGER`);
	if (tlv.end === tlv.start) throw new Malformed(tlv.header, `${what} is empty`);
	if (bytes[tlv.start] & 0x80) throw new Malformed(tlv.start, `${what} is negative`);
	let p = tlv.start;
	while (p < tlv.end - 1 && bytes[p] === 0) p++;
	return bytes.slice(p, tlv.end);
}

function bitLength(magnitude: Uint8Array): number {
	let first = magnitude[0] ?? 0, bits = 0;
	while (first) {
		bits++;
		first >>= 1;
	}
	return (magnitude.length - 1) * 8 + bits;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
	if (a.length !== b.length) return false;
	for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
	return true;
}

function decodeString(bytes: Uint8Array, tlv: Tlv): string {
	const content = bytes.subarray(tlv.start, tlv.end);
	const codes: number[] = [];
	switch (tlv.tag) {
		case 0x0c: // UTF8String
			return utf8Decode(content);
		case 0x1e: // BMPString: UCS-2, big-endian
			for (let i = 0; i + 1 < content.length; i += 2) codes.push((content[i] << 8) | content[i + 1]);
			break;
		case 0x1c: // UniversalString: UCS-4, big-endian
			for (let i = 0; i + 3 < content.length; i += 4) {
				const cp = ((content[i] << 24) | (content[i + 1] << 16) | (content[i + 2] << 8) | content[i + 3]) >>> 0;
				codes.push(cp > 0xffff ? 0xfffd : cp);
			}
			break;
		default: // PrintableString, IA5String, TeletexString, VisibleString: one byte a character
			for (let i = 0; i < content.length; i++) codes.push(content[i]);
	}
	let s = "";
	// Small batches: in XS every argument of fromCharCode.apply takes a stack slot.
	for (let i = 0; i < codes.length; i += 64) s += String.fromCharCode.apply(null, codes.slice(i, i + 64));
	return s;
}

/** Name ::= SEQUENCE OF SET OF {type OID, value}: the attributes as [oid, value] in order. */
function readName(bytes: Uint8Array, name: Tlv, what: string): [string, string][] {
	const attributes: [string, string][] = [];
	for (const rdn of children(bytes, name, what)) {
		if (rdn.tag !== SET) throw new Malformed(rdn.header, `${what} has an element that is not a SET`);
		for (const pair of children(bytes, rdn, what)) {
			if (pair.tag !== SEQUENCE) throw new Malformed(pair.header, `${what} has an attribute that is not a SEQUENCE`);
			const parts = children(bytes, pair, `${what} attribute`);
			const type = child(parts, 0, OID, `${what} attribute type`, pair.start);
			if (!parts[1]) throw new Malformed(pair.start, `${what} attribute has no value`);
			attributes.push([readOid(bytes, type), decodeString(bytes, parts[1])]);
		}
	}
	return attributes;
}

function commonName(attributes: readonly [string, string][]): string | undefined {
	return attributes.find(([oid]) => oid === OID_CN)?.[1];
}

/** RFC 5280 7.1 in short: the same attributes, values compared without case and extra spaces. */
function sameName(a: readonly [string, string][], b: readonly [string, string][]): boolean {
	const norm = (v: string) => collapseSpaces(v.trim()).toLowerCase();
	return a.length === b.length && a.every(([oid, value], i) => oid === b[i][0] && norm(value) === norm(b[i][1]));
}

/** Each run of whitespace as one space (what .replace(/\s+/g, " ") does; without RegExp: src/chars.ts says why). */
function collapseSpaces(text: string): string {
	let out = "";
	for (let i = 0; i < text.length; i++) {
		if (!isSpace(text.charCodeAt(i))) out += text[i];
		else if (!out.endsWith(" ") || !isSpace(text.charCodeAt(i - 1))) out += " ";
	}
	return out;
}

/**
 * The fields of a UTCTime (YYMMDDHHMM[SS]Z) or GeneralizedTime (YYYYMMDDHHMMSS[.f+]Z), as strings
 * (the seconds of a UTCTime undefined when left out), or undefined when it is neither.
 */
function timeFields(text: string, generalized: boolean): (string | undefined)[] | undefined {
	if (!text.endsWith("Z")) return undefined;
	let body = text.slice(0, -1);
	if (generalized) {
		const dot = body.indexOf(".");
		if (dot >= 0) {
			if (!isDigits(body.slice(dot + 1))) return undefined;
			body = body.slice(0, dot);
		}
		if (body.length !== 14 || !isDigits(body)) return undefined;
		return [body.slice(0, 4), body.slice(4, 6), body.slice(6, 8), body.slice(8, 10), body.slice(10, 12), body.slice(12, 14)];
	}
	if ((body.length !== 10 && body.length !== 12) || !isDigits(body)) return undefined;
	return [body.slice(0, 2), body.slice(2, 4), body.slice(4, 6), body.slice(6, 8), body.slice(8, 10), body.length === 12 ? body.slice(10, 12) : undefined];
}

function readTime(bytes: Uint8Array, tlv: Tlv, what: string): number {
	if (tlv.tag !== UTC_TIME && tlv.tag !== GENERALIZED_TIME) throw new Malformed(tlv.header, `${what} is not a UTCTime or GeneralizedTime`);
	const text = decodeString(bytes, tlv);
	const fields = timeFields(text, tlv.tag === GENERALIZED_TIME);
	const match = fields && [text, ...fields];
	if (!match) throw new Malformed(tlv.start, `${what} ${JSON.stringify(text.slice(0, 24))} is not a time in UTC (YYMMDDHHMMSSZ)`);
	let year = Number(match[1]);
	// RFC 5280 4.1.2.5.1: a two-digit year YY >= 50 is 19YY, otherwise 20YY.
	if (tlv.tag === UTC_TIME) year += year >= 50 ? 1900 : 2000;
	const month = Number(match[2]), day = Number(match[3]), hour = Number(match[4]), minute = Number(match[5]), second = Number(match[6] ?? 0);
	if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
		throw new Malformed(tlv.start, `${what} ${JSON.stringify(text)} is not a valid date`);
	const date = new Date(0);
	date.setUTCFullYear(year, month - 1, day);
	date.setUTCHours(hour, minute, second, 0);
	return date.getTime();
}

/** SubjectPublicKeyInfo or PrivateKeyInfo's AlgorithmIdentifier: the OID and, for ECC, the curve. */
function readAlgorithm(bytes: Uint8Array, tlv: Tlv, what: string): {oid: string; algorithm: KeyAlgorithm; curve?: string} {
	if (tlv.tag !== SEQUENCE) throw new Malformed(tlv.header, `${what} is not a SEQUENCE`);
	const parts = children(bytes, tlv, what);
	const oid = readOid(bytes, child(parts, 0, OID, `${what} OID`, tlv.start));
	const algorithm: KeyAlgorithm = oid === OID_RSA ? "rsa" : oid === OID_EC ? "ec" : "other";
	let curve: string | undefined;
	if (algorithm === "ec" && parts[1]?.tag === OID) {
		const curveOid = readOid(bytes, parts[1]);
		curve = CURVES[curveOid] ?? curveOid;
	}
	return {oid, algorithm, curve};
}

/** RSAPublicKey ::= SEQUENCE {modulus, publicExponent}. */
function readRsaPublicKey(bytes: Uint8Array, bits: Tlv): {modulus: Uint8Array; exponent: Uint8Array} {
	if (bits.end === bits.start || bytes[bits.start] !== 0) throw new Malformed(bits.start, "the public key BIT STRING has unused bits");
	const key = expect(bytes, bits.start + 1, bits.end, SEQUENCE, "the RSA public key");
	const parts = children(bytes, key, "the RSA public key");
	return {
		modulus: readUnsigned(bytes, child(parts, 0, INTEGER, "the RSA modulus", key.start), "the RSA modulus"),
		exponent: readUnsigned(bytes, child(parts, 1, INTEGER, "the RSA public exponent", key.start), "the RSA public exponent"),
	};
}

function readBasicConstraintsCA(bytes: Uint8Array, extensions: Tlv): boolean {
	const list = expect(bytes, extensions.start, extensions.end, SEQUENCE, "the extensions");
	for (const extension of children(bytes, list, "the extensions")) {
		if (extension.tag !== SEQUENCE) throw new Malformed(extension.header, "an extension is not a SEQUENCE");
		const parts = children(bytes, extension, "an extension");
		if (readOid(bytes, child(parts, 0, OID, "an extension's OID", extension.start)) !== OID_BASIC_CONSTRAINTS) continue;
		const value = parts[parts.length - 1];
		if (!value || value.tag !== OCTET_STRING) throw new Malformed(extension.start, "basicConstraints has no value");
		const constraints = expect(bytes, value.start, value.end, SEQUENCE, "basicConstraints");
		const inner = children(bytes, constraints, "basicConstraints");
		return inner[0]?.tag === BOOLEAN && inner[0].end > inner[0].start && bytes[inner[0].start] !== 0;
	}
	return false;
}

interface ParsedCertificate extends CertificateInfo {
	subjectAttributes: [string, string][];
	issuerAttributes: [string, string][];
}

function readCertificate(bytes: Uint8Array): ParsedCertificate {
	const certificate = expect(bytes, 0, bytes.length, SEQUENCE, "the certificate");
	if (certificate.end !== bytes.length) throw trailing(bytes, certificate.end, "the certificate");
	const outer = children(bytes, certificate, "the certificate");
	const tbs = child(outer, 0, SEQUENCE, "tbsCertificate", certificate.start);
	child(outer, 1, SEQUENCE, "the signature algorithm", certificate.start);
	child(outer, 2, BIT_STRING, "the signature", certificate.start);
	const fields = children(bytes, tbs, "tbsCertificate");
	let i = fields[0]?.tag === 0xa0 ? 1 : 0; // [0] EXPLICIT version
	child(fields, i++, INTEGER, "the serial number", tbs.start);
	child(fields, i++, SEQUENCE, "the signature algorithm", tbs.start);
	const issuer = child(fields, i++, SEQUENCE, "the issuer", tbs.start);
	const validity = child(fields, i++, SEQUENCE, "the validity", tbs.start);
	const subject = child(fields, i++, SEQUENCE, "the subject", tbs.start);
	const spki = child(fields, i++, SEQUENCE, "the subjectPublicKeyInfo", tbs.start);
	const extensions = fields.slice(i).find(f => f.tag === 0xa3);

	const times = children(bytes, validity, "the validity");
	if (times.length !== 2) throw new Malformed(validity.start, "the validity does not hold two times");
	const keyParts = children(bytes, spki, "the subjectPublicKeyInfo");
	if (!keyParts[0]) throw new Malformed(spki.start, "the subjectPublicKeyInfo has no algorithm");
	const algorithm = readAlgorithm(bytes, keyParts[0], "the public key algorithm");
	const bits = child(keyParts, 1, BIT_STRING, "the public key", spki.start);
	const subjectAttributes = readName(bytes, subject, "the subject");
	const issuerAttributes = readName(bytes, issuer, "the issuer");
	const info: ParsedCertificate = {
		subjectCN: commonName(subjectAttributes),
		issuerCN: commonName(issuerAttributes),
		subject: bytes.slice(subject.header, subject.end),
		issuer: bytes.slice(issuer.header, issuer.end),
		notBefore: readTime(bytes, times[0], "notBefore"),
		notAfter: readTime(bytes, times[1], "notAfter"),
		isCA: extensions ? readBasicConstraintsCA(bytes, extensions) : false,
		keyAlgorithm: algorithm.algorithm,
		keyAlgorithmOid: algorithm.oid,
		subjectAttributes,
		issuerAttributes,
	};
	if (algorithm.curve) info.curve = algorithm.curve;
	if (algorithm.algorithm === "rsa") {
		const key = readRsaPublicKey(bytes, bits);
		info.rsaModulus = key.modulus;
		info.rsaExponent = key.exponent;
		info.keyBits = bitLength(key.modulus);
	}
	return info;
}

/** What a key file holds, told apart by its shape, so that the message can say what was given. */
function readPrivateKey(bytes: Uint8Array, field: string): PrivateKeyInfo {
	const top = expect(bytes, 0, bytes.length, SEQUENCE, "the key");
	if (top.end !== bytes.length) throw trailing(bytes, top.end, "the key");
	const parts = children(bytes, top, "the key");
	const [first, second] = parts;
	if (first?.tag === SEQUENCE && second?.tag === OCTET_STRING && parts.length === 2)
		throw configError(field, "is an encrypted PKCS#8 key; the SDK's TLS needs it unencrypted",
			`Decrypt it once, when it is put on the device: ${CONVERT_KEY.replace("key.pem", "encrypted-key.pem")} (asks for the passphrase), and protect the device's flash instead`);
	if (first?.tag !== INTEGER) throw new Malformed(top.start, "the key does not start with a version INTEGER");
	if (second?.tag === INTEGER)
		throw configError(field, "is a PKCS#1 RSA key (BEGIN RSA PRIVATE KEY, as openssl genrsa -traditional writes), not PKCS#8",
			"Convert it: openssl pkcs8 -topk8 -nocrypt -inform der -in rsa-key.der -outform der -out key.der");
	if (second?.tag === OCTET_STRING)
		throw configError(field, "is an ECC key (SEC1, BEGIN EC PRIVATE KEY); the SDK's TLS signs with RSA only", ISSUE_RSA);
	if (second?.tag !== SEQUENCE) throw new Malformed(top.start, "the key is neither PKCS#8 nor PKCS#1");
	const version = readUnsigned(bytes, first, "the key version");
	if (version.length !== 1 || version[0] > 1) throw new Malformed(first.start, "the PKCS#8 version is not 0 or 1");
	const algorithm = readAlgorithm(bytes, second, "the key algorithm");
	const inner = child(parts, 2, OCTET_STRING, "the private key", top.start);
	const info: PrivateKeyInfo = {algorithm: algorithm.algorithm, algorithmOid: algorithm.oid};
	if (algorithm.curve) info.curve = algorithm.curve;
	if (algorithm.algorithm !== "rsa") return info;
	// RSAPrivateKey ::= SEQUENCE {version, n, e, d, p, q, dp, dq, qinv[, otherPrimeInfos]}: the SDK reads all of them.
	const rsa = expect(bytes, inner.start, inner.end, SEQUENCE, "the RSA private key");
	const integers = children(bytes, rsa, "the RSA private key");
	const names = ["version", "modulus", "public exponent", "private exponent", "prime 1", "prime 2", "exponent 1", "exponent 2", "coefficient"];
	names.forEach((name, n) => readUnsigned(bytes, child(integers, n, INTEGER, `the RSA ${name}`, rsa.start), `the RSA ${name}`));
	const rsaVersion = readUnsigned(bytes, integers[0], "the RSA version");
	if (rsaVersion.length !== 1 || rsaVersion[0] !== 0 || integers.length > 9)
		throw configError(field, "is a multi-prime RSA key; the SDK's TLS uses two primes only", ISSUE_RSA);
	info.rsaModulus = readUnsigned(bytes, integers[1], "the RSA modulus");
	info.rsaExponent = readUnsigned(bytes, integers[2], "the RSA public exponent");
	info.keyBits = bitLength(info.rsaModulus);
	return info;
}

/** The label of text that starts `-----BEGIN <A-Z 0-9 and spaces>-----`, or undefined. */
function pemLabel(head: string): string | undefined {
	const begin = "-----BEGIN ";
	if (!head.startsWith(begin)) return undefined;
	const end = head.indexOf("-----", begin.length);
	const label = end < 0 ? "" : head.slice(begin.length, end);
	if (!label) return undefined;
	for (let i = 0; i < label.length; i++) {
		const c = label.charCodeAt(i);
		if (!(c >= 65 && c <= 90) && !isDigit(c) && c !== 32) return undefined;
	}
	return label;
}

/** PEM (or other text) where DER was expected: the label, if PEM, else "". Undefined for binary. */
function textKind(bytes: Uint8Array): string | undefined {
	let p = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0; // UTF-8 BOM
	while (p < bytes.length && (bytes[p] === 0x20 || bytes[p] === 0x09 || bytes[p] === 0x0a || bytes[p] === 0x0d)) p++;
	const head = decodeString(bytes, {tag: 0x16, header: 0, start: p, end: Math.min(bytes.length, p + 128)});
	const pem = pemLabel(head);
	if (pem !== undefined) return pem;
	if (bytes[0] === SEQUENCE) return undefined;
	for (let i = 0; i < Math.min(bytes.length, 256); i++) {
		const b = bytes[i];
		if (b < 0x09 || (b > 0x0d && b < 0x20) || b > 0x7e) return undefined;
	}
	return bytes.length ? "" : undefined;
}

function hasEncryptedHeader(bytes: Uint8Array): boolean {
	return decodeString(bytes, {tag: 0x16, header: 0, start: 0, end: Math.min(bytes.length, 512)}).includes("ENCRYPTED");
}

function malformed(field: string, kind: string, e: Malformed, fix: string): AzureIoTError {
	return configError(field, `is not a DER ${kind}: ${e.what} (at byte ${e.at})`, fix);
}

/** Reads a DER certificate; throws configError(field, ...) saying what is wrong with it and how to fix it. */
export function parseCertificate(der: Uint8Array, field = "certificate"): CertificateInfo {
	return toPublic(parseCertificateInternal(der, field));
}

function toPublic(info: ParsedCertificate): CertificateInfo {
	const {subjectAttributes: _s, issuerAttributes: _i, ...rest} = info;
	return rest;
}

function parseCertificateInternal(der: Uint8Array, field: string): ParsedCertificate {
	if (!(der instanceof Uint8Array) || der.length === 0) throw configError(field, "is empty", "Give the certificate as DER bytes");
	const text = textKind(der);
	if (text !== undefined) {
		if (text.includes("PRIVATE KEY")) throw configError(field, "is a private key, not a certificate", "Give the certificate here and its key as the key");
		if (text === "CERTIFICATE")
			throw configError(field, "is PEM text (BEGIN CERTIFICATE), not DER", `Convert it: ${CONVERT_CERT} (a PEM file with the whole chain holds several certificates: give each one as its own DER)`);
		throw configError(field, text ? `is PEM text (BEGIN ${text}), not a DER certificate` : "is text (base64?), not DER bytes", `Give the certificate in DER: ${CONVERT_CERT}`);
	}
	try {
		return readCertificate(der);
	}
	catch (e) {
		throw rethrow(e, field, "certificate", `Give the certificate in DER (${CONVERT_CERT}), whole`);
	}
}

/** Reads an unencrypted PKCS#8 DER key; throws configError(field, ...) saying what it is instead and how to convert it. */
export function parsePrivateKey(der: Uint8Array, field = "key"): PrivateKeyInfo {
	if (!(der instanceof Uint8Array) || der.length === 0) throw configError(field, "is empty", "Give the private key as unencrypted PKCS#8 DER bytes");
	const text = textKind(der);
	if (text !== undefined) {
		if (text === "ENCRYPTED PRIVATE KEY" || (text.includes("PRIVATE KEY") && hasEncryptedHeader(der)))
			throw configError(field, `is an encrypted PEM key (BEGIN ${text}); the SDK's TLS needs it unencrypted, in DER`, `Convert it once, when it is put on the device: ${CONVERT_KEY} (asks for the passphrase)`);
		if (text === "EC PRIVATE KEY") throw configError(field, "is an ECC key (BEGIN EC PRIVATE KEY); the SDK's TLS signs with RSA only", ISSUE_RSA);
		if (text.includes("PRIVATE KEY")) throw configError(field, `is PEM text (BEGIN ${text}), not DER`, `Convert it: ${CONVERT_KEY}`);
		if (text === "CERTIFICATE") throw configError(field, "is a certificate, not a private key", "Give the certificate's private key here (unencrypted PKCS#8 DER)");
		throw configError(field, text ? `is PEM text (BEGIN ${text}), not a DER private key` : "is text (base64?), not DER bytes", `Give the key as unencrypted PKCS#8 DER: ${CONVERT_KEY}`);
	}
	try {
		return readPrivateKey(der, field);
	}
	catch (e) {
		throw rethrow(e, field, "PKCS#8 private key", `Give the key as unencrypted PKCS#8 DER (${CONVERT_KEY}), whole`);
	}
}

/** Only configErrors leave this module: a malformation, or anything unforeseen, becomes one. */
function rethrow(e: unknown, field: string, kind: string, fix: string): AzureIoTError {
	if (e instanceof AzureIoTError) return e;
	if (e instanceof Malformed) return malformed(field, kind, e, fix);
	return configError(field, `is not a DER ${kind}: it could not be read`, fix);
}

function describe(info: CertificateInfo): string {
	return info.subjectCN !== undefined ? `CN=${JSON.stringify(info.subjectCN.slice(0, 64))}` : "(no CN)";
}

function date(ms: number): string {
	return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");
}

function sameKey(a: {rsaModulus?: Uint8Array; rsaExponent?: Uint8Array}, b: {rsaModulus?: Uint8Array; rsaExponent?: Uint8Array}): boolean {
	return !!a.rsaModulus && !!b.rsaModulus && !!a.rsaExponent && !!b.rsaExponent && sameBytes(a.rsaModulus, b.rsaModulus) && sameBytes(a.rsaExponent, b.rsaExponent);
}

function algorithmName(algorithm: KeyAlgorithm, oid: string, curve?: string): string {
	if (algorithm === "ec") return `an ECC${curve ? ` (${curve})` : ""} key`;
	return `a ${KEY_NAMES[oid] ?? `OID ${oid}`} key`;
}

/** Registration ids: letters, digits and - . _ :, ending in a letter, digit or -; a CN holds at most 64 characters. */
function isRegistrationId(text: string): boolean {
	const last = text.charCodeAt(text.length - 1);
	return text.length > 0 && firstNotIn(text, "-._:") < 0 && (isLetter(last) || isDigit(last) || last === 45);
}

/**
 * Checks a client identity as the device will present it (leaf first, then intermediates) and
 * returns what it read. Throws configError naming the field, the problem and the fix for: PEM or
 * other non-DER input, malformed DER, an encrypted or non-PKCS#8 key, an ECC (or other non-RSA)
 * leaf or key, a chain out of order or with a certificate that did not issue the one before it,
 * a chain too large for the ESP32's send buffer, a key that does not belong to the leaf, a
 * certificate expired or not yet valid at `now`, and a leaf CN that is not the registration id.
 */
export function checkClientIdentity(options: ClientIdentityOptions): ClientIdentity {
	const certField = options.fields?.certificates ?? "clientCertificates";
	const keyField = options.fields?.key ?? "clientKey";
	const {certificates, key, now} = options;
	if (!Array.isArray(certificates) || certificates.length === 0)
		throw configError(certField, "has no certificate", "Give the device's certificate (DER) first, then any intermediates up to the CA the enrollment verifies");
	if (typeof now !== "number" || !Number.isFinite(now))
		throw configError("now", "is not a time", "Pass the device clock in milliseconds since the epoch");
	const chain = certificates.map((der, i) => parseCertificateInternal(der, `${certField}[${i}]`));
	const keyInfo = parsePrivateKey(key, keyField);
	const leaf = chain[0];
	const leafField = `${certField}[0]`;

	// Order before the key: with an intermediate first, the key would not match either, and "wrong order" is the fix.
	for (let i = 0; i + 1 < chain.length; i++) {
		const cert = chain[i], next = chain[i + 1];
		if (sameName(cert.issuerAttributes, next.subjectAttributes)) continue;
		if (sameName(next.issuerAttributes, cert.subjectAttributes))
			throw configError(certField, `is in the wrong order: certificate ${i + 1} (${describe(next)}) was issued by certificate ${i} (${describe(cert)})`,
				"Give the device's own certificate (the leaf) first, then the certificate that issued it, and so on towards the root");
		throw configError(`${certField}[${i + 1}]`, `(${describe(next)}) did not issue certificate ${i} (${describe(cert)}, issued by ${cert.issuerCN !== undefined ? `CN=${JSON.stringify(cert.issuerCN.slice(0, 64))}` : "a name without CN"})`,
			"Give the chain in order, each certificate followed by the one that issued it, and only certificates of this chain");
	}
	let total = 0;
	for (const der of certificates) total += der.length;
	if (total > MAX_CHAIN_BYTES)
		throw configError(certField, `holds ${total} bytes of certificates; the device's TLS sends them in one write, which must fit the ESP32's 8 KB TCP send buffer (at most ${MAX_CHAIN_BYTES} bytes)`,
			"Leave out the root (a server never needs it) and every certificate above the CA that the enrollment verifies");

	if (leaf.keyAlgorithm !== "rsa")
		throw configError(leafField, `(${describe(leaf)}) has ${algorithmName(leaf.keyAlgorithm, leaf.keyAlgorithmOid, leaf.curve)}; the SDK's TLS signs with RSA only`, ISSUE_RSA);
	if (keyInfo.algorithm !== "rsa")
		throw configError(keyField, `is ${algorithmName(keyInfo.algorithm, keyInfo.algorithmOid, keyInfo.curve)}; the SDK's TLS signs with RSA only`, ISSUE_RSA);
	if (!sameKey(leaf, keyInfo)) {
		const other = chain.findIndex(c => sameKey(c, keyInfo));
		throw configError(keyField, other > 0
			? `belongs to certificate ${other} (${describe(chain[other])}), not to the leaf (${describe(leaf)})`
			: `does not match the certificate (${describe(leaf)}): the RSA modulus differs`,
		other > 0
			? "Put the device's certificate first, and give the key issued with it"
			: "Give the private key that was issued with this certificate (compare `openssl x509 -noout -modulus -in cert.pem` with `openssl rsa -noout -modulus -in key.pem`)");
	}

	let notBefore = -Infinity, notAfter = Infinity;
	chain.forEach((cert, i) => {
		const field = `${certField}[${i}]`;
		if (now > cert.notAfter)
			throw configError(field, `(${describe(cert)}) expired on ${date(cert.notAfter)} (valid ${date(cert.notBefore)} to ${date(cert.notAfter)}; the device clock says ${date(now)})`,
				i === 0 ? "Issue the device a new certificate; if the clock is wrong, set it (SNTP) before connecting" : "Renew this CA certificate and give the new one; if the clock is wrong, set it (SNTP) before connecting");
		if (now < cert.notBefore)
			throw configError(field, `(${describe(cert)}) is not valid until ${date(cert.notBefore)} (valid ${date(cert.notBefore)} to ${date(cert.notAfter)}; the device clock says ${date(now)})`,
				"Set the device clock (SNTP) before connecting, or wait until the certificate is valid");
		notBefore = Math.max(notBefore, cert.notBefore);
		notAfter = Math.min(notAfter, cert.notAfter);
	});

	const cn = leaf.subjectCN;
	if (cn === undefined || cn === "")
		throw configError(leafField, "has no subject CN; DPS and IoT Hub take the registration id (device id) from the CN", "Issue the certificate with subject CN=<registration id>");
	if (options.registrationId !== undefined && cn.toLowerCase() !== options.registrationId.toLowerCase())
		throw configError(leafField, `has CN=${JSON.stringify(cn.slice(0, 64))} but the registration id is ${JSON.stringify(options.registrationId.slice(0, 128))}; DPS needs the CN to be the registration id`,
			"Set the registration id to the certificate's CN, or issue a certificate with CN=<registration id>");
	if (cn.length > 64 || !isRegistrationId(cn))
		throw configError(leafField, `has CN=${JSON.stringify(cn.slice(0, 64))}, which is not a registration id (letters, digits and - . _ :, ending in a letter, digit or -, at most 64 characters)`,
			"Issue the certificate with subject CN=<registration id>");

	return {
		commonName: cn,
		certificates,
		key,
		leaf: toPublic(leaf),
		chain: chain.map(toPublic),
		notBefore,
		notAfter,
		keyBits: leaf.keyBits ?? 0,
	};
}
