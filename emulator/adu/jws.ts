/*
 * The update manifest's signature exactly as Device Update makes it: a compact JWS (RS256) whose
 * header carries the signing key as `sjwk`, itself a compact JWS signed by the root key. Both
 * payloads hold standard base64 inside base64url segments, as ADU's do.
 */
import * as crypto from "node:crypto";
import type {AduKeys} from "./keys.js";

function b64url(data: string | Buffer): string {
	return Buffer.from(data).toString("base64url");
}

/** RSASSA-PKCS1-v1_5 with SHA-256 over the ASCII of `header.payload`. */
function compactJws(header: object, payload: object, key: crypto.KeyObject): string {
	const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
	return `${signingInput}.${b64url(crypto.sign("sha256", Buffer.from(signingInput, "ascii"), key))}`;
}

/** The signing key's public JWK, vouched for by the root. */
export function signingKeyJws(keys: AduKeys): string {
	const {n, e} = keys.signing.publicKey;
	return compactJws({alg: "RS256", kid: keys.root.kid}, {kty: "RSA", n, e, alg: "RS256", kid: keys.signing.kid}, keys.root.privateKey);
}

/** `updateManifestSignature` for a manifest string: the hash is over its UTF-8 bytes as sent. */
export function signManifest(manifest: string, keys: AduKeys, sjwk: string = signingKeyJws(keys)): string {
	const sha256 = crypto.createHash("sha256").update(manifest, "utf8").digest("base64");
	return compactJws({alg: "RS256", sjwk}, {sha256}, keys.signing.privateKey);
}
