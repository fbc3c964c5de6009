import test from "ava";
import {createHash} from "node:crypto";
import {verifyManifestSignature, type JwsResult} from "../src/adu/jws.js";
import {ADU_ROOT_KEYS, defineRootKeys, extendRootKeys, type RootKeyTable} from "../src/adu/root-keys.js";
import {b64url, loadKat, makeKey, nodeSha256, rs256, signManifest, type TestKey} from "./helpers/adu.js";

const kat = loadKat();

function failsWith(t: {is: (a: unknown, b: unknown, m?: string) => void; false: (a: boolean, m?: string) => void}, r: JwsResult, code: string, what: string): void {
	t.false(r.ok, what);
	if (!r.ok) t.is(r.code, code, `${what}: ${r.message}`);
}

test("Microsoft's known answer: ucValidManifest with ucValidManifestJWS verifies under ADU.200702.R", t => {
	const r = verifyManifestSignature(kat.validManifest, kat.validJws, ADU_ROOT_KEYS, nodeSha256);
	t.deepEqual(r, {ok: true, rootKeyId: "ADU.200702.R", signingKeyId: "ADU.210609.R.S"});
	t.true(verifyManifestSignature(new TextEncoder().encode(kat.validManifest), kat.validJws, ADU_ROOT_KEYS, nodeSha256).ok, "as bytes too");
	// The middleware's test puts ADU.200703.R first to show that the table is searched.
	const reversed = defineRootKeys([ADU_ROOT_KEYS[1], ADU_ROOT_KEYS[0]]);
	t.true(verifyManifestSignature(kat.validManifest, kat.validJws, reversed, nodeSha256).ok);
	t.true(verifyManifestSignature(kat.validManifest, kat.validJws, defineRootKeys(kat.rootKeys), nodeSha256).ok, "with the fixture's keys");
});

test("Microsoft's known answer: ucInvalidManifest fails on the hash, ucWrongSHAManifestJWS on the signature", t => {
	failsWith(t, verifyManifestSignature(kat.invalidManifest, kat.validJws, ADU_ROOT_KEYS, nodeSha256), "manifestHash", "invalid manifest");
	failsWith(t, verifyManifestSignature(kat.validManifest, kat.wrongShaJws, ADU_ROOT_KEYS, nodeSha256), "manifestSignature", "wrong SHA JWS");
	// A manifest that was parsed and written out again is not the one that was signed.
	const reserialized = JSON.stringify(JSON.parse(kat.validManifest), null, 1);
	failsWith(t, verifyManifestSignature(reserialized, kat.validJws, ADU_ROOT_KEYS, nodeSha256), "manifestHash", "re-serialized manifest");
});

test("a root key id that is not in the table is its own error, naming the id", t => {
	const only03 = defineRootKeys([ADU_ROOT_KEYS[1]]);
	const r = verifyManifestSignature(kat.validManifest, kat.validJws, only03, nodeSha256);
	failsWith(t, r, "unknownRootKey", "without ADU.200702.R");
	if (!r.ok) t.true(r.message.startsWith("unknown root key id \"ADU.200702.R\""), r.message);
	failsWith(t, verifyManifestSignature(kat.validManifest, kat.validJws, defineRootKeys([]), nodeSha256), "unknownRootKey", "empty table");
});

test("a root key under the right kid but with another modulus fails the root signature", t => {
	const swapped = defineRootKeys([{kid: "ADU.200702.R", n: ADU_ROOT_KEYS[1].n, e: "AQAB"}]);
	failsWith(t, verifyManifestSignature(kat.validManifest, kat.validJws, swapped, nodeSha256), "rootSignature", "ADU.200703.R's modulus under ADU.200702.R");
});

// The header's length is 4n+3, so its last character carries 2 bits that must be zero.
function flipLowBit(c: string): string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	return alphabet[alphabet.indexOf(c) ^ 1];
}

test("malformed signatures err cleanly, as format errors", t => {
	const [H, P, S] = kat.validJws.split(".");
	t.is(H.length % 4, 3);
	const cases: [string, unknown][] = [
		["empty", ""],
		["one part", H],
		["two parts", `${H}.${P}`],
		["four parts", `${H}.${P}.${S}.${S}`],
		["only dots", ".."],
		["empty header", `.${P}.${S}`],
		["empty payload", `${H}..${S}`],
		["empty signature", `${H}.${P}.`],
		["padding in the header", `${H}=.${P}.${S}`],
		["a + in the signature", `${H}.${P}.${S.slice(0, -1)}+`],
		["a / in the payload", `${H}.${P.slice(0, -1)}/.${S}`],
		["a space", `${H}.${P} .${S}`],
		["a non-ASCII character", `${H}.${P}.${S.slice(0, -1)}é`],
		["a 4n+1 length", `${H}.${P}.${S}A`],
		["non-zero leftover bits", `${H.slice(0, -1)}${flipLowBit(H.slice(-1))}.${P}.${S}`],
		["header not JSON", `${b64url("{alg:RS256}")}.${P}.${S}`],
		["header a JSON array", `${b64url("[\"RS256\"]")}.${P}.${S}`],
		["header a JSON string", `${b64url("\"x\"")}.${P}.${S}`],
		["header without alg", `${b64url(JSON.stringify({sjwk: "a.b.c"}))}.${P}.${S}`],
		["header without sjwk", `${b64url(JSON.stringify({alg: "RS256"}))}.${P}.${S}`],
		["sjwk not a string", `${b64url(JSON.stringify({alg: "RS256", sjwk: {}}))}.${P}.${S}`],
		["sjwk of two parts", `${b64url(JSON.stringify({alg: "RS256", sjwk: "a.b"}))}.${P}.${S}`],
		["sjwk header not base64url", `${b64url(JSON.stringify({alg: "RS256", sjwk: "a*.b.c"}))}.${P}.${S}`],
		["sjwk header without kid", `${b64url(JSON.stringify({alg: "RS256", sjwk: `${b64url(JSON.stringify({alg: "RS256"}))}.YQ.YQ`}))}.${P}.${S}`],
		["sjwk header nested deep", `${b64url(JSON.stringify({alg: "RS256", sjwk: `${b64url("[".repeat(1500))}.YQ.YQ`}))}.${P}.${S}`],
		["huge", `${H}.${"A".repeat(10000)}.${S}`],
		["not a string", 42],
		["null", null],
	];
	for (const [what, jws] of cases) {
		const r = verifyManifestSignature(kat.validManifest, jws as string, ADU_ROOT_KEYS, nodeSha256);
		failsWith(t, r, "format", what);
	}
	failsWith(t, verifyManifestSignature("x".repeat(40000), kat.validJws, ADU_ROOT_KEYS, nodeSha256), "format", "a huge manifest");
	failsWith(t, verifyManifestSignature(42 as unknown as string, kat.validJws, ADU_ROOT_KEYS, nodeSha256), "format", "a manifest that is not a string");
});

test("alg other than RS256 is refused in the JWS header and in the sjwk header", t => {
	const [H, P, S] = kat.validJws.split(".");
	const header = JSON.parse(Buffer.from(H, "base64url").toString()) as {sjwk: string};
	for (const alg of ["HS256", "none", "RS512", "rs256", 256]) {
		failsWith(t, verifyManifestSignature(kat.validManifest, `${b64url(JSON.stringify({alg, sjwk: header.sjwk}))}.${P}.${S}`, ADU_ROOT_KEYS, nodeSha256), "algorithm", `JWS alg ${alg}`);
		const [h, p, s] = header.sjwk.split(".");
		const kh = b64url(JSON.stringify({...JSON.parse(Buffer.from(h, "base64url").toString()), alg}));
		failsWith(t, verifyManifestSignature(kat.validManifest, `${b64url(JSON.stringify({alg: "RS256", sjwk: `${kh}.${p}.${s}`}))}.${P}.${S}`, ADU_ROOT_KEYS, nodeSha256), "algorithm", `sjwk alg ${alg}`);
	}
});

test("a signature of the wrong length is refused before any arithmetic", t => {
	const [H, P, S] = kat.validJws.split(".");
	const sig = Buffer.from(S, "base64url");
	for (const bad of [sig.subarray(1), Buffer.concat([sig, Buffer.of(0)]), sig.subarray(0, 383)]) {
		const r = verifyManifestSignature(kat.validManifest, `${H}.${P}.${b64url(bad)}`, ADU_ROOT_KEYS, nodeSha256);
		failsWith(t, r, "manifestSignature", `${bad.length} bytes`);
		if (!r.ok) t.regex(r.message, /is \d+ bytes; the signing key signs with 384/);
	}
});

// A chain made here, with keys the test holds, signed the way ADU signs (device-update.md §9.2).
let root: TestKey, signing: TestKey, other: TestKey, table: RootKeyTable;
const manifest = "{\"manifestVersion\":\"5\",\"updateId\":{\"provider\":\"Contoso\",\"name\":\"Emu\",\"version\":\"2.0\"}}";

test.before(async () => {
	[root, signing, other] = await Promise.all([makeKey("EMU.ROOT.1"), makeKey("EMU.SIGN.1"), makeKey("EMU.OTHER")]);
	table = extendRootKeys(ADU_ROOT_KEYS, [{kid: root.kid, n: root.n, e: root.e}]);
});

test("our own chain verifies when the build adds its root, and not with the production table", t => {
	const jws = signManifest(manifest, {root, signing});
	t.deepEqual(verifyManifestSignature(manifest, jws, table, nodeSha256), {ok: true, rootKeyId: "EMU.ROOT.1", signingKeyId: "EMU.SIGN.1"});
	failsWith(t, verifyManifestSignature(manifest, jws, ADU_ROOT_KEYS, nodeSha256), "unknownRootKey", "production table");
	failsWith(t, verifyManifestSignature(manifest + " ", jws, table, nodeSha256), "manifestHash", "one byte more");
});

test("a tampered or foreign root signature is refused", t => {
	failsWith(t, verifyManifestSignature(manifest, signManifest(manifest, {root, signing, rootSigner: other.privateKey}), table, nodeSha256), "rootSignature", "sjwk signed by another key");
	const flip = (sjwk: string) => {
		const [h, p, s] = sjwk.split(".");
		const sig = Buffer.from(s, "base64url");
		sig[100] ^= 0x40;
		return `${h}.${p}.${b64url(sig)}`;
	};
	failsWith(t, verifyManifestSignature(manifest, signManifest(manifest, {root, signing, tamperSjwk: flip}), table, nodeSha256), "rootSignature", "a bit of the root signature flipped");
});

test("a signing key swapped after the root signed it is refused by the root signature", t => {
	const swap = (sjwk: string) => {
		const [h, , s] = sjwk.split(".");
		return `${h}.${b64url(JSON.stringify({kty: "RSA", n: other.n, e: other.e, alg: "RS256", kid: "EMU.SIGN.1"}))}.${s}`;
	};
	const jws = signManifest(manifest, {root, signing, signer: other.privateKey, tamperSjwk: swap});
	failsWith(t, verifyManifestSignature(manifest, jws, table, nodeSha256), "rootSignature", "the attacker's key in place of the signing key");
});

test("a signing key the root did sign but that is no RS256 RSA key is refused as such", t => {
	const cases: [string, object][] = [
		["kty EC", {kty: "EC", n: signing.n, e: signing.e, alg: "RS256"}],
		["no kty", {n: signing.n, e: signing.e, alg: "RS256"}],
		["alg RS512", {kty: "RSA", n: signing.n, e: signing.e, alg: "RS512"}],
		["no alg", {kty: "RSA", n: signing.n, e: signing.e}],
		["n in base64url", {kty: "RSA", n: Buffer.from(signing.n, "base64").toString("base64url"), e: signing.e, alg: "RS256"}],
		["no e", {kty: "RSA", n: signing.n, alg: "RS256"}],
		["e even", {kty: "RSA", n: signing.n, e: "AQAA", alg: "RS256"}],
		["n of 1024 bits", {kty: "RSA", n: Buffer.alloc(128, 0xff).toString("base64"), e: signing.e, alg: "RS256"}],
	];
	for (const [what, keyPayload] of cases)
		failsWith(t, verifyManifestSignature(manifest, signManifest(manifest, {root, signing, keyPayload}), table, nodeSha256), "signingKey", what);
	const notJson = (sjwk: string) => sjwk;
	const h = b64url(JSON.stringify({alg: "RS256", kid: root.kid}));
	const p = b64url("not json");
	const sjwk = `${h}.${p}.${rs256(root.privateKey, `${h}.${p}`)}`;
	const H = b64url(JSON.stringify({alg: "RS256", sjwk: notJson(sjwk)}));
	const P = b64url(JSON.stringify({sha256: "x"}));
	failsWith(t, verifyManifestSignature(manifest, `${H}.${P}.${rs256(signing.privateKey, `${H}.${P}`)}`, table, nodeSha256), "signingKey", "a signed payload that is not JSON");
});

test("a JWS not signed by the signing key is refused; a signed payload without a proper sha256 is a format error", t => {
	failsWith(t, verifyManifestSignature(manifest, signManifest(manifest, {root, signing, signer: root.privateKey}), table, nodeSha256), "manifestSignature", "signed by the root instead");
	const digest = createHash("sha256").update(manifest).digest();
	for (const [what, payload] of [
		["sha256 of 31 bytes", {sha256: digest.subarray(1).toString("base64")}],
		["sha256 in base64url", {sha256: digest.toString("base64url")}],
		["no sha256", {sha512: digest.toString("base64")}],
		["not JSON", "{\"sha256\":abc}"],
	] as const)
		failsWith(t, verifyManifestSignature(manifest, signManifest(manifest, {root, signing, payload}), table, nodeSha256), "format", what);
	failsWith(t, verifyManifestSignature(manifest, signManifest(manifest, {root, signing, payload: {sha256: createHash("sha256").update("other").digest("base64")}}), table, nodeSha256), "manifestHash", "hash of another manifest");
});
