/*
 * Test certificates: a root CA, an intermediate and a leaf for localhost and 127.0.0.1, plus an
 * unrelated root for "wrong root" tests. Servers must send leaf + intermediate, as a real service does
 * and as the SDK's TLS needs (it checks names only on chains of two or more). Made once and cached in
 * the temp directory, so that test files running in parallel do not each pay for RSA keys.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import forge from "node-forge";

const VERSION = "pki-v1";

export interface TestPki {
	rootPem: string;
	rootDer: Uint8Array;
	intermediatePem: string;
	leafPem: string;
	leafKeyPem: string;
	/** leaf then intermediate: what a server sends */
	chainPem: string;
	/** A root that signed nothing here: pinning it must fail the handshake. */
	otherRootDer: Uint8Array;
	notAfter: number;
}

interface Stored extends Omit<TestPki, "rootDer" | "otherRootDer"> {
	otherRootPem: string;
}

function pemToDer(pem: string): Uint8Array {
	return new Uint8Array(Buffer.from(pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, ""), "base64"));
}

function makeCert(options: {
	subject: string; issuer?: {cert: forge.pki.Certificate; key: forge.pki.rsa.PrivateKey};
	keys: forge.pki.rsa.KeyPair; ca: boolean; pathLen?: number; names?: {dns: string[]; ips: string[]}; serial: string;
}): forge.pki.Certificate {
	const cert = forge.pki.createCertificate();
	cert.publicKey = options.keys.publicKey;
	cert.serialNumber = options.serial;
	const now = Date.now();
	cert.validity.notBefore = new Date(now - 24 * 3600e3);
	cert.validity.notAfter = new Date(now + 365 * 24 * 3600e3);
	const subject = [{name: "commonName", value: options.subject}, {name: "organizationName", value: "moddable-azure-iot tests"}];
	cert.setSubject(subject);
	cert.setIssuer(options.issuer ? options.issuer.cert.subject.attributes : subject);
	const extensions: object[] = [
		options.ca
			? {name: "basicConstraints", cA: true, critical: true, ...(options.pathLen !== undefined ? {pathLenConstraint: options.pathLen} : {})}
			: {name: "basicConstraints", cA: false, critical: true},
		options.ca
			? {name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true}
			: {name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true},
		{name: "subjectKeyIdentifier"},
	];
	if (options.issuer) {
		const ski = options.issuer.cert.generateSubjectKeyIdentifier().getBytes();
		extensions.push({name: "authorityKeyIdentifier", keyIdentifier: ski});
	}
	if (options.names) {
		extensions.push({name: "extKeyUsage", serverAuth: true});
		extensions.push({name: "subjectAltName", altNames: [
			...options.names.dns.map(value => ({type: 2, value})),
			...options.names.ips.map(ip => ({type: 7, ip})),
		]});
	}
	cert.setExtensions(extensions);
	cert.sign(options.issuer?.key ?? options.keys.privateKey, forge.md.sha256.create());
	return cert;
}

function generate(): Stored {
	const keys = () => forge.pki.rsa.generateKeyPair({bits: 2048, e: 0x10001});
	const rootKeys = keys(), interKeys = keys(), leafKeys = keys(), otherKeys = keys();
	const root = makeCert({subject: "Test Root CA", keys: rootKeys, ca: true, serial: "01"});
	const inter = makeCert({subject: "Test Intermediate CA", keys: interKeys, ca: true, pathLen: 0, serial: "02",
		issuer: {cert: root, key: rootKeys.privateKey}});
	const leaf = makeCert({subject: "localhost", keys: leafKeys, ca: false, serial: "03",
		issuer: {cert: inter, key: interKeys.privateKey}, names: {dns: ["localhost"], ips: ["127.0.0.1"]}});
	const other = makeCert({subject: "Unrelated Root CA", keys: otherKeys, ca: true, serial: "04"});
	const pem = (c: forge.pki.Certificate) => forge.pki.certificateToPem(c);
	return {
		rootPem: pem(root),
		intermediatePem: pem(inter),
		leafPem: pem(leaf),
		leafKeyPem: forge.pki.privateKeyToPem(leafKeys.privateKey),
		chainPem: pem(leaf) + pem(inter),
		otherRootPem: pem(other),
		notAfter: leaf.validity.notAfter.getTime(),
	};
}

let memo: TestPki | undefined;

export function testPki(): TestPki {
	if (memo) return memo;
	const file = path.join(os.tmpdir(), `moddable-azure-iot-${VERSION}.json`);
	let stored: Stored | undefined;
	try {
		stored = JSON.parse(fs.readFileSync(file, "utf8")) as Stored;
		if (!(stored.notAfter > Date.now() + 7 * 24 * 3600e3)) stored = undefined;
	}
	catch {
		stored = undefined;
	}
	if (!stored) {
		stored = generate();
		// Written then renamed, so that a parallel test file never reads half a file.
		const temp = `${file}.${process.pid}.tmp`;
		fs.writeFileSync(temp, JSON.stringify(stored), {mode: 0o600});
		fs.renameSync(temp, file);
	}
	memo = {
		rootPem: stored.rootPem,
		rootDer: pemToDer(stored.rootPem),
		intermediatePem: stored.intermediatePem,
		leafPem: stored.leafPem,
		leafKeyPem: stored.leafKeyPem,
		chainPem: stored.chainPem,
		otherRootDer: pemToDer(stored.otherRootPem),
		notAfter: stored.notAfter,
	};
	return memo;
}
