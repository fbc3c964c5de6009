/*
 * Client (device) identities for the X.509 tests: a device CA (root → intermediate) and leaves the
 * intermediate issued, in DER as the device is given them, plus the broken ones the checks must
 * name: expired, not yet valid, an ECC leaf, a key that belongs to another certificate, an
 * encrypted key, a leaf over 1 KB. RSA keys come from node:crypto (fast), certificates from
 * node-forge; forge cannot put an EC key in a certificate, so the EC leaf is forge's certificate
 * with its SubjectPublicKeyInfo replaced and re-signed by the intermediate with node:crypto.
 * Made once and cached in the temp directory, like test/helpers/pki.ts.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import forge from "node-forge";

const VERSION = "x509-pki-v2";
const DAY = 24 * 3600e3;

export const DEVICE_ID = "x509-device-1";

export interface DeviceIdentity {
	/** Leaf certificate, DER. */
	cert: Uint8Array;
	/** Its private key, unencrypted PKCS#8 DER. */
	key: Uint8Array;
	certPem: string;
	keyPem: string;
}

export interface ClientPki {
	rootDer: Uint8Array;
	rootPem: string;
	intermediateDer: Uint8Array;
	intermediatePem: string;
	/** CN=DEVICE_ID, RSA-2048, issued by the intermediate. */
	leaf: DeviceIdentity;
	/** A second RSA key that belongs to no certificate here. */
	otherKey: Uint8Array;
	/** CN=DEVICE_ID, valid until yesterday. */
	expired: DeviceIdentity;
	/** CN=DEVICE_ID, valid from a year from now. */
	future: DeviceIdentity;
	/** CN=DEVICE_ID, P-256 key, signed by the (RSA) intermediate. */
	ec: DeviceIdentity;
	/** The leaf's key as encrypted PKCS#8 (PBES2, AES-256-CBC), DER. */
	encryptedKey: Uint8Array;
	/** The leaf's key as PKCS#1 RSAPrivateKey DER (what `openssl genrsa -traditional` gives). */
	pkcs1Key: Uint8Array;
	/** The EC key as SEC1 ECPrivateKey DER (`openssl ecparam -genkey`). */
	sec1Key: Uint8Array;
	/** CN=DEVICE_ID with enough subjectAltNames to make the leaf alone more than 1,024 bytes. */
	large: DeviceIdentity;
	notAfter: number;
	/** Another certificate for the leaf's key, issued by the intermediate: any CN, dates, subjectAltNames. */
	issue(o: {cn?: string; notBefore?: Date; notAfter?: Date; altNames?: string[]}): Uint8Array;
}

type Stored = Record<string, string>;

const b64 = (bytes: Uint8Array | Buffer) => Buffer.from(bytes).toString("base64");
const unb64 = (text: string) => new Uint8Array(Buffer.from(text, "base64"));

function forgeDer(cert: forge.pki.Certificate): Buffer {
	return Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), "binary");
}

function rsaKeys(bits = 2048): {privatePem: string; publicPem: string; pkcs8: Buffer; pkcs1: Buffer} {
	const {privateKey, publicKey} = crypto.generateKeyPairSync("rsa", {modulusLength: bits, publicExponent: 0x10001});
	return {
		privatePem: privateKey.export({type: "pkcs8", format: "pem"}) as string,
		publicPem: publicKey.export({type: "spki", format: "pem"}) as string,
		pkcs8: privateKey.export({type: "pkcs8", format: "der"}) as Buffer,
		pkcs1: privateKey.export({type: "pkcs1", format: "der"}) as Buffer,
	};
}

interface CertOptions {
	cn: string;
	publicPem: string;
	issuer?: {cert: forge.pki.Certificate; privatePem: string};
	selfPrivatePem?: string;
	ca: boolean;
	serial: string;
	notBefore?: number;
	notAfter?: number;
	altNames?: string[];
}

function makeCert(o: CertOptions): forge.pki.Certificate {
	const cert = forge.pki.createCertificate();
	cert.publicKey = forge.pki.publicKeyFromPem(o.publicPem);
	cert.serialNumber = o.serial;
	const now = Date.now();
	cert.validity.notBefore = new Date(o.notBefore ?? now - DAY);
	cert.validity.notAfter = new Date(o.notAfter ?? now + 365 * DAY);
	const subject = [...(o.cn ? [{name: "commonName", value: o.cn}] : []), {name: "organizationName", value: "moddable-azure-iot device tests"}];
	cert.setSubject(subject);
	cert.setIssuer(o.issuer ? o.issuer.cert.subject.attributes : subject);
	const extensions: object[] = [
		{name: "basicConstraints", cA: o.ca, critical: true},
		o.ca
			? {name: "keyUsage", keyCertSign: true, cRLSign: true, critical: true}
			: {name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true},
		{name: "subjectKeyIdentifier"},
	];
	if (!o.ca) extensions.push({name: "extKeyUsage", clientAuth: true});
	if (o.issuer) extensions.push({name: "authorityKeyIdentifier", keyIdentifier: o.issuer.cert.generateSubjectKeyIdentifier().getBytes()});
	if (o.altNames) extensions.push({name: "subjectAltName", altNames: o.altNames.map(value => ({type: 2, value}))});
	cert.setExtensions(extensions);
	const signer = forge.pki.privateKeyFromPem(o.issuer?.privatePem ?? o.selfPrivatePem!) as forge.pki.rsa.PrivateKey;
	cert.sign(signer, forge.md.sha256.create());
	return cert;
}

/** forge's certificate with `spkiDer` in place of its key, re-signed (sha256WithRSA) by the issuer. */
function withPublicKey(cert: forge.pki.Certificate, spkiDer: Buffer, issuerPrivatePem: string): Buffer {
	// In node-forge, not in its typings.
	const tbs = (forge.pki as unknown as {getTBSCertificate(c: forge.pki.Certificate): forge.asn1.Asn1}).getTBSCertificate(cert);
	// [0] version, serial, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
	(tbs.value as forge.asn1.Asn1[])[6] = forge.asn1.fromDer(forge.util.createBuffer(spkiDer.toString("binary")));
	const tbsDer = Buffer.from(forge.asn1.toDer(tbs).getBytes(), "binary");
	const signature = crypto.sign("sha256", tbsDer, issuerPrivatePem);
	const {asn1} = forge;
	const certificate = asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
		tbs,
		asn1.create(asn1.Class.UNIVERSAL, asn1.Type.SEQUENCE, true, [
			asn1.create(asn1.Class.UNIVERSAL, asn1.Type.OID, false, asn1.oidToDer(forge.pki.oids.sha256WithRSAEncryption).getBytes()),
			asn1.create(asn1.Class.UNIVERSAL, asn1.Type.NULL, false, ""),
		]),
		asn1.create(asn1.Class.UNIVERSAL, asn1.Type.BITSTRING, false, "\0" + signature.toString("binary")),
	]);
	return Buffer.from(asn1.toDer(certificate).getBytes(), "binary");
}

function generate(): Stored {
	const now = Date.now();
	const rootKeys = rsaKeys(), interKeys = rsaKeys(), leafKeys = rsaKeys(), otherKeys = rsaKeys();
	const root = makeCert({cn: "Device Test Root CA", publicPem: rootKeys.publicPem, selfPrivatePem: rootKeys.privatePem, ca: true, serial: "11"});
	const inter = makeCert({cn: "Device Test Intermediate CA", publicPem: interKeys.publicPem, issuer: {cert: root, privatePem: rootKeys.privatePem}, ca: true, serial: "12"});
	const issuer = {cert: inter, privatePem: interKeys.privatePem};
	const leaf = makeCert({cn: DEVICE_ID, publicPem: leafKeys.publicPem, issuer, ca: false, serial: "13"});
	const expired = makeCert({cn: DEVICE_ID, publicPem: leafKeys.publicPem, issuer, ca: false, serial: "14", notBefore: now - 400 * DAY, notAfter: now - DAY});
	const future = makeCert({cn: DEVICE_ID, publicPem: leafKeys.publicPem, issuer, ca: false, serial: "15", notBefore: now + 365 * DAY, notAfter: now + 730 * DAY});
	const large = makeCert({cn: DEVICE_ID, publicPem: leafKeys.publicPem, issuer, ca: false, serial: "16",
		altNames: Array.from({length: 12}, (_, i) => `device-${i}.x509-device-1.example.com`)});
	const ecPair = crypto.generateKeyPairSync("ec", {namedCurve: "prime256v1"});
	// forge needs an RSA key to build the certificate; the EC key replaces it before signing.
	const ecShell = makeCert({cn: DEVICE_ID, publicPem: leafKeys.publicPem, issuer, ca: false, serial: "17"});
	const ecCert = withPublicKey(ecShell, ecPair.publicKey.export({type: "spki", format: "der"}) as Buffer, interKeys.privatePem);
	const leafPrivate = crypto.createPrivateKey(leafKeys.privatePem);
	const encrypted = leafPrivate.export({type: "pkcs8", format: "der", cipher: "aes-256-cbc", passphrase: "1234"}) as Buffer;
	const stored: Stored = {
		rootDer: b64(forgeDer(root)),
		intermediateDer: b64(forgeDer(inter)),
		leafCert: b64(forgeDer(leaf)),
		leafKey: b64(leafKeys.pkcs8),
		otherKey: b64(otherKeys.pkcs8),
		expiredCert: b64(forgeDer(expired)),
		futureCert: b64(forgeDer(future)),
		largeCert: b64(forgeDer(large)),
		ecCert: b64(ecCert),
		ecKey: b64(ecPair.privateKey.export({type: "pkcs8", format: "der"}) as Buffer),
		sec1Key: b64(ecPair.privateKey.export({type: "sec1", format: "der"}) as Buffer),
		encryptedKey: b64(encrypted),
		pkcs1Key: b64(leafKeys.pkcs1),
		intermediateKeyPem: interKeys.privatePem,
		leafPublicPem: leafKeys.publicPem,
		notAfter: String(leaf.validity.notAfter.getTime()),
	};
	return stored;
}

function certPem(der: Uint8Array): string {
	return new crypto.X509Certificate(der).toString();
}

function keyPem(der: Uint8Array): string {
	return crypto.createPrivateKey({key: Buffer.from(der), format: "der", type: "pkcs8"}).export({type: "pkcs8", format: "pem"}) as string;
}

function identity(cert: Uint8Array, key: Uint8Array): DeviceIdentity {
	return {cert, key, certPem: certPem(cert), keyPem: keyPem(key)};
}

let memo: ClientPki | undefined;

export function clientPki(): ClientPki {
	if (memo) return memo;
	const file = path.join(os.tmpdir(), `moddable-azure-iot-${VERSION}.json`);
	let stored: Stored | undefined;
	try {
		stored = JSON.parse(fs.readFileSync(file, "utf8")) as Stored;
		if (!(Number(stored.notAfter) > Date.now() + 7 * DAY)) stored = undefined;
	}
	catch {
		stored = undefined;
	}
	if (!stored) {
		stored = generate();
		const temp = `${file}.${process.pid}.tmp`;
		fs.writeFileSync(temp, JSON.stringify(stored), {mode: 0o600});
		fs.renameSync(temp, file);
	}
	const s = stored;
	const leafKey = unb64(s.leafKey);
	memo = {
		rootDer: unb64(s.rootDer),
		rootPem: certPem(unb64(s.rootDer)),
		intermediateDer: unb64(s.intermediateDer),
		intermediatePem: certPem(unb64(s.intermediateDer)),
		leaf: identity(unb64(s.leafCert), leafKey),
		otherKey: unb64(s.otherKey),
		expired: identity(unb64(s.expiredCert), leafKey),
		future: identity(unb64(s.futureCert), leafKey),
		ec: identity(unb64(s.ecCert), unb64(s.ecKey)),
		encryptedKey: unb64(s.encryptedKey),
		pkcs1Key: unb64(s.pkcs1Key),
		sec1Key: unb64(s.sec1Key),
		large: identity(unb64(s.largeCert), leafKey),
		notAfter: Number(s.notAfter),
		issue(o) {
			const cert = makeCert({
				cn: o.cn ?? DEVICE_ID, publicPem: s.leafPublicPem, ca: false, serial: crypto.randomBytes(8).toString("hex").replace(/^[89a-f]/, "1"),
				issuer: {cert: forge.pki.certificateFromAsn1(forge.asn1.fromDer(forge.util.createBuffer(Buffer.from(s.intermediateDer, "base64").toString("binary")))), privatePem: s.intermediateKeyPem},
				notBefore: o.notBefore?.getTime(), notAfter: o.notAfter?.getTime(), altNames: o.altNames,
			});
			return new Uint8Array(forgeDer(cert));
		},
	};
	return memo;
}
