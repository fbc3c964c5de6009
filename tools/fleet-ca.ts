/*
 * A fleet's X.509 CA for the commissioning tool: a root, optionally an intermediate, and a leaf per
 * device (RSA 2048, CN = registration id, clientAuth), with the extensions of Microsoft's test
 * recipes (azure-iot-sdk-c tools/CACertificates: v3_ca for CAs, usr_cert for devices). RSA because
 * the Moddable TLS client signs CertificateVerify with RSA keys only. node:crypto makes the keys,
 * node-forge the certificates. Private keys are written with mode 0600 and never printed.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import forge from "node-forge";

const DAY = 24 * 3600e3;

export interface KeyAndCert {
	certPem: string;
	keyPem: string;
}

export interface FleetCa {
	root: KeyAndCert;
	intermediate?: KeyAndCert;
}

export interface DeviceIdentity {
	certPem: string;
	keyPem: string;
	/** Leaf then the intermediate (if any): what a device presents (Node SDK `cert`). */
	fullChainPem: string;
	certDer: Buffer;
	/** The intermediates' DER, concatenated; empty without one. */
	chainDer: Buffer;
	/** Unencrypted PKCS#8 PrivateKeyInfo: the only key form the Moddable TLS client takes. */
	keyDer: Buffer;
}

const FILES = {
	rootCert: "root-ca.cert.pem",
	rootKey: "root-ca.key.pem",
	intermediateCert: "intermediate-ca.cert.pem",
	intermediateKey: "intermediate-ca.key.pem",
};

function rsaKey(): string {
	return crypto.generateKeyPairSync("rsa", {modulusLength: 2048}).privateKey.export({type: "pkcs8", format: "pem"}).toString();
}

function forgePublic(keyPem: string): forge.pki.rsa.PublicKey {
	return forge.pki.publicKeyFromPem(crypto.createPublicKey(keyPem).export({type: "spki", format: "pem"}).toString()) as forge.pki.rsa.PublicKey;
}

interface Spec {
	cn: string;
	organization?: string;
	keyPem: string;
	issuer?: KeyAndCert;
	ca: boolean;
	days: number;
}

function issue(spec: Spec): string {
	const cert = forge.pki.createCertificate();
	cert.publicKey = forgePublic(spec.keyPem);
	// Positive, 16 bytes, as CAs issue them.
	cert.serialNumber = "1" + crypto.randomBytes(15).toString("hex");
	const now = Date.now();
	// An hour back, so that a device whose clock is slightly behind still accepts it.
	cert.validity.notBefore = new Date(now - 3600e3);
	cert.validity.notAfter = new Date(now + spec.days * DAY);
	const subject = [{name: "commonName", value: spec.cn}, ...(spec.organization ? [{name: "organizationName", value: spec.organization}] : [])];
	cert.setSubject(subject);
	const issuerCert = spec.issuer ? forge.pki.certificateFromPem(spec.issuer.certPem) : undefined;
	cert.setIssuer(issuerCert ? issuerCert.subject.attributes : subject);
	const extensions: object[] = spec.ca
		? [
			{name: "basicConstraints", cA: true, critical: true},
			{name: "keyUsage", digitalSignature: true, keyCertSign: true, cRLSign: true, critical: true},
		]
		: [
			{name: "basicConstraints", cA: false},
			{name: "keyUsage", digitalSignature: true, nonRepudiation: true, keyEncipherment: true, critical: true},
			{name: "extKeyUsage", clientAuth: true},
		];
	extensions.push({name: "subjectKeyIdentifier"});
	if (issuerCert) extensions.push({name: "authorityKeyIdentifier", keyIdentifier: issuerCert.generateSubjectKeyIdentifier().getBytes()});
	cert.setExtensions(extensions);
	cert.sign(forge.pki.privateKeyFromPem(spec.issuer?.keyPem ?? spec.keyPem) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
	return forge.pki.certificateToPem(cert).replace(/\r\n/g, "\n");
}

function pemToDer(pem: string): Buffer {
	return Buffer.from(new crypto.X509Certificate(pem).raw);
}

/** Writes a private key readable by its owner only; refuses to replace one. */
export function writePrivate(file: string, data: string | Buffer): void {
	fs.writeFileSync(file, data, {mode: 0o600, flag: "wx"});
}

export function createFleetCa(dir: string, options: {name: string; intermediate: boolean; days?: number}): FleetCa {
	fs.mkdirSync(dir, {recursive: true});
	for (const file of Object.values(FILES)) {
		if (fs.existsSync(path.join(dir, file))) throw new Error(`${path.join(dir, file)} exists: this directory already holds a fleet CA (leave out --create-ca to use it, or choose another --ca-dir)`);
	}
	const days = options.days ?? 3650;
	const rootKey = rsaKey();
	const root = {certPem: issue({cn: `${options.name} Root CA`, organization: options.name, keyPem: rootKey, ca: true, days}), keyPem: rootKey};
	writePrivate(path.join(dir, FILES.rootKey), root.keyPem);
	fs.writeFileSync(path.join(dir, FILES.rootCert), root.certPem);
	if (!options.intermediate) return {root};
	const intKey = rsaKey();
	const intermediate = {certPem: issue({cn: `${options.name} Intermediate CA`, organization: options.name, keyPem: intKey, issuer: root, ca: true, days}), keyPem: intKey};
	writePrivate(path.join(dir, FILES.intermediateKey), intermediate.keyPem);
	fs.writeFileSync(path.join(dir, FILES.intermediateCert), intermediate.certPem);
	return {root, intermediate};
}

function readPair(dir: string, certFile: string, keyFile: string): KeyAndCert {
	const certPath = path.join(dir, certFile);
	const keyPath = path.join(dir, keyFile);
	let certPem: string, keyPem: string;
	try {
		certPem = fs.readFileSync(certPath, "utf8");
		keyPem = fs.readFileSync(keyPath, "utf8");
	}
	catch {
		throw new Error(`${dir}: no fleet CA there (${certFile} and ${keyFile} are needed). Create one with --create-ca`);
	}
	let cert: crypto.X509Certificate;
	try {
		cert = new crypto.X509Certificate(certPem);
	}
	catch {
		throw new Error(`${certPath} is not a PEM certificate`);
	}
	try {
		if (!cert.checkPrivateKey(crypto.createPrivateKey(keyPem))) throw new Error("mismatch");
	}
	catch {
		throw new Error(`${keyPath} is not the private key of ${certPath} (an unencrypted PEM key is needed)`);
	}
	if (!cert.ca) throw new Error(`${certPath} is not a CA certificate (basicConstraints CA:TRUE)`);
	if (Date.parse(cert.validTo) <= Date.now()) throw new Error(`${certPath} expired on ${new Date(cert.validTo).toISOString()}: create a new fleet CA`);
	return {certPem, keyPem};
}

export function loadFleetCa(dir: string): FleetCa {
	const root = readPair(dir, FILES.rootCert, FILES.rootKey);
	const hasIntermediate = fs.existsSync(path.join(dir, FILES.intermediateCert));
	return hasIntermediate ? {root, intermediate: readPair(dir, FILES.intermediateCert, FILES.intermediateKey)} : {root};
}

export function fleetCaFiles(dir: string, ca: FleetCa): {root: string; intermediate?: string} {
	return {root: path.join(dir, FILES.rootCert), ...(ca.intermediate ? {intermediate: path.join(dir, FILES.intermediateCert)} : {})};
}

/** A device's own key and certificate, issued by the intermediate if there is one, else by the root. */
export function issueDevice(ca: FleetCa, registrationId: string, days: number): DeviceIdentity {
	const keyPem = rsaKey();
	const certPem = issue({cn: registrationId, keyPem, issuer: ca.intermediate ?? ca.root, ca: false, days});
	const chain = ca.intermediate ? [ca.intermediate.certPem] : [];
	return {
		certPem,
		keyPem,
		fullChainPem: [certPem, ...chain].join(""),
		certDer: pemToDer(certPem),
		chainDer: Buffer.concat(chain.map(pemToDer)),
		keyDer: crypto.createPrivateKey(keyPem).export({type: "pkcs8", format: "der"}),
	};
}

/** The proof-of-possession certificate for DPS or the hub: CN = their verification code, signed by the root. */
export function verificationCertificate(ca: FleetCa, code: string): string {
	return issue({cn: code, keyPem: rsaKey(), issuer: ca.root, ca: false, days: 30});
}
