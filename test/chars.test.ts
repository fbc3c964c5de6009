/*
 * src/chars.ts and the checks built on it replace RegExp literals in the preloaded modules (XS
 * crashes when a preloaded RegExp matches during a garbage collection: src/chars.ts). They must
 * accept and refuse exactly what the RegExps they replace did: compared here on Node, where the
 * RegExps are fine, over edge cases and random strings.
 */
import test from "ava";
import {firstNotIn, hasAnyOf, isDigits, isDtdlName, replaceValues} from "../src/chars.js";
import {checkDeviceId, checkHostName, checkIdScope, checkModelId, checkPort, checkRegistrationId} from "../src/validate.js";
import {encodeComponent} from "../src/query.js";
import {redact, signatureOf} from "../src/sas.js";
import {classifyTopic as parseTopic} from "../src/hub/topics.js";
import {parseCertificate} from "../src/x509.js";
import {seededRandom} from "./helpers/fake-host.js";

const ALPHABET = "aZ09-._:+#%*?!(),=@$'_ /\\;&\"\t\u00e9\u{1F600}dtmi;";

function strings(count: number, extra: string[] = []): string[] {
	const random = seededRandom(7);
	const chars = [...ALPHABET];
	const out = ["", "a", "_", "a_", "_a", "0", "00", "a1", "A_b", ...extra];
	for (let i = 0; i < count; i++) {
		let s = "";
		const n = Math.floor(random() * 12);
		for (let j = 0; j < n; j++) s += chars[Math.floor(random() * chars.length)];
		out.push(s);
	}
	return out;
}

const accepts = (check: (v: unknown) => unknown) => (v: string) => {
	try {
		check(v);
		return true;
	}
	catch {
		return false;
	}
};

test("the character helpers are the RegExps they replace", t => {
	for (const s of strings(3000)) {
		t.is(firstNotIn(s, "-._:") < 0, /^[A-Za-z0-9\-._:]*$/.test(s), `firstNotIn ${JSON.stringify(s)}`);
		t.is(isDigits(s), /^\d+$/.test(s), `isDigits ${JSON.stringify(s)}`);
		t.is(isDtdlName(s), /^[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?$/.test(s), `isDtdlName ${JSON.stringify(s)}`);
		t.is(hasAnyOf(s, "+#\u0000"), /[+#\u0000]/.test(s), `hasAnyOf ${JSON.stringify(s)}`);
		t.is(replaceValues(s, "a", "&\"'", "<x>"), s.replace(/a[^&\s"']+/g, "<x>"), `replaceValues ${JSON.stringify(s)}`);
	}
});

test("the checks accept exactly what their RegExps did", t => {
	const ids = strings(3000, ["a".repeat(128), "a".repeat(129), "dev-1", "dev.", "x:y-", "dtmi:com:example:Thermostat;1", "dtmi:a;0", "dtmi:a;1234567890", "dtmi:a_:b;1", "dtmi::a;1", "dtmi:a;12;1"]);
	for (const s of ids) {
		t.is(accepts(checkRegistrationId)(s), s.length <= 128 && /^[A-Za-z0-9\-._:]{1,128}$/.test(s) && /[A-Za-z0-9-]$/.test(s), `registration id ${JSON.stringify(s)}`);
		t.is(accepts(checkDeviceId)(s), /^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,128}$/.test(s) && !/[+#]/.test(s), `device id ${JSON.stringify(s)}`);
		t.is(accepts(checkModelId)(s), /^dtmi:[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?(?::[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?)*;[1-9][0-9]{0,8}$/.test(s), `model id ${JSON.stringify(s)}`);
		t.is(accepts(checkIdScope)(s), /^[A-Za-z0-9]{1,64}$/.test(s), `id scope ${JSON.stringify(s)}`);
		t.is(accepts(v => checkHostName(v, "host"))(s), s.length <= 253 && /^[A-Za-z0-9.\-:\[\]]+$/.test(s) && !s.startsWith(".") && !s.includes("//"), `host ${JSON.stringify(s)}`);
	}
	for (const s of ["1", "8883", "65535", "65536", "0", "08883", "88 83", "", "x"])
		t.is(accepts(v => checkPort(v, "port"))(s), /^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 65535, `port ${s}`);
	// The message still names the character DPS refuses, whole.
	t.throws(() => checkRegistrationId("dev\u{1F600}1"), {message: /"\u{1F600}"/u});
});

test("encoding, redaction and topics are what they were", t => {
	for (const s of strings(2000, ["a(1)", "!'()*", "x y", "é"])) {
		let expected: string | undefined, got: string | undefined;
		try {
			expected = encodeURIComponent(s).replace(/[!'()*]/g, c => "%" + c.charCodeAt(0).toString(16).toUpperCase());
		}
		catch {
			expected = undefined;
		}
		try {
			got = encodeComponent(s);
		}
		catch {
			got = undefined;
		}
		t.is(got, expected, JSON.stringify(s));
	}
	const token = "SharedAccessSignature sr=hub%2Fdevices%2Fd&sig=abc%2Bdef%3D&se=123 HostName=h;SharedAccessKey=K3y==;x 'sig=q' sig=";
	t.is(redact(token), token.replace(/sig=[^&\s"']+/g, "sig=<redacted>").replace(/SharedAccessKey=[^;\s"']+/g, "SharedAccessKey=<redacted>"));
	t.is(signatureOf(token), /sig=([^&\s]+)/.exec(token)?.[1]);
	t.is(signatureOf("no signature"), undefined);
	t.like(parseTopic("$iothub/twin/res/200/?$rid=1&$version=7", "d"), {kind: "twinResponse"});
	t.like(parseTopic("$iothub/twin/res/20x/?$rid=1", "d"), {kind: "unknown"});
	t.like(parseTopic("$iothub/twin/PATCH/properties/desired/?$version=12", "d"), {kind: "desired", version: 12});
	t.deepEqual(parseTopic("$iothub/twin/PATCH/properties/desired/?$version=1x", "d"), {kind: "desired"});
});

test("edge cases: component names, a signature after an empty sig=, markers, PEM labels", t => {
	const component = /^[A-Za-z](?:[A-Za-z0-9_]{0,62}[A-Za-z0-9])?$/;
	for (const s of strings(2000, ["a".repeat(64), "a".repeat(65), "a" + "_".repeat(62) + "b", "thermostat1", "thermostat 1", "a_"]))
		t.is(s.length <= 64 && isDtdlName(s), component.test(s), `component ${JSON.stringify(s)}`);
	for (const token of ["sig=&sig=abc", "sig= sig=x&y", "xsig=1", "sig=", "a sig=\u00a0sig=z\u3000"])
		t.is(signatureOf(token), /sig=([^&\s]+)/.exec(token)?.[1], JSON.stringify(token));
	for (const s of ["aaa", "aa&aa", "aXaa", "a a", "aaaa&a"])
		t.is(replaceValues(s, "aa", "&", "<x>"), s.replace(/aa[^&\s]+/g, "<x>"), JSON.stringify(s));
	t.is(redact("sig=\u2028SharedAccessKey=;sig=a\u00a0b"), "sig=\u2028SharedAccessKey=;sig=<redacted>\u00a0b");
	const label = (pem: string) => {
		try {
			parseCertificate(new TextEncoder().encode(pem));
			return "parsed";
		}
		catch (e) {
			return (e as Error).message;
		}
	};
	t.regex(label("-----BEGIN CERTIFICATE-----\nMII\n"), /BEGIN CERTIFICATE\)/);
	t.regex(label("-----BEGIN PRIVATE KEY-----\nMII\n"), /private key, not a certificate/);
	t.regex(label("-----BEGIN X509 CRL-----\n"), /BEGIN X509 CRL\), not a DER/);
	t.regex(label("-----BEGIN a-b-----\n"), /is text \(base64\?\)/);
	t.regex(label("-----BEGIN -----\n"), /is text \(base64\?\)/);
});
