/*
 * The emulator's Device Update key chain: a root key (the one a device is built with) and a signing
 * key the root vouches for, both RSA-3072 with e=65537 like ADU's. Cached in the data directory so
 * that a device built with the root keeps verifying across emulator restarts.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import {promisify} from "node:util";
import {publishOnce, readJson, writeAtomically} from "../pki.js";

/** Bump when the key layout changes: the cache is keyed by it. */
const KEYS_VERSION = "emulator-adu-keys-v1";
const MODULUS_BITS = 3072;

/** A public RSA key as a device's root-key table holds it: n and e are standard base64 of the big-endian bytes. */
export interface AduPublicKey {
	kid: string;
	n: string;
	e: string;
}

interface KeysCache {
	version: string;
	root: {kid: string; pem: string};
	signing: {kid: string; pem: string};
}

export interface AduKeys {
	root: {kid: string; privateKey: crypto.KeyObject; publicKey: AduPublicKey};
	signing: {kid: string; privateKey: crypto.KeyObject; publicKey: AduPublicKey};
	/** `{kid, n, e}` of the root as JSON, for device builds. */
	rootKeyPath: string;
}

const generateKeyPair = promisify(crypto.generateKeyPair);

/** n and e of an RSA key in standard base64, without a leading zero byte (JWK gives base64url). */
export function publicParts(key: crypto.KeyObject): {n: string; e: string} {
	const jwk = key.export({format: "jwk"});
	if (jwk.kty !== "RSA" || !jwk.n || !jwk.e) throw new Error("not an RSA key");
	return {n: Buffer.from(jwk.n, "base64url").toString("base64"), e: Buffer.from(jwk.e, "base64url").toString("base64")};
}

/**
 * Kids in ADU's form and length ("ADU.200702.R", 12 characters) so that the signature's headers
 * take no more of a device's buffers than the real ones do. The fingerprint makes a regenerated key
 * an unknown kid to an old device instead of a signature that fails to verify.
 */
function kidFor(key: crypto.KeyObject, role: "R" | "S"): string {
	const {n} = publicParts(key);
	return `EMU.${crypto.createHash("sha256").update(Buffer.from(n, "base64")).digest("hex").slice(0, 6)}.${role}`;
}

async function newPem(): Promise<string> {
	const {privateKey} = await generateKeyPair("rsa", {modulusLength: MODULUS_BITS, publicExponent: 0x10001});
	return privateKey.export({type: "pkcs8", format: "pem"}).toString();
}

function usable(cached: KeysCache | undefined): cached is KeysCache {
	if (!cached || cached.version !== KEYS_VERSION || !cached.root?.pem || !cached.signing?.pem) return false;
	try {
		for (const entry of [cached.root, cached.signing]) {
			const key = crypto.createPrivateKey(entry.pem);
			if (key.asymmetricKeyDetails?.modulusLength !== MODULUS_BITS) return false;
		}
		return true;
	}
	catch {
		return false;
	}
}

export async function loadAduKeys(dataDir: string): Promise<AduKeys> {
	const file = path.join(dataDir, `${KEYS_VERSION}.json`);
	let cached = readJson<KeysCache>(file);
	if (!usable(cached)) {
		if (fs.existsSync(file)) throw new Error(`The Device Update key cache ${file} is not usable: delete it to make new keys (devices built with the old root key must then be rebuilt).`);
		const [rootPem, signingPem] = await Promise.all([newPem(), newPem()]);
		const root = crypto.createPrivateKey(rootPem);
		const signing = crypto.createPrivateKey(signingPem);
		cached = publishOnce<KeysCache>(file, {
			version: KEYS_VERSION,
			root: {kid: kidFor(root, "R"), pem: rootPem},
			signing: {kid: kidFor(signing, "S"), pem: signingPem},
		});
	}
	const entry = (e: {kid: string; pem: string}) => {
		const privateKey = crypto.createPrivateKey(e.pem);
		return {kid: e.kid, privateKey, publicKey: {kid: e.kid, ...publicParts(privateKey)}};
	};
	const root = entry(cached.root);
	const rootKeyPath = path.join(dataDir, "adu-root-key.json");
	writeAtomically(rootKeyPath, JSON.stringify(root.publicKey, null, "\t") + "\n");
	return {root, signing: entry(cached.signing), rootKeyPath};
}
