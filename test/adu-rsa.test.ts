import test from "ava";
import {constants, createHash, generateKeyPairSync, privateEncrypt, sign} from "node:crypto";
import {base64UrlDecode} from "../src/encoding.js";
import {bigIntFromBytes, bytesFromBigInt, modPow, pkcs1Sha256Encoding, rs256Verify, rsaPublicKey, type RsaPublicKey} from "../src/adu/rsa.js";
import {nodeSha256} from "./helpers/adu.js";

const {privateKey, publicKey} = generateKeyPairSync("rsa", {modulusLength: 2048, publicExponent: 65537});
const jwk = publicKey.export({format: "jwk"});
const key = rsaPublicKey(Buffer.from(jwk.n!, "base64url"), Buffer.from(jwk.e!, "base64url")) as RsaPublicKey;
const message = Buffer.from("eyJhbGciOiJSUzI1NiJ9.eyJzaGEyNTYiOiJ4In0");

test("bytes and BigInt convert both ways as Node's hex does, for every length up to 100", t => {
	for (let len = 0; len <= 100; len++) {
		const bytes = Uint8Array.from({length: len}, (_, i) => (i * 151 + len * 7 + 1) & 255);
		const hex = Buffer.from(bytes).toString("hex");
		t.is(bigIntFromBytes(bytes), BigInt("0x0" + hex), `length ${len}`);
		t.deepEqual(bytesFromBigInt(BigInt("0x0" + hex), len), bytes, `length ${len}`);
	}
	t.deepEqual(bytesFromBigInt(0x0102n, 4), Uint8Array.of(0, 0, 1, 2), "leading zeros are written");
	t.is(bytesFromBigInt(0x10000n, 2), undefined, "a value too large for the length");
	t.is(bytesFromBigInt(-1n, 2), undefined);
});

test("modPow agrees with BigInt arithmetic", t => {
	const n = key.n;
	for (const [b, e] of [[2n, 65537], [n - 1n, 3], [12345678901234567890n, 17], [n + 5n, 65537], [0n, 3], [1n, 65537]] as const) {
		let expected = 1n, base = b % n, k = e;
		while (k > 0) { if (k & 1) expected = (expected * base) % n; base = (base * base) % n; k >>= 1; }
		t.is(modPow(b, e, n), expected, `${b}^${e}`);
	}
});

test("RS256 signatures made by Node verify; any change to message or signature fails", t => {
	const sig = sign("sha256", message, privateKey);
	t.true(rs256Verify(message, sig, key, nodeSha256));
	t.false(rs256Verify(Buffer.from("x" + message.toString()), sig, key, nodeSha256));
	for (const i of [0, 100, 255]) {
		const bad = Uint8Array.from(sig);
		bad[i] ^= 1;
		t.false(rs256Verify(message, bad, key, nodeSha256), `byte ${i} flipped`);
	}
	t.false(rs256Verify(message, sig.subarray(1), key, nodeSha256), "one byte short");
	t.false(rs256Verify(message, Buffer.concat([Buffer.of(0), sig]), key, nodeSha256), "one byte long");
	t.false(rs256Verify(message, new Uint8Array(256).fill(0xff), key, nodeSha256), "signature representative >= n");
	t.false(rs256Verify(message, new Uint8Array(256), key, nodeSha256), "zero signature");
});

test("a host's modPow (the SDK's native one on the device) is used in place of the core's, and its answer is still checked", t => {
	const sig = sign("sha256", message, privateKey);
	let calls = 0;
	const lent = (b: bigint, e: bigint, n: bigint) => { calls++; return modPow(b, Number(e), n); };
	t.true(rs256Verify(message, sig, key, nodeSha256, lent));
	t.is(calls, 1);
	const bad = Uint8Array.from(sig);
	bad[7] ^= 1;
	t.false(rs256Verify(message, bad, key, nodeSha256, lent), "a changed signature");
	t.false(rs256Verify(message, sig, key, nodeSha256, (_b, _e, n) => n), "an answer not below n");
	t.false(rs256Verify(message, sig, key, nodeSha256, () => -1n), "a negative answer");
});

test("the encoded message is RFC 8017's, byte for byte", t => {
	const digest = new Uint8Array(32).fill(0xab);
	const em = Buffer.from(pkcs1Sha256Encoding(digest, 256));
	t.is(em.subarray(0, 2).toString("hex"), "0001");
	t.true(em.subarray(2, 256 - 52).every(b => b === 0xff));
	t.is(em.subarray(256 - 52, 256 - 32).toString("hex"), "003031300d060960864801650304020105000420");
	t.deepEqual(Uint8Array.from(em.subarray(256 - 32)), digest);
	// Node's own signature decrypts to the same bytes.
	const sig = sign("sha256", message, privateKey);
	const m = bytesFromBigInt(modPow(bigIntFromBytes(sig), key.e, key.n), 256)!;
	t.deepEqual(m, pkcs1Sha256Encoding(createHash("sha256").update(message).digest(), 256));
});

// What Moddable's pkcs1_5.js lets through and this check does not: the right 32 bytes at the end
// of an encoding whose DigestInfo names another algorithm, or whose padding is cut short.
test("signatures over a wrong DigestInfo or a malformed padding are refused", t => {
	const digest = createHash("sha256").update(message).digest();
	const good = pkcs1Sha256Encoding(digest, 256);
	const forge = (em: Uint8Array) => privateEncrypt({key: privateKey, padding: constants.RSA_NO_PADDING}, em);
	t.true(rs256Verify(message, forge(good), key, nodeSha256), "the genuine encoding, signed raw, verifies");

	const otherOid = Uint8Array.from(good);
	otherOid[256 - 52 + 1 + 14] = 0x03; // 2.16.840.1.101.3.4.2.3 (SHA-512) with the SHA-256 bytes
	t.false(rs256Verify(message, forge(otherOid), key, nodeSha256), "another hash OID");

	const noNull = new Uint8Array(256);
	noNull.set([0x00, 0x01]);
	noNull.fill(0xff, 2, 256 - 49 - 1);
	noNull.set([0x00, 0x30, 0x2f, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x04, 0x20], 256 - 49 - 1);
	noNull.set(digest, 256 - 32);
	t.false(rs256Verify(message, forge(noNull), key, nodeSha256), "DigestInfo without NULL parameters");

	const shortPad = Uint8Array.from(good);
	shortPad[10] = 0x00; // padding ends early, with garbage (FF bytes) before the DigestInfo
	t.false(rs256Verify(message, forge(shortPad), key, nodeSha256), "padding cut short");

	const type2 = Uint8Array.from(good);
	type2[1] = 0x02;
	t.false(rs256Verify(message, forge(type2), key, nodeSha256), "block type 2");
});

test("public keys outside what ADU uses are refused with a reason", t => {
	const n2048 = Buffer.from(jwk.n!, "base64url");
	const e = Uint8Array.of(1, 0, 1);
	t.is(typeof rsaPublicKey(Buffer.concat([Buffer.of(0, 0), n2048]), e), "object", "leading zero bytes are fine");
	const n2040 = new Uint8Array(255).fill(0xff);
	t.regex(rsaPublicKey(n2040, e) as string, /2040 bits/);
	t.regex(rsaPublicKey(new Uint8Array(513).fill(0xff), e) as string, /4104 bits/);
	t.regex(rsaPublicKey(Buffer.concat([n2048.subarray(0, 255), Buffer.of(2)]), e) as string, /even/);
	t.regex(rsaPublicKey(n2048, Uint8Array.of(1, 0, 0)) as string, /exponent 65536/);
	t.regex(rsaPublicKey(n2048, Uint8Array.of(1)) as string, /exponent 1 /);
	t.regex(rsaPublicKey(n2048, new Uint8Array(5).fill(1)) as string, /longer than 4 bytes/);
	t.regex(rsaPublicKey(new Uint8Array(3), e) as string, /empty/);
	t.is((rsaPublicKey(n2048, base64UrlDecode("Aw")!) as RsaPublicKey).e, 3);
});
