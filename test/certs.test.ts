/*
 * The pinned roots: the right certificates (fingerprints from the protocol note, section 4), valid
 * for years to come, and exactly these in the firmware's production trust list; never Baltimore
 * CyberTrust Root, which expired in 2025.
 */
import test from "ava";
import {X509Certificate} from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import {fileURLToPath} from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const PINNED = [
	{
		file: "certs/digicert-global-root-g2.der",
		sha256: "CB:3C:CB:B7:60:31:E5:E0:13:8F:8D:D3:9A:23:F9:DE:47:FF:C3:5E:43:C1:14:4C:EA:27:D4:6A:5A:B1:CB:5F",
		subject: /CN=DigiCert Global Root G2/,
		expires: "2038-01-15",
	},
	{
		file: "certs/microsoft-rsa-root-2017.der",
		sha256: "C7:41:F7:0F:4B:2A:8D:88:BF:2E:71:C1:41:22:EF:53:EF:10:EB:A0:CF:A5:E6:4C:FA:20:F4:18:85:30:73:E0",
		subject: /CN=Microsoft RSA Root Certificate Authority 2017/,
		expires: "2042-07-18",
	},
];

function readJson(file: string): any {
	return JSON.parse(fs.readFileSync(path.join(ROOT, file), "utf8"));
}

for (const root of PINNED) {
	test(`${root.file} is the root Microsoft asks devices to trust`, t => {
		const cert = new X509Certificate(fs.readFileSync(path.join(ROOT, root.file)));
		t.is(cert.fingerprint256, root.sha256);
		t.regex(cert.subject.replace(/\n/g, ", "), root.subject);
		t.is(cert.subject, cert.issuer, "a self-signed root, not an intermediate");
		t.true(cert.ca);
		t.is(new Date(cert.validTo).toISOString().slice(0, 10), root.expires);
		t.true(new Date(cert.validTo).getTime() > Date.now() + 5 * 365 * 24 * 3600 * 1000, "valid for at least five more years");
		t.true(cert.verify(cert.publicKey), "the DER file is intact");
	});
}

test("the library manifest, which every application includes, trusts exactly the pinned roots in production", t => {
	const manifest = readJson("src/manifest.json");
	const data: string[] = manifest.data["*"];
	t.deepEqual([...data].sort(), ["../certs/digicert-global-root-g2", "../certs/microsoft-rsa-root-2017"]);
	t.deepEqual(readJson("manifest.json").include, ["./src/manifest.json"], "the reference firmware is built on the library");
	t.deepEqual(String(manifest.config.roots).split(",").sort(), ["digicert-global-root-g2.der", "microsoft-rsa-root-2017.der"]);
});

test("no manifest of the firmware mentions the expired Baltimore root or adds the SDK's certificate store", t => {
	const files = ["manifest.json", "src/manifest.json", "hosts/moddable/manifest.json", "hosts/esp32/manifest.json", "hosts/sim/manifest.json"];
	for (const file of files) {
		const text = fs.readFileSync(path.join(ROOT, file), "utf8");
		t.notRegex(text, /baltimore/i, file);
		// The SDK store files are modules/crypt/data/caN.der; only its index ca.ski may come in (via tls.json).
		t.notRegex(text, /crypt\/data/, file);
	}
	t.false(fs.readdirSync(path.join(ROOT, "certs")).some(f => /baltimore/i.test(f)));
});
