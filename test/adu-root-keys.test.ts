import test from "ava";
import {AzureIoTError} from "../src/errors.js";
import {ADU_ROOT_KEYS, defineRootKeys, extendRootKeys, findRootKey, rootPublicKey} from "../src/adu/root-keys.js";
import type {RsaPublicKey} from "../src/adu/rsa.js";
import {loadKat} from "./helpers/adu.js";

test("the production table holds Microsoft's two root keys, equal to the middleware's test copy, and nothing else", t => {
	t.deepEqual(ADU_ROOT_KEYS.map(k => k.kid), ["ADU.200702.R", "ADU.200703.R"]);
	t.deepEqual(ADU_ROOT_KEYS.map(k => ({kid: k.kid, n: k.n, e: k.e})), loadKat().rootKeys);
	for (const key of ADU_ROOT_KEYS) {
		const pk = rootPublicKey(key) as RsaPublicKey;
		t.is(pk.size, 384, `${key.kid} is RSA-3072`);
		t.is(pk.e, 65537);
	}
	t.true(Object.isFrozen(ADU_ROOT_KEYS) && ADU_ROOT_KEYS.every(k => Object.isFrozen(k)));
	t.throws(() => { (ADU_ROOT_KEYS as unknown as unknown[]).push({}); }, {instanceOf: TypeError});
});

test("a build extends the table explicitly; the production table is left as it was", t => {
	const emu = {kid: "EMU.ROOT.1", n: Uint8Array.from(Buffer.from(ADU_ROOT_KEYS[0].n, "base64")), e: Uint8Array.of(0, 1, 0, 1)};
	const table = extendRootKeys(ADU_ROOT_KEYS, [emu]);
	t.deepEqual(table.map(k => k.kid), ["ADU.200702.R", "ADU.200703.R", "EMU.ROOT.1"]);
	t.is(findRootKey(table, "EMU.ROOT.1")!.n, ADU_ROOT_KEYS[0].n, "bytes are stored as base64");
	t.is(findRootKey(table, "EMU.ROOT.1")!.e, "AQAB", "leading zeros dropped");
	t.is(ADU_ROOT_KEYS.length, 2);
	t.is(findRootKey(ADU_ROOT_KEYS, "EMU.ROOT.1"), undefined);
});

test("bad root keys are config errors naming the entry", t => {
	const n = ADU_ROOT_KEYS[0].n;
	const cases: [string, unknown, RegExp][] = [
		["a production kid again", [...ADU_ROOT_KEYS, {kid: "ADU.200702.R", n, e: "AQAB"}], /rootKeys\[2\]\.kid: repeats "ADU.200702.R"/],
		["no kid", [{n, e: "AQAB"}], /rootKeys\[0\]\.kid: is missing/],
		["n not base64", [{kid: "X", n: "not base64!", e: "AQAB"}], /rootKeys\[0\]\.n/],
		["n too short", [{kid: "X", n: "AQAB", e: "AQAB"}], /rootKeys\[0\]: is not a usable RSA key \(the modulus has 17 bits/],
		["e even", [{kid: "X", n, e: "AQAA"}], /exponent 65536/],
		["not a list", "ADU.200702.R", /rootKeys: is not an array/],
	];
	for (const [what, keys, message] of cases) {
		const e = t.throws(() => defineRootKeys(keys as never), {instanceOf: AzureIoTError}, what);
		t.is(e?.code, "config");
		t.regex(e?.message ?? "", message, what);
	}
});
