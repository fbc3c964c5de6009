import test from "ava";
import {base64Decode, base64Encode, concatBytes, utf8Decode, utf8Encode} from "../src/encoding.js";

test("utf8 round trips agree with Node for BMP, astral and ASCII text", t => {
	for (const text of ["", "abc", "grüße", "温度", "😀 ok", "a\u0000b", "\u07ff\u0800\uffff"]) {
		t.deepEqual(Buffer.from(utf8Encode(text)), Buffer.from(text, "utf8"), text);
		t.is(utf8Decode(Buffer.from(text, "utf8")), text);
	}
});

test("invalid utf8 decodes to U+FFFD instead of throwing", t => {
	t.is(utf8Decode(Uint8Array.from([0x61, 0xff, 0x62])), "a\ufffdb");
	t.is(utf8Decode(Uint8Array.from([0xe2, 0x82])), "\ufffd");
	t.is(utf8Decode(Uint8Array.from([0xc0, 0x80])), "\ufffd", "an overlong encoding is refused");
	t.notThrows(() => utf8Decode(Uint8Array.from({length: 1000}, (_, i) => (i * 131) & 255)));
	t.is(utf8Encode("\ud800x").length, 4, "a lone surrogate becomes U+FFFD (3 bytes)");
});

test("base64 round trips agree with Node for every length", t => {
	for (let n = 0; n < 70; n++) {
		const bytes = Uint8Array.from({length: n}, (_, i) => (i * 37 + n) & 255);
		const b64 = base64Encode(bytes);
		t.is(b64, Buffer.from(bytes).toString("base64"));
		t.deepEqual(base64Decode(b64), bytes);
	}
});

test("base64 decoding is strict", t => {
	for (const bad of ["abc", "ab=c", "a===", "ab!d", "YQ==YQ==", "====", "YQ=a"]) t.is(base64Decode(bad), undefined, bad);
	t.deepEqual(base64Decode("YQ=="), Uint8Array.from([0x61]));
});

test("concatBytes joins in order", t => {
	t.deepEqual(concatBytes([Uint8Array.of(1), Uint8Array.of(), Uint8Array.of(2, 3)]), Uint8Array.of(1, 2, 3));
});
