/*
 * The check of `updateManifestSignature`, as AzureIoTJWS_ManifestAuthenticate does it in the
 * FreeRTOS middleware (ports/mbedTLS/azure_iot_jws_mbedtls.c), plus what that code leaves out:
 * `alg` must be RS256 in the JWS header and in the sjwk header as well as in the signing key,
 * `kty` must be RSA, and the signing key is read only after the root key has vouched for it.
 *
 *   JWS  = b64url({"alg":"RS256","sjwk":SJWK}) . b64url({"sha256":b64(SHA-256(manifest))}) . b64url(sig by signing key)
 *   SJWK = b64url({"alg":"RS256","kid":ROOT}) . b64url({"kty":"RSA","n":b64(n),"e":b64(e),"alg":"RS256","kid":..}) . b64url(sig by root)
 *
 * n, e and sha256 are standard base64; everything else is unpadded base64url.
 * Memory: parts are decoded in place from the JWS string (no copies of them), and the sjwk is
 * handled in a function of its own, so its strings are garbage once the signing key is known.
 */
import {base64Decode, base64UrlDecode, utf8Decode, utf8Encode} from "../encoding.js";
import {sha256Of, type CreateSha256} from "./hash.js";
import {field, parseJsonObject, type JsonObject} from "./json.js";
import {findRootKey, rootPublicKey, type RootKeyTable} from "./root-keys.js";
import {rs256Verify, rsaPublicKey, type ModPow, type RsaPublicKey} from "./rsa.js";

export type JwsErrorCode =
	| "format"             // not three base64url parts, not JSON, a field missing or of the wrong type
	| "algorithm"          // alg other than RS256
	| "unknownRootKey"     // the sjwk kid is not in the device's root-key table
	| "rootSignature"      // the root key did not sign the signing key
	| "signingKey"         // the signing key is not a usable RS256 RSA key
	| "manifestSignature"  // the signing key did not sign the JWS
	| "manifestHash";      // the manifest is not the one the JWS names

export type JwsFailure = {readonly ok: false; readonly code: JwsErrorCode; readonly message: string};
export type JwsResult =
	| {readonly ok: true; readonly rootKeyId: string; readonly signingKeyId?: string}
	| JwsFailure;

// Far above the real sizes (a 2.4 KB JWS, 3.2 KB with RSA-4096 keys; a 544-byte manifest) and low
// enough that decoding a hostile one cannot exhaust the device's chunk heap.
const MAX_JWS_LENGTH = 4096;
export const MAX_MANIFEST_BYTES = 16384;
const MAX_HEADER_DEPTH = 4;

/**
 * Verifies that `jws` signs `manifest` (the `updateManifest` string exactly as received, or its
 * UTF-8 bytes) under a signing key vouched for by a key of `rootKeys`. `modPow`: the host's native
 * modular exponentiation, when it lends one (the same result, less memory in XS).
 */
export function verifyManifestSignature(manifest: string | Uint8Array, jws: string, rootKeys: RootKeyTable, createSha256: CreateSha256, modPow?: ModPow): JwsResult {
	if (typeof jws !== "string" || jws.length > MAX_JWS_LENGTH)
		return fail("format", `updateManifestSignature is ${typeof jws === "string" ? `${jws.length} characters long (at most ${MAX_JWS_LENGTH})` : "not a string"}`);
	if (!(typeof manifest === "string" || manifest instanceof Uint8Array) || manifest.length > MAX_MANIFEST_BYTES)
		return fail("format", `updateManifest is not a string of at most ${MAX_MANIFEST_BYTES} bytes`);
	const dots = splitCompact(jws, "updateManifestSignature");
	if (typeof dots === "string") return fail("format", dots);
	const [first, second] = dots;
	const payloadBytes = base64UrlDecode(jws, first + 1, second);
	if (!payloadBytes) return fail("format", "the JWS payload is not unpadded base64url");
	const signature = base64UrlDecode(jws, second + 1);
	if (!signature) return fail("format", "the JWS signature is not unpadded base64url");

	const signing = signingKeyOf(jws, first, rootKeys, createSha256, modPow);
	if ("ok" in signing) return signing;

	if (signature.length !== signing.key.size)
		return fail("manifestSignature", `the JWS signature is ${signature.length} bytes; the signing key signs with ${signing.key.size}`);
	if (!rs256Verify(asciiBytes(jws, 0, second), signature, signing.key, createSha256, modPow))
		return fail("manifestSignature", "the JWS is not signed by its signing key: the signature or the hash it carries was changed");

	const payload = parseJsonObject(utf8Decode(payloadBytes), MAX_HEADER_DEPTH);
	if (typeof payload === "string") return fail("format", `the JWS payload ${payload}`);
	const claimed = field(payload, "sha256");
	const claimedBytes = typeof claimed === "string" ? base64Decode(claimed) : undefined;
	if (!claimedBytes || claimedBytes.length !== 32)
		return fail("format", "the JWS payload has no \"sha256\" holding the standard base64 of 32 bytes");
	const actual = sha256Of(createSha256, typeof manifest === "string" ? utf8Encode(manifest) : manifest);
	let diff = 0;
	for (let i = 0; i < 32; i++) diff |= actual[i] ^ claimedBytes[i];
	if (diff)
		return fail("manifestHash", "the SHA-256 of updateManifest differs from the one the signature covers: the manifest was changed, or was re-serialized instead of used exactly as received");
	return signing.kid === undefined ? Object.freeze({ok: true, rootKeyId: signing.rootKid}) : Object.freeze({ok: true, rootKeyId: signing.rootKid, signingKeyId: signing.kid});
}

interface SigningKey {
	key: RsaPublicKey;
	kid?: string;
	rootKid: string;
}

/** The JWS header's signing key, once its root key has vouched for it. */
function signingKeyOf(jws: string, headerEnd: number, rootKeys: RootKeyTable, createSha256: CreateSha256, modPow: ModPow | undefined): SigningKey | JwsFailure {
	const header = decodeJson(jws, 0, headerEnd, "the JWS header");
	if (typeof header === "string") return fail("format", header);
	const alg = checkAlg(header, "the JWS header");
	if (alg) return alg;
	const sjwk = field(header, "sjwk");
	if (typeof sjwk !== "string") return fail("format", "the JWS header has no \"sjwk\" string (the signed signing key)");

	const dots = splitCompact(sjwk, "sjwk");
	if (typeof dots === "string") return fail("format", dots);
	const [first, second] = dots;
	const keyHeader = decodeJson(sjwk, 0, first, "the sjwk header");
	if (typeof keyHeader === "string") return fail("format", keyHeader);
	const keyAlg = checkAlg(keyHeader, "the sjwk header");
	if (keyAlg) return keyAlg;
	const kid = field(keyHeader, "kid");
	if (typeof kid !== "string") return fail("format", "the sjwk header has no \"kid\" string naming the root key");
	const keyPayload = base64UrlDecode(sjwk, first + 1, second);
	if (!keyPayload) return fail("format", "the sjwk payload is not unpadded base64url");
	const keySignature = base64UrlDecode(sjwk, second + 1);
	if (!keySignature) return fail("format", "the sjwk signature is not unpadded base64url");

	// Every format check is done before the first exponentiation, which is the costly part.
	const root = findRootKey(rootKeys, kid);
	if (!root)
		return fail("unknownRootKey", `unknown root key id ${JSON.stringify(kid)}: the update was signed under a root key this device does not trust. Import it with an ADU instance whose root key is in the device's root-key table, or add that key to the table`);
	const rootKey = rootPublicKey(root);
	if (typeof rootKey === "string")
		return fail("rootSignature", `root key ${JSON.stringify(kid)} in the device's table is unusable (${rootKey}); build the table with defineRootKeys`);
	if (keySignature.length !== rootKey.size)
		return fail("rootSignature", `the sjwk signature is ${keySignature.length} bytes; root key ${JSON.stringify(kid)} signs with ${rootKey.size}`);
	if (!rs256Verify(asciiBytes(sjwk, 0, second), keySignature, rootKey, createSha256, modPow))
		return fail("rootSignature", `the signing key is not signed by root key ${JSON.stringify(kid)}: the update did not come from that ADU root, or was changed on the way`);

	// From here on the signing key's fields are vouched for by the root.
	const signing = signingKey(keyPayload);
	if (typeof signing === "string") return fail("signingKey", `the signing key ${signing}`);
	signing.rootKid = kid;
	return signing;
}

/** The positions of the two dots of compact JWS serialization, with three non-empty parts around them. */
function splitCompact(text: string, what: string): [number, number] | string {
	const first = text.indexOf(".");
	const second = first < 0 ? -1 : text.indexOf(".", first + 1);
	if (second < 0 || text.indexOf(".", second + 1) >= 0)
		return `${what} must be three base64url parts joined by exactly two dots`;
	if (first === 0 || second === first + 1 || second === text.length - 1)
		return `${what} has an empty part`;
	return [first, second];
}

/** The bytes of text[start, end), which the caller has checked to be ASCII (base64url and dots). */
function asciiBytes(text: string, start: number, end: number): Uint8Array {
	const out = new Uint8Array(end - start);
	for (let i = start; i < end; i++) out[i - start] = text.charCodeAt(i);
	return out;
}

function decodeJson(text: string, start: number, end: number, what: string): JsonObject | string {
	const bytes = base64UrlDecode(text, start, end);
	if (!bytes) return `${what} is not unpadded base64url`;
	const value = parseJsonObject(utf8Decode(bytes), MAX_HEADER_DEPTH);
	return typeof value === "string" ? `${what} ${value}` : value;
}

function checkAlg(header: JsonObject, what: string): JwsFailure | undefined {
	const alg = field(header, "alg");
	if (alg === "RS256") return undefined;
	return alg === undefined
		? fail("format", `${what} has no "alg"`)
		: fail("algorithm", `${what} has alg ${JSON.stringify(alg)}; only RS256 is accepted`);
}

function signingKey(bytes: Uint8Array): SigningKey | string {
	const jwk = parseJsonObject(utf8Decode(bytes), MAX_HEADER_DEPTH);
	if (typeof jwk === "string") return jwk;
	const kty = field(jwk, "kty");
	if (kty !== "RSA") return `has kty ${JSON.stringify(kty)}; RS256 needs "RSA"`;
	const alg = field(jwk, "alg");
	if (alg !== "RS256") return `has alg ${JSON.stringify(alg)}; only RS256 is accepted`;
	const n = field(jwk, "n"), e = field(jwk, "e");
	// Standard base64 here, not base64url: ADU's signing key carries "+" and "/" (az_base64_decode in the middleware).
	const nBytes = typeof n === "string" ? base64Decode(n) : undefined;
	const eBytes = typeof e === "string" ? base64Decode(e) : undefined;
	if (!nBytes || !eBytes) return "has no \"n\" and \"e\" in standard base64";
	const key = rsaPublicKey(nBytes, eBytes);
	if (typeof key === "string") return `is unusable: ${key}`;
	const kid = field(jwk, "kid");
	return typeof kid === "string" ? {key, kid, rootKid: ""} : {key, rootKid: ""};
}

function fail(code: JwsErrorCode, message: string): JwsFailure {
	return Object.freeze({ok: false, code, message});
}

Object.freeze(verifyManifestSignature);
