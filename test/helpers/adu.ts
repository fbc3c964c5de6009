/*
 * Device Update test helpers: SHA-256 from node:crypto, the known-answer vector, and a signer that
 * builds update signatures with keys the test controls, the way device-update.md §9.2 describes
 * (independently of src/adu, with node:crypto only).
 */
import {createHash, generateKeyPair, sign, type KeyObject} from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import {fileURLToPath} from "node:url";
import type {CreateSha256} from "../../src/adu/hash.js";

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), "../fixtures/adu");

export const nodeSha256: CreateSha256 = () => {
	const h = createHash("sha256");
	return {update(bytes) { h.update(bytes); }, digest() { return new Uint8Array(h.digest()); }};
};

export interface Kat {
	source: string;
	licence: string;
	validManifest: string;
	validJws: string;
	invalidManifest: string;
	wrongShaJws: string;
	rootKeys: {kid: string; n: string; e: string}[];
}

export function loadKat(): Kat {
	return JSON.parse(fs.readFileSync(path.join(FIXTURES, "kat.json"), "utf8")) as Kat;
}

export function loadCSdkPayloads(): Record<string, string> {
	return JSON.parse(fs.readFileSync(path.join(FIXTURES, "c-sdk-payloads.json"), "utf8")) as Record<string, string>;
}

export interface TestKey {
	kid: string;
	privateKey: KeyObject;
	/** Standard base64 of the modulus and exponent (the JWK's base64url, re-encoded). */
	n: string;
	e: string;
}

export async function makeKey(kid: string, bits = 3072): Promise<TestKey> {
	const {privateKey, publicKey} = await new Promise<{privateKey: KeyObject; publicKey: KeyObject}>((resolve, reject) =>
		generateKeyPair("rsa", {modulusLength: bits, publicExponent: 65537}, (err, pub, priv) => err ? reject(err) : resolve({publicKey: pub, privateKey: priv})));
	const jwk = publicKey.export({format: "jwk"});
	return {kid, privateKey, n: Buffer.from(jwk.n!, "base64url").toString("base64"), e: Buffer.from(jwk.e!, "base64url").toString("base64")};
}

export const b64url = (text: string | Uint8Array) => Buffer.from(text).toString("base64url");
export const rs256 = (key: KeyObject, text: string) => sign("sha256", Buffer.from(text), key).toString("base64url");

export interface SignOptions {
	root: TestKey;
	signing: TestKey;
	/** Sign the sjwk with this key instead of the root's. */
	rootSigner?: KeyObject;
	/** Sign the JWS with this key instead of the signing key's. */
	signer?: KeyObject;
	header?: object;
	keyHeader?: object;
	keyPayload?: object;
	payload?: object | string;
	/** Change the sjwk after it has been signed. */
	tamperSjwk?: (sjwk: string) => string;
}

/** updateManifestSignature for `manifest`, as ADU builds it. */
export function signManifest(manifest: string, o: SignOptions): string {
	const h = b64url(JSON.stringify(o.keyHeader ?? {alg: "RS256", kid: o.root.kid}));
	const p = b64url(JSON.stringify(o.keyPayload ?? {kty: "RSA", n: o.signing.n, e: o.signing.e, alg: "RS256", kid: o.signing.kid}));
	let sjwk = `${h}.${p}.${rs256(o.rootSigner ?? o.root.privateKey, `${h}.${p}`)}`;
	if (o.tamperSjwk) sjwk = o.tamperSjwk(sjwk);
	const H = b64url(JSON.stringify(o.header ?? {alg: "RS256", sjwk}));
	const payload = o.payload ?? {sha256: createHash("sha256").update(manifest).digest("base64")};
	const P = b64url(typeof payload === "string" ? payload : JSON.stringify(payload));
	return `${H}.${P}.${rs256(o.signer ?? o.signing.privateKey, `${H}.${P}`)}`;
}
