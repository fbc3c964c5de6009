/*
 * src/x509.ts: what it reads from certificates and keys (checked against node:crypto), and that
 * every bad client identity gives a config error naming the problem and the fix, before any
 * connection. Hostile input (truncated DER, random bytes, flipped bits) must give a config error
 * and nothing else.
 */
import test from "ava";
import * as crypto from "node:crypto";
import {AzureIoTError} from "../src/errors.js";
import {MAX_CHAIN_BYTES, checkClientIdentity, parseCertificate, parsePrivateKey} from "../src/x509.js";
import {testPki} from "./helpers/pki.js";
import {DEVICE_ID, clientPki} from "./helpers/x509-pki.js";

const pki = clientPki();
const NOW = Date.now();
const YEAR = 365 * 24 * 3600e3;

function configFailure(t: import("ava").ExecutionContext, fn: () => unknown, ...patterns: RegExp[]): string {
	const error = t.throws(fn, {instanceOf: AzureIoTError});
	if (!error) return "";
	t.is((error as AzureIoTError).code, "config");
	for (const pattern of patterns) t.regex(error.message, pattern);
	// Never key material: no long base64 or hex runs in a message.
	t.notRegex(error.message, /[A-Za-z0-9+/]{48,}/);
	return error.message;
}

function modulusOf(key: crypto.KeyObject): Buffer {
	const n = Buffer.from(key.export({format: "jwk"}).n as string, "base64url");
	return n;
}

function pem(label: string, der: Uint8Array): Uint8Array {
	const body = Buffer.from(der).toString("base64").replace(/(.{64})/g, "$1\n");
	return new Uint8Array(Buffer.from(`-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`));
}

test("parseCertificate reads what node:crypto reads: names, validity, RSA key", t => {
	for (const der of [pki.leaf.cert, pki.intermediateDer, pki.rootDer, pki.large.cert]) {
		const node = new crypto.X509Certificate(der);
		const info = parseCertificate(der);
		t.is(info.subjectCN, /CN=([^\n]+)/.exec(node.subject)?.[1]);
		t.is(info.issuerCN, /CN=([^\n]+)/.exec(node.issuer)?.[1]);
		t.is(info.notBefore, Date.parse(node.validFrom));
		t.is(info.notAfter, Date.parse(node.validTo));
		t.is(info.keyAlgorithm, "rsa");
		t.is(info.keyAlgorithmOid, "1.2.840.113549.1.1.1");
		t.deepEqual(Buffer.from(info.rsaModulus!), modulusOf(node.publicKey));
		t.deepEqual(Buffer.from(info.rsaExponent!), Buffer.from([1, 0, 1]));
		t.is(info.keyBits, 2048);
		t.is(info.isCA, node.ca);
	}
	const leaf = parseCertificate(pki.leaf.cert);
	const inter = parseCertificate(pki.intermediateDer);
	t.deepEqual(leaf.issuer, inter.subject, "the leaf's issuer Name is the intermediate's subject Name, byte for byte");
});

test("parseCertificate: an ECC certificate's algorithm and curve", t => {
	const info = parseCertificate(pki.ec.cert);
	t.is(info.keyAlgorithm, "ec");
	t.is(info.keyAlgorithmOid, "1.2.840.10045.2.1");
	t.is(info.curve, "P-256");
	t.is(info.rsaModulus, undefined);
	t.is(info.subjectCN, DEVICE_ID);
});

test("parseCertificate: UTCTime (before 2050) and GeneralizedTime (2050 and later)", t => {
	const notBefore = new Date(Date.UTC(1999, 11, 31, 23, 59, 58));
	const notAfter = new Date(Date.UTC(2061, 0, 2, 3, 4, 5));
	const der = pki.issue({notBefore, notAfter});
	const node = new crypto.X509Certificate(der);
	const info = parseCertificate(der);
	t.is(info.notBefore, notBefore.getTime());
	t.is(info.notAfter, notAfter.getTime());
	t.is(info.notAfter, Date.parse(node.validTo));
	// Find the encodings in the DER: 0x17 (UTCTime) "991231235958Z" and 0x18 (GeneralizedTime) "20610102030405Z".
	t.true(Buffer.from(der).includes(Buffer.from("\x17\x0d991231235958Z", "latin1")));
	t.true(Buffer.from(der).includes(Buffer.from("\x18\x0f20610102030405Z", "latin1")));
});

test("parsePrivateKey: PKCS#8 RSA modulus and exponent, as node:crypto reads them", t => {
	const info = parsePrivateKey(pki.leaf.key);
	t.is(info.algorithm, "rsa");
	t.is(info.keyBits, 2048);
	const key = crypto.createPrivateKey({key: Buffer.from(pki.leaf.key), format: "der", type: "pkcs8"});
	t.deepEqual(Buffer.from(info.rsaModulus!), modulusOf(key));
	t.deepEqual(Buffer.from(info.rsaExponent!), Buffer.from([1, 0, 1]));
	const ec = parsePrivateKey(pki.ec.key);
	t.is(ec.algorithm, "ec");
	t.is(ec.curve, "P-256");
});

test("checkClientIdentity: a leaf alone, leaf + intermediate, and leaf + intermediate + root", t => {
	for (const certificates of [[pki.leaf.cert], [pki.leaf.cert, pki.intermediateDer], [pki.leaf.cert, pki.intermediateDer, pki.rootDer]]) {
		const identity = checkClientIdentity({certificates, key: pki.leaf.key, now: NOW, registrationId: DEVICE_ID});
		t.is(identity.commonName, DEVICE_ID);
		t.is(identity.chain.length, certificates.length);
		t.is(identity.keyBits, 2048);
		t.is(identity.certificates, certificates);
		t.is(identity.key, pki.leaf.key);
		t.is(identity.leaf.subjectCN, DEVICE_ID);
		t.is(identity.notAfter, Math.min(...identity.chain.map(c => c.notAfter)));
		t.is(identity.notBefore, Math.max(...identity.chain.map(c => c.notBefore)));
	}
	// Registration ids are case-insensitive in DPS.
	t.is(checkClientIdentity({certificates: [pki.leaf.cert], key: pki.leaf.key, now: NOW, registrationId: DEVICE_ID.toUpperCase()}).commonName, DEVICE_ID);
	// Without a registration id the CN is taken as it is.
	t.is(checkClientIdentity({certificates: [pki.leaf.cert], key: pki.leaf.key, now: NOW}).commonName, DEVICE_ID);
});

test("an ECC certificate or key: the SDK's TLS signs with RSA only; issue an RSA-2048 key", t => {
	configFailure(t, () => checkClientIdentity({certificates: [pki.ec.cert], key: pki.ec.key, now: NOW}),
		/^clientCertificates\[0\]: /, /ECC \(P-256\)/, /RSA only/, /RSA-2048/);
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert], key: pki.ec.key, now: NOW}),
		/^clientKey: /, /ECC \(P-256\)/, /RSA only/, /RSA-2048/);
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert], key: pki.sec1Key, now: NOW}),
		/^clientKey: /, /ECC key \(SEC1/, /RSA only/, /RSA-2048/);
});

test("a key that does not match the certificate", t => {
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert], key: pki.otherKey, now: NOW}),
		/^clientKey: does not match the certificate \(CN="x509-device-1"\)/, /modulus differs/, /issued with this certificate/);
});

test("expired and not yet valid certificates, with the dates", t => {
	const expired = new crypto.X509Certificate(pki.expired.cert);
	const message = configFailure(t, () => checkClientIdentity({certificates: [pki.expired.cert], key: pki.leaf.key, now: NOW}),
		/^clientCertificates\[0\]: \(CN="x509-device-1"\) expired on /, /Issue the device a new certificate/, /clock/);
	t.true(message.includes(new Date(expired.validTo).toISOString().replace(".000Z", "Z")), message);
	t.true(message.includes(new Date(NOW).toISOString().slice(0, 10)), "the device clock is in the message");
	const future = new crypto.X509Certificate(pki.future.cert);
	const early = configFailure(t, () => checkClientIdentity({certificates: [pki.future.cert], key: pki.leaf.key, now: NOW}),
		/^clientCertificates\[0\]: \(CN="x509-device-1"\) is not valid until /, /Set the device clock/);
	t.true(early.includes(new Date(future.validFrom).toISOString().replace(".000Z", "Z")), early);
	// An unset clock (1970) makes every certificate "not yet valid", and the message shows the clock.
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert], key: pki.leaf.key, now: 0}), /not valid until/, /1970-01-01/);
	// The intermediate is checked too: the server refuses an expired chain.
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert, pki.intermediateDer], key: pki.leaf.key, now: NOW + 2 * YEAR}),
		/^clientCertificates\[0\]: .*expired/);
});

test("PEM given instead of DER: how to convert", t => {
	configFailure(t, () => checkClientIdentity({certificates: [pem("CERTIFICATE", pki.leaf.cert)], key: pki.leaf.key, now: NOW}),
		/^clientCertificates\[0\]: is PEM text \(BEGIN CERTIFICATE\), not DER/, /openssl x509 -in cert\.pem -outform der -out cert\.der/);
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert], key: new Uint8Array(Buffer.from(pki.leaf.keyPem)), now: NOW}),
		/^clientKey: is PEM text \(BEGIN PRIVATE KEY\), not DER/, /openssl pkcs8 -topk8 -nocrypt -in key\.pem -outform der -out key\.der/);
	configFailure(t, () => parsePrivateKey(pem("RSA PRIVATE KEY", pki.pkcs1Key), "clientKey"),
		/is PEM text \(BEGIN RSA PRIVATE KEY\)/, /openssl pkcs8 -topk8 -nocrypt/);
	configFailure(t, () => parsePrivateKey(pem("EC PRIVATE KEY", pki.sec1Key), "clientKey"), /ECC key/, /RSA only/);
	// With a UTF-8 byte-order mark and leading blank lines.
	configFailure(t, () => parseCertificate(new Uint8Array([0xef, 0xbb, 0xbf, 10, 10, ...pem("CERTIFICATE", pki.leaf.cert)])), /is PEM text/);
	// Base64 without the PEM lines.
	configFailure(t, () => parseCertificate(new Uint8Array(Buffer.from(Buffer.from(pki.leaf.cert).toString("base64")))), /is text \(base64\?\), not DER/, /openssl x509/);
	// The key and the certificate swapped.
	configFailure(t, () => parseCertificate(new Uint8Array(Buffer.from(pki.leaf.keyPem)), "clientCertificates[0]"), /is a private key, not a certificate/);
	configFailure(t, () => parsePrivateKey(pem("CERTIFICATE", pki.leaf.cert), "clientKey"), /is a certificate, not a private key/);
});

test("encrypted PKCS#8 and PKCS#1 keys: how to convert", t => {
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert], key: pki.encryptedKey, now: NOW}),
		/^clientKey: is an encrypted PKCS#8 key; the SDK's TLS needs it unencrypted/, /openssl pkcs8 -topk8 -nocrypt -in encrypted-key\.pem -outform der -out key\.der/, /passphrase/);
	configFailure(t, () => parsePrivateKey(pem("ENCRYPTED PRIVATE KEY", pki.encryptedKey), "clientKey"),
		/is an encrypted PEM key/, /openssl pkcs8 -topk8 -nocrypt/);
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert], key: pki.pkcs1Key, now: NOW}),
		/^clientKey: is a PKCS#1 RSA key/, /openssl pkcs8 -topk8 -nocrypt -inform der -in rsa-key\.der -outform der -out key\.der/);
	// The certificate given as the key.
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert], key: pki.leaf.cert, now: NOW}), /^clientKey: /);
});

test("CN and registration id: DPS needs the CN to be the registration id", t => {
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert], key: pki.leaf.key, now: NOW, registrationId: "another-device"}),
		/^clientCertificates\[0\]: has CN="x509-device-1" but the registration id is "another-device"/, /DPS needs the CN to be the registration id/);
	configFailure(t, () => checkClientIdentity({certificates: [pki.issue({cn: ""})], key: pki.leaf.key, now: NOW}),
		/has no subject CN/, /CN=<registration id>/);
	configFailure(t, () => checkClientIdentity({certificates: [pki.issue({cn: "my device"})], key: pki.leaf.key, now: NOW}),
		/CN="my device", which is not a registration id/);
	configFailure(t, () => checkClientIdentity({certificates: [pki.issue({cn: "ab-".repeat(22)})], key: pki.leaf.key, now: NOW}),
		/at most 64 characters/);
	t.is(checkClientIdentity({certificates: [pki.issue({cn: "Sensor_7.a:b-"})], key: pki.leaf.key, now: NOW}).commonName, "Sensor_7.a:b-");
});

test("chain order: the intermediate first, an unrelated certificate, a chain too large for the ESP32", t => {
	configFailure(t, () => checkClientIdentity({certificates: [pki.intermediateDer, pki.leaf.cert], key: pki.leaf.key, now: NOW}),
		/^clientCertificates: is in the wrong order: certificate 1 \(CN="x509-device-1"\) was issued by certificate 0 \(CN="Device Test Intermediate CA"\)/, /leaf\) first/);
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert, pki.rootDer], key: pki.leaf.key, now: NOW}),
		/^clientCertificates\[1\]: \(CN="Device Test Root CA"\) did not issue certificate 0 \(CN="x509-device-1", issued by CN="Device Test Intermediate CA"\)/, /in order/);
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert, pki.intermediateDer, testPki().rootDer], key: pki.leaf.key, now: NOW}),
		/^clientCertificates\[2\]: \(CN="Test Root CA"\) did not issue certificate 1/);
	const big = pki.issue({altNames: Array.from({length: 150}, (_, i) => `name-${i}.x509-device-1.example.com`)});
	t.true(big.length + pki.intermediateDer.length > MAX_CHAIN_BYTES);
	configFailure(t, () => checkClientIdentity({certificates: [big, pki.intermediateDer], key: pki.leaf.key, now: NOW}),
		/^clientCertificates: holds \d+ bytes of certificates/, /8 KB TCP send buffer/, /Leave out the root/);
});

test("no certificate, empty buffers, several certificates in one DER buffer", t => {
	configFailure(t, () => checkClientIdentity({certificates: [], key: pki.leaf.key, now: NOW}), /^clientCertificates: has no certificate/);
	configFailure(t, () => checkClientIdentity({certificates: [new Uint8Array(0)], key: pki.leaf.key, now: NOW}), /^clientCertificates\[0\]: is empty/);
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert], key: new Uint8Array(0), now: NOW}), /^clientKey: is empty/);
	configFailure(t, () => parseCertificate(new Uint8Array([...pki.leaf.cert, ...pki.intermediateDer])), /bytes follow the certificate \(several in one DER file\?\)/);
});

test("field names in messages can be the configuration's own", t => {
	configFailure(t, () => checkClientIdentity({certificates: [pki.leaf.cert], key: pki.otherKey, now: NOW, fields: {certificates: "x509.certificates", key: "x509.key"}}), /^x509\.key: /);
	configFailure(t, () => checkClientIdentity({certificates: [pki.expired.cert], key: pki.leaf.key, now: NOW, fields: {certificates: "x509.certificates", key: "x509.key"}}), /^x509\.certificates\[0\]: /);
});

test("truncated DER, at every length, gives a config error", t => {
	for (const [name, der, parse] of [
		["certificate", pki.leaf.cert, (b: Uint8Array) => parseCertificate(b)],
		["key", pki.leaf.key, (b: Uint8Array) => parsePrivateKey(b)],
	] as const) {
		for (let n = 1; n < der.length; n++) {
			try {
				parse(der.subarray(0, n));
				t.fail(`${name} cut to ${n} bytes was accepted`);
				return;
			}
			catch (e) {
				if (!(e instanceof AzureIoTError) || e.code !== "config") {
					t.fail(`${name} cut to ${n} bytes threw ${String(e)}`);
					return;
				}
			}
		}
	}
	configFailure(t, () => parseCertificate(pki.leaf.cert.subarray(0, 500), "clientCertificates[0]"), /^clientCertificates\[0\]: is not a DER certificate: .* \(at byte \d+\)/, /whole/);
	t.pass();
});

test("random bytes and flipped bits: a config error or a reading, never another exception", t => {
	let state = 12345;
	const random = () => {
		state = (Math.imul(state, 1103515245) + 12345) >>> 0;
		return state / 4294967296;
	};
	const attempt = (bytes: Uint8Array, what: string) => {
		for (const parse of [parseCertificate, parsePrivateKey]) {
			try {
				parse(bytes);
			}
			catch (e) {
				if (!(e instanceof AzureIoTError) || e.code !== "config") throw new Error(`${what}: ${String(e)}`);
			}
		}
		try {
			checkClientIdentity({certificates: [bytes], key: bytes, now: NOW});
		}
		catch (e) {
			if (!(e instanceof AzureIoTError) || e.code !== "config") throw new Error(`${what}: ${String(e)}`);
		}
	};
	t.notThrows(() => {
		for (let i = 0; i < 3000; i++) {
			const bytes = new Uint8Array(1 + Math.floor(random() * 1500));
			for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(random() * 256);
			if (i % 2) bytes[0] = 0x30; // past the first check
			attempt(bytes, `random ${i}`);
		}
		for (const source of [pki.leaf.cert, pki.leaf.key, pki.ec.cert]) {
			for (let i = 0; i < 1500; i++) {
				const bytes = source.slice();
				const flips = 1 + Math.floor(random() * 4);
				for (let f = 0; f < flips; f++) bytes[Math.floor(random() * bytes.length)] ^= 1 << Math.floor(random() * 8);
				attempt(bytes, `flipped ${i}`);
			}
		}
		// Lengths that claim more than the buffer holds, and long-form lengths of 5 bytes.
		attempt(new Uint8Array([0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02]), "huge length");
		attempt(new Uint8Array([0x30, 0x85, 1, 0, 0, 0, 0]), "5-byte length");
		attempt(new Uint8Array([0x30, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00]), "indefinite length");
		attempt(new Uint8Array([0x30]), "tag only");
	});
});
