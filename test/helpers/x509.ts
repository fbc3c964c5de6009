/*
 * Device certificates for the X.509 tests: a fleet root CA, an intermediate signed by it, an
 * unrelated root (untrusted), and device leaves issued on demand (RSA 2048, one EC P-256, expired,
 * self-signed). Keys come from node:crypto; node-forge assembles and signs the certificates. The CA
 * and leaf keys are made once and cached in the temp directory so that parallel test files agree and
 * do not each pay for RSA key generation; the leaves themselves are cheap and made per test.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import forge from "node-forge";

const VERSION = "x509-v1";
const DAY = 24 * 3600e3;

export interface CaCredential {
	certPem: string;
	keyPem: string;
}

export interface DeviceCredential {
	/** The leaf alone. */
	certPem: string;
	keyPem: string;
	/** Leaf, then each issuing intermediate (never the root): what a device sends. */
	chainPem: string;
	/** SHA-1 and SHA-256 of the DER leaf, upper-case hex without colons (az CLI's form). */
	sha1: string;
	sha256: string;
}

export type Issuer = "root" | "intermediate" | "other";

export interface LeafOptions {
	issuer?: Issuer;
	/** Validity ended two days ago. */
	expired?: boolean;
	/** An EC P-256 key instead of RSA 2048 (IoT Hub accepts "any X.509 certificate, including ECC"). */
	ec?: boolean;
	/** Send the leaf alone, without the intermediate. */
	leafOnly?: boolean;
}

interface Stored {
	version: string;
	root: CaCredential;
	intermediate: CaCredential;
	other: CaCredential;
	rsaLeafKey: string;
	ecLeafKey: string;
	notAfter: number;
}

function rsaKeyPem(): string {
	return crypto.generateKeyPairSync("rsa", {modulusLength: 2048}).privateKey.export({type: "pkcs8", format: "pem"}).toString();
}

function serial(): string {
	return "1" + crypto.randomBytes(15).toString("hex");
}

function forgeKey(keyPem: string): forge.pki.rsa.PrivateKey {
	return forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
}

function forgePublic(keyPem: string): forge.pki.rsa.PublicKey {
	const spki = crypto.createPublicKey(keyPem).export({type: "spki", format: "pem"}).toString();
	return forge.pki.publicKeyFromPem(spki) as forge.pki.rsa.PublicKey;
}

interface Spec {
	cn: string;
	keyPem: string;
	issuer?: CaCredential;
	ca?: boolean;
	notBefore: Date;
	notAfter: Date;
}

/** The extensions of Microsoft's recipes (x509.md §4): v3_ca for CAs, a clientAuth leaf otherwise. */
function build(spec: Spec, publicKey: forge.pki.rsa.PublicKey, ownKey: boolean): forge.pki.Certificate {
	const cert = forge.pki.createCertificate();
	cert.publicKey = publicKey;
	cert.serialNumber = serial();
	cert.validity.notBefore = spec.notBefore;
	cert.validity.notAfter = spec.notAfter;
	const subject = [{name: "commonName", value: spec.cn}];
	cert.setSubject(subject);
	cert.setIssuer(spec.issuer ? forge.pki.certificateFromPem(spec.issuer.certPem).subject.attributes : subject);
	const extensions: object[] = spec.ca
		? [
			{name: "basicConstraints", cA: true, critical: true},
			{name: "keyUsage", digitalSignature: true, keyCertSign: true, cRLSign: true, critical: true},
		]
		: [
			{name: "basicConstraints", cA: false},
			{name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true},
			{name: "extKeyUsage", clientAuth: true},
		];
	// forge derives the key identifier from cert.publicKey: only when that is the real key.
	if (ownKey) extensions.push({name: "subjectKeyIdentifier"});
	if (spec.issuer) extensions.push({name: "authorityKeyIdentifier", keyIdentifier: forge.pki.certificateFromPem(spec.issuer.certPem).generateSubjectKeyIdentifier().getBytes()});
	cert.setExtensions(extensions);
	return cert;
}

function issue(spec: Spec): string {
	const signer = spec.issuer?.keyPem ?? spec.keyPem;
	const isEc = crypto.createPrivateKey(spec.keyPem).asymmetricKeyType === "ec";
	if (!isEc) {
		const cert = build(spec, forgePublic(spec.keyPem), true);
		cert.sign(forgeKey(signer), forge.md.sha256.create());
		return forge.pki.certificateToPem(cert);
	}
	// forge only knows RSA keys: build the certificate around a placeholder RSA key, put the EC
	// SubjectPublicKeyInfo in its place and sign the result with node:crypto (RSA PKCS#1 v1.5, SHA-256).
	if (!spec.issuer) throw new Error("an EC leaf needs an RSA issuer here");
	const cert = build(spec, forgePublic(spec.issuer.keyPem), false);
	cert.sign(forgeKey(signer), forge.md.sha256.create());
	const tbs = (cert as forge.pki.Certificate & {tbsCertificate: forge.asn1.Asn1}).tbsCertificate;
	const spkiDer = crypto.createPublicKey(spec.keyPem).export({type: "spki", format: "der"});
	(tbs.value as forge.asn1.Asn1[])[6] = forge.asn1.fromDer(spkiDer.toString("binary"));
	const tbsDer = Buffer.from(forge.asn1.toDer(tbs).getBytes(), "binary");
	cert.signature = crypto.sign("sha256", tbsDer, signer).toString("binary");
	return forge.pki.certificateToPem(cert);
}

function generate(): Stored {
	const now = Date.now();
	const notBefore = new Date(now - DAY);
	const notAfter = new Date(now + 2 * 365 * DAY);
	const rootKey = rsaKeyPem();
	const root = {certPem: issue({cn: "Moddable Azure IoT Test Fleet Root CA", keyPem: rootKey, ca: true, notBefore, notAfter}), keyPem: rootKey};
	const intKey = rsaKeyPem();
	const intermediate = {certPem: issue({cn: "Moddable Azure IoT Test Fleet Intermediate CA", keyPem: intKey, issuer: root, ca: true, notBefore, notAfter}), keyPem: intKey};
	const otherKey = rsaKeyPem();
	const other = {certPem: issue({cn: "Untrusted Test Root CA", keyPem: otherKey, ca: true, notBefore, notAfter}), keyPem: otherKey};
	const ecLeafKey = crypto.generateKeyPairSync("ec", {namedCurve: "prime256v1"}).privateKey.export({type: "pkcs8", format: "pem"}).toString();
	return {version: VERSION, root, intermediate, other, rsaLeafKey: rsaKeyPem(), ecLeafKey, notAfter: notAfter.getTime()};
}

let memo: Stored | undefined;

function stored(): Stored {
	if (memo) return memo;
	const file = path.join(os.tmpdir(), `moddable-azure-iot-${VERSION}.json`);
	let value: Stored | undefined;
	try {
		value = JSON.parse(fs.readFileSync(file, "utf8")) as Stored;
		if (value.version !== VERSION || !(value.notAfter > Date.now() + 30 * DAY)) value = undefined;
	}
	catch {
		value = undefined;
	}
	if (!value) {
		value = generate();
		// Written then renamed, so that a parallel test file never reads half a file.
		const temp = `${file}.${process.pid}.tmp`;
		fs.writeFileSync(temp, JSON.stringify(value), {mode: 0o600});
		fs.renameSync(temp, file);
	}
	memo = value;
	return value;
}

function fingerprint(certPem: string, algorithm: "sha1" | "sha256"): string {
	return crypto.createHash(algorithm).update(new crypto.X509Certificate(certPem).raw).digest("hex").toUpperCase();
}

function credential(certPem: string, keyPem: string, chain: string[]): DeviceCredential {
	return {certPem, keyPem, chainPem: [certPem, ...chain].join(""), sha1: fingerprint(certPem, "sha1"), sha256: fingerprint(certPem, "sha256")};
}

export const fleet = {
	get root(): CaCredential { return stored().root; },
	get intermediate(): CaCredential { return stored().intermediate; },
	/** A root nothing here trusts. */
	get other(): CaCredential { return stored().other; },

	/** A device leaf with CN = `cn`, issued by the intermediate unless told otherwise. */
	leaf(cn: string, options: LeafOptions = {}): DeviceCredential {
		const s = stored();
		const issuerName = options.issuer ?? "intermediate";
		const issuer = issuerName === "root" ? s.root : issuerName === "other" ? s.other : s.intermediate;
		const now = Date.now();
		const keyPem = options.ec ? s.ecLeafKey : s.rsaLeafKey;
		const certPem = issue({
			cn, keyPem, issuer,
			notBefore: new Date(now - (options.expired ? 400 : 1) * DAY),
			notAfter: new Date(now + (options.expired ? -2 : 365) * DAY),
		});
		const chain = issuerName === "intermediate" && !options.leafOnly ? [s.intermediate.certPem] : [];
		return credential(certPem, keyPem, chain);
	},

	/** A self-signed device certificate (for thumbprint authentication). */
	selfSigned(cn: string, options: {expired?: boolean} = {}): DeviceCredential {
		const keyPem = stored().rsaLeafKey;
		const now = Date.now();
		const certPem = issue({cn, keyPem, notBefore: new Date(now - (options.expired ? 400 : 1) * DAY), notAfter: new Date(now + (options.expired ? -2 : 365) * DAY)});
		return credential(certPem, keyPem, []);
	},

	/** The proof-of-possession certificate: CN = the verification code, signed by the CA's key. */
	verificationCertificate(ca: CaCredential, code: string): string {
		const now = Date.now();
		return issue({cn: code, keyPem: stored().rsaLeafKey, issuer: ca, notBefore: new Date(now - DAY), notAfter: new Date(now + 30 * DAY)});
	},
};

/** The certificate, the intermediates after it and the key as the device's settings take them: DER (x509Cert, x509Chain, x509Key). */
export function deviceSettings(credential: DeviceCredential, options: {keyPem?: string} = {}): {x509Cert: Uint8Array; x509Chain?: Uint8Array; x509Key: Uint8Array} {
	const certs = credential.chainPem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
	const der = certs.map(pem => new Uint8Array(new crypto.X509Certificate(pem).raw));
	const key = new Uint8Array(crypto.createPrivateKey(options.keyPem ?? credential.keyPem).export({type: "pkcs8", format: "der"}));
	const chain = der.slice(1);
	return {
		x509Cert: der[0],
		...(chain.length ? {x509Chain: new Uint8Array(Buffer.concat(chain))} : {}),
		x509Key: key,
	};
}

/**
 * An emulator set up as a fleet's Azure would be: the fleet root uploaded to DPS and the hub and
 * verified by proof of possession, a group on it; optionally the intermediate too, with a group of
 * its own (devices that send the leaf alone).
 */
export function enrollFleet(emu: {addCertificate(c: {name: string; pem: string; target: "both"}): unknown; certificateVerificationCode(name: string): {verificationCode: string}; verifyCertificate(name: string, pem: string): unknown; addEnrollmentGroup(g: {groupId: string; attestation: {type: "x509"; caName: string}}): unknown}, ca: "root" | "intermediate", groupId: string): void {
	const credential = ca === "root" ? fleet.root : fleet.intermediate;
	const name = `fleet-${ca}-ca`;
	emu.addCertificate({name, pem: credential.certPem, target: "both"});
	emu.verifyCertificate(name, fleet.verificationCertificate(credential, emu.certificateVerificationCode(name).verificationCode));
	emu.addEnrollmentGroup({groupId, attestation: {type: "x509", caName: name}});
}
