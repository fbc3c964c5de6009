/*
 * An independent check of a Device Update manifest signature, written from the algorithm of
 * Microsoft's middleware (ports/mbedTLS/azure_iot_jws_mbedtls.c) with node:crypto only: it shares
 * nothing with the emulator's signer or the device's verifier.
 */
import * as crypto from "node:crypto";

export interface RootKey {
	kid: string;
	/** Standard base64 of the big-endian modulus and exponent. */
	n: string;
	e: string;
}

export type Verdict = {ok: true; rootKid: string; signingKid: string} | {ok: false; reason: string};

function decodeJson(segment: string): Record<string, unknown> | undefined {
	try {
		const value = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
		return typeof value === "object" && value !== null && !Array.isArray(value) ? value : undefined;
	}
	catch {
		return undefined;
	}
}

function rsaPublicKey(n: string, e: string): crypto.KeyObject {
	return crypto.createPublicKey({
		key: {kty: "RSA", n: Buffer.from(n, "base64").toString("base64url"), e: Buffer.from(e, "base64").toString("base64url")},
		format: "jwk",
	});
}

function rs256(input: string, key: crypto.KeyObject, signature: string): boolean {
	return crypto.verify("sha256", Buffer.from(input, "ascii"), {key, padding: crypto.constants.RSA_PKCS1_PADDING}, Buffer.from(signature, "base64url"));
}

function split(jws: string): [string, string, string] | undefined {
	const parts = jws.split(".");
	return parts.length === 3 ? [parts[0], parts[1], parts[2]] : undefined;
}

export function verifyManifest(manifest: string, jws: string, rootKeys: RootKey[]): Verdict {
	const outer = split(jws);
	if (!outer) return {ok: false, reason: "the JWS does not have three parts"};
	const [H, P, S] = outer;
	const header = decodeJson(H);
	if (typeof header?.sjwk !== "string") return {ok: false, reason: "no sjwk in the header"};
	const inner = split(header.sjwk);
	if (!inner) return {ok: false, reason: "sjwk does not have three parts"};
	const [h, p, s] = inner;
	const jwkHeader = decodeJson(h);
	const jwk = decodeJson(p);
	if (!jwkHeader || !jwk) return {ok: false, reason: "sjwk header or payload is not JSON"};
	const root = rootKeys.find(k => k.kid === jwkHeader.kid);
	if (!root) return {ok: false, reason: `no root key with kid ${String(jwkHeader.kid)}`};
	if (!rs256(`${h}.${p}`, rsaPublicKey(root.n, root.e), s)) return {ok: false, reason: "the signing key's signature does not verify with the root key"};
	if (jwk.kty !== "RSA" || jwk.alg !== "RS256" || typeof jwk.n !== "string" || typeof jwk.e !== "string") return {ok: false, reason: "the signing key is not an RS256 RSA JWK"};
	if (!rs256(`${H}.${P}`, rsaPublicKey(jwk.n, jwk.e), S)) return {ok: false, reason: "the manifest signature does not verify with the signing key"};
	const payload = decodeJson(P);
	if (typeof payload?.sha256 !== "string") return {ok: false, reason: "the payload has no sha256"};
	const expected = crypto.createHash("sha256").update(manifest, "utf8").digest();
	const signed = Buffer.from(payload.sha256, "base64");
	if (signed.length !== 32 || !signed.equals(expected)) return {ok: false, reason: "the manifest's SHA-256 differs from the signed one"};
	return {ok: true, rootKid: root.kid, signingKid: String(jwk.kid)};
}
