import test from "ava";
import {base64UrlDecode} from "../src/encoding.js";

test("base64url decoding agrees with Node for every length", t => {
	for (let n = 0; n < 70; n++) {
		const bytes = Uint8Array.from({length: n}, (_, i) => (i * 97 + n * 13) & 255);
		t.deepEqual(base64UrlDecode(Buffer.from(bytes).toString("base64url")), bytes, `length ${n}`);
	}
	t.deepEqual(base64UrlDecode("-_-_"), Uint8Array.from(Buffer.from("-_-_", "base64url")));
});

test("base64url decoding is strict: no padding, no standard alphabet, no 4n+1 length, no leftover bits", t => {
	for (const bad of ["YQ==", "YQ=", "a+b/", "ab/c", "abcde", "A", "YR", "YWF", "ab c", "ab\ncd", "é"])
		t.is(base64UrlDecode(bad), undefined, JSON.stringify(bad));
	t.deepEqual(base64UrlDecode(""), new Uint8Array(0));
	t.deepEqual(base64UrlDecode("YWE"), Uint8Array.of(0x61, 0x61));
});
