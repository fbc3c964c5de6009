/*
 * The emulator's PKI: a root CA, an intermediate and a server leaf, plus the broken variants used to
 * examine a device's TLS checks. Keys come from node:crypto (native, fast on a 2-core machine);
 * node-forge only assembles the certificates. Everything is cached on disk keyed by PKI_VERSION, so
 * the root a device pins stays the same across emulator restarts that share a data directory.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as tls from "node:tls";
import forge from "node-forge";

/** Bump when the certificate layout changes: the cache is keyed by it. */
export const PKI_VERSION = "emulator-pki-v1";

/** Node's defaults plus the RSA-key-exchange CBC/GCM suites that small TLS 1.2 clients offer; every TLS listener serves these. */
export const SERVER_CIPHERS = `${tls.DEFAULT_CIPHERS}:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-SHA:AES128-GCM-SHA256:AES128-SHA256:AES128-SHA:AES256-SHA256:AES256-SHA`;

export type TlsProfile = "valid" | "untrustedRoot" | "wrongHost" | "expired" | "selfSigned";
export const TLS_PROFILES: readonly TlsProfile[] = Object.freeze(["valid", "untrustedRoot", "wrongHost", "expired", "selfSigned"]);

export interface KeyAndCert {key: string; cert: string}

interface CaCache {
	version: string;
	root: KeyAndCert;
	intermediate: KeyAndCert;
	/** A second, unrelated hierarchy for the "untrustedRoot" profile. */
	otherRoot: KeyAndCert;
	otherIntermediate: KeyAndCert;
}

interface LeafCache {
	version: string;
	hosts: string[];
	rootFingerprint: string;
	valid: KeyAndCert;
	untrusted: KeyAndCert;
	wrongHost: KeyAndCert;
	expired: KeyAndCert;
	selfSigned: KeyAndCert;
}

export interface ServedIdentity {
	key: string;
	/** Leaf first, then the intermediate (none for "selfSigned"). */
	certChain: string;
}

export interface Pki {
	rootPem: string;
	rootDer: Uint8Array;
	rootPemPath: string;
	rootDerPath: string;
	identity(profile: TlsProfile): ServedIdentity;
}

const DAY = 24 * 3600 * 1000;
export const WRONG_HOST = "not-localhost.invalid";

function newKeyPair(): {privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; pem: string} {
	// RSA on purpose: Moddable's TLS client offers RSA key exchange/signature suites only.
	const pair = crypto.generateKeyPairSync("rsa", {modulusLength: 2048});
	const pem = pair.privateKey.export({type: "pkcs1", format: "pem"}).toString();
	const publicPem = pair.publicKey.export({type: "spki", format: "pem"}).toString();
	return {
		privateKey: forge.pki.privateKeyFromPem(pem) as forge.pki.rsa.PrivateKey,
		publicKey: forge.pki.publicKeyFromPem(publicPem) as forge.pki.rsa.PublicKey,
		pem,
	};
}

function serial(): string {
	// Positive, 16 bytes, as CAs issue them.
	return "1" + crypto.randomBytes(15).toString("hex");
}

interface CertSpec {
	commonName: string;
	publicKey: forge.pki.rsa.PublicKey;
	signingKey: forge.pki.rsa.PrivateKey;
	issuer?: forge.pki.Certificate;
	ca?: {pathLen?: number};
	hosts?: string[];
	notBefore: Date;
	notAfter: Date;
}

function makeCert(spec: CertSpec): forge.pki.Certificate {
	const cert = forge.pki.createCertificate();
	cert.publicKey = spec.publicKey;
	cert.serialNumber = serial();
	cert.validity.notBefore = spec.notBefore;
	cert.validity.notAfter = spec.notAfter;
	const subject = [
		{name: "commonName", value: spec.commonName},
		{name: "organizationName", value: "Moddable Azure IoT emulator"},
	];
	cert.setSubject(subject);
	cert.setIssuer(spec.issuer ? spec.issuer.subject.attributes : subject);
	const extensions: object[] = [];
	if (spec.ca) {
		extensions.push({name: "basicConstraints", cA: true, critical: true, ...(spec.ca.pathLen !== undefined ? {pathLenConstraint: spec.ca.pathLen} : {})});
		extensions.push({name: "keyUsage", keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true});
	}
	else {
		extensions.push({name: "basicConstraints", cA: false, critical: true});
		extensions.push({name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true});
		extensions.push({name: "extKeyUsage", serverAuth: true});
		extensions.push({
			name: "subjectAltName",
			altNames: (spec.hosts ?? []).map(h => (/^\d+\.\d+\.\d+\.\d+$/.test(h) ? {type: 7, ip: h} : {type: 2, value: h})),
		});
	}
	extensions.push({name: "subjectKeyIdentifier"});
	if (spec.issuer) {
		const issuerKeyId = spec.issuer.generateSubjectKeyIdentifier().getBytes();
		extensions.push({name: "authorityKeyIdentifier", keyIdentifier: issuerKeyId});
	}
	cert.setExtensions(extensions);
	cert.sign(spec.signingKey, forge.md.sha256.create());
	return cert;
}

function pem(cert: forge.pki.Certificate): string {
	return forge.pki.certificateToPem(cert).replace(/\r\n/g, "\n");
}

function certFromPem(text: string): forge.pki.Certificate {
	return forge.pki.certificateFromPem(text);
}

function keyFromPem(text: string): forge.pki.rsa.PrivateKey {
	return forge.pki.privateKeyFromPem(text) as forge.pki.rsa.PrivateKey;
}

function hierarchy(label: string, now: number): {root: KeyAndCert; intermediate: KeyAndCert} {
	const rootKeys = newKeyPair();
	const root = makeCert({
		commonName: `Azure IoT Emulator ${label} Root CA`,
		publicKey: rootKeys.publicKey, signingKey: rootKeys.privateKey, ca: {},
		notBefore: new Date(now - DAY), notAfter: new Date(now + 10 * 365 * DAY),
	});
	const intKeys = newKeyPair();
	const intermediate = makeCert({
		commonName: `Azure IoT Emulator ${label} Intermediate CA`,
		publicKey: intKeys.publicKey, signingKey: rootKeys.privateKey, issuer: root, ca: {pathLen: 0},
		notBefore: new Date(now - DAY), notAfter: new Date(now + 5 * 365 * DAY),
	});
	return {root: {key: rootKeys.pem, cert: pem(root)}, intermediate: {key: intKeys.pem, cert: pem(intermediate)}};
}

function stillValid(certPem: string, now: number, marginDays: number): boolean {
	try {
		const cert = certFromPem(certPem);
		return cert.validity.notAfter.getTime() > now + marginDays * DAY && cert.validity.notBefore.getTime() <= now;
	}
	catch {
		return false;
	}
}

export function readJson<T>(file: string): T | undefined {
	try {
		return JSON.parse(fs.readFileSync(file, "utf8")) as T;
	}
	catch {
		return undefined;
	}
}

/**
 * Writes `file` only if nobody else did first, and returns whichever content won: emulators started
 * in parallel on one data directory then agree on a single root.
 */
export function publishOnce<T>(file: string, value: T): T {
	const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`;
	fs.writeFileSync(tmp, JSON.stringify(value), {mode: 0o600});
	try {
		fs.linkSync(tmp, file);
		return value;
	}
	catch (error) {
		if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
		return readJson<T>(file) ?? value;
	}
	finally {
		fs.rmSync(tmp, {force: true});
	}
}

/** Replaces a stale cache file (expired or from an old version) without racing readers. */
function replaceStale(file: string): void {
	try {
		fs.renameSync(file, `${file}.stale.${process.pid}.${Date.now()}`);
	}
	catch {
		// another process already moved it
	}
	for (const entry of fs.readdirSync(path.dirname(file))) {
		if (entry.startsWith(path.basename(file) + ".stale.")) fs.rmSync(path.join(path.dirname(file), entry), {force: true});
	}
}

function loadCa(dir: string, now: number): CaCache {
	const file = path.join(dir, `${PKI_VERSION}-ca.json`);
	const cached = readJson<CaCache>(file);
	if (cached && cached.version === PKI_VERSION && stillValid(cached.root.cert, now, 30) && stillValid(cached.intermediate.cert, now, 30) && stillValid(cached.otherIntermediate.cert, now, 30))
		return cached;
	if (cached) replaceStale(file);
	const valid = hierarchy("", now);
	const other = hierarchy("Untrusted", now);
	return publishOnce<CaCache>(file, {
		version: PKI_VERSION,
		root: valid.root, intermediate: valid.intermediate,
		otherRoot: other.root, otherIntermediate: other.intermediate,
	});
}

function fingerprint(certPem: string): string {
	return crypto.createHash("sha256").update(certPem).digest("hex").slice(0, 16);
}

function loadLeaves(dir: string, ca: CaCache, hosts: string[], now: number): LeafCache {
	const rootFingerprint = fingerprint(ca.root.cert);
	const hostKey = crypto.createHash("sha256").update(hosts.join(",")).digest("hex").slice(0, 12);
	const file = path.join(dir, `${PKI_VERSION}-leaf-${rootFingerprint}-${hostKey}.json`);
	const cached = readJson<LeafCache>(file);
	if (cached && cached.version === PKI_VERSION && cached.rootFingerprint === rootFingerprint && cached.hosts.join(",") === hosts.join(",")
		&& stillValid(cached.valid.cert, now, 7) && stillValid(cached.untrusted.cert, now, 7) && stillValid(cached.wrongHost.cert, now, 7))
		return cached;
	if (cached) replaceStale(file);

	const intermediate = certFromPem(ca.intermediate.cert);
	const intermediateKey = keyFromPem(ca.intermediate.key);
	const otherIntermediate = certFromPem(ca.otherIntermediate.cert);
	const otherIntermediateKey = keyFromPem(ca.otherIntermediate.key);
	// One leaf key serves the variants: only the certificates differ in what is being examined.
	const leafKeys = newKeyPair();
	const notBefore = new Date(now - DAY);
	const notAfter = new Date(now + 365 * DAY);
	const leaf = (issuer: forge.pki.Certificate, issuerKey: forge.pki.rsa.PrivateKey, leafHosts: string[], from = notBefore, to = notAfter) =>
		pem(makeCert({commonName: leafHosts[0], publicKey: leafKeys.publicKey, signingKey: issuerKey, issuer, hosts: leafHosts, notBefore: from, notAfter: to}));
	const selfKeys = newKeyPair();
	const selfSigned = pem(makeCert({
		commonName: hosts[0], publicKey: selfKeys.publicKey, signingKey: selfKeys.privateKey, hosts, notBefore, notAfter,
	}));
	return publishOnce<LeafCache>(file, {
		version: PKI_VERSION,
		hosts,
		rootFingerprint,
		valid: {key: leafKeys.pem, cert: leaf(intermediate, intermediateKey, hosts)},
		untrusted: {key: leafKeys.pem, cert: leaf(otherIntermediate, otherIntermediateKey, hosts)},
		wrongHost: {key: leafKeys.pem, cert: leaf(intermediate, intermediateKey, [WRONG_HOST])},
		expired: {key: leafKeys.pem, cert: leaf(intermediate, intermediateKey, hosts, new Date(now - 400 * DAY), new Date(now - 2 * DAY))},
		selfSigned: {key: selfKeys.pem, cert: selfSigned},
	});
}

export function writeAtomically(file: string, data: string | Uint8Array): void {
	try {
		const current = fs.readFileSync(file);
		if (Buffer.compare(current, Buffer.from(data)) === 0) return;
	}
	catch {
		// absent
	}
	const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString("hex")}.tmp`;
	fs.writeFileSync(tmp, data);
	fs.renameSync(tmp, file);
}

/** The host names a leaf is issued for: always localhost and 127.0.0.1, plus the hub's host name. */
export function leafHosts(hubName: string): string[] {
	const host = hubName.replace(/:\d+$/, "").toLowerCase();
	const hosts = ["localhost", "127.0.0.1"];
	if (host && !hosts.includes(host)) hosts.push(host);
	return hosts;
}

export function loadPki(dataDir: string, hosts: string[]): Pki {
	fs.mkdirSync(dataDir, {recursive: true});
	const now = Date.now();
	const ca = loadCa(dataDir, now);
	const leaves = loadLeaves(dataDir, ca, hosts, now);
	const rootDer = new Uint8Array(Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(certFromPem(ca.root.cert))).getBytes(), "binary"));
	const rootPemPath = path.join(dataDir, "emulator-root-ca.pem");
	const rootDerPath = path.join(dataDir, "emulator-root-ca.der");
	writeAtomically(rootPemPath, ca.root.cert);
	writeAtomically(rootDerPath, rootDer);
	return {
		rootPem: ca.root.cert,
		rootDer,
		rootPemPath,
		rootDerPath,
		identity(profile: TlsProfile): ServedIdentity {
			switch (profile) {
			case "valid": return {key: leaves.valid.key, certChain: leaves.valid.cert + ca.intermediate.cert};
			case "untrustedRoot": return {key: leaves.untrusted.key, certChain: leaves.untrusted.cert + ca.otherIntermediate.cert};
			case "wrongHost": return {key: leaves.wrongHost.key, certChain: leaves.wrongHost.cert + ca.intermediate.cert};
			case "expired": return {key: leaves.expired.key, certChain: leaves.expired.cert + ca.intermediate.cert};
			case "selfSigned": return {key: leaves.selfSigned.key, certChain: leaves.selfSigned.cert};
			default: throw new Error(`Unknown TLS profile "${String(profile)}": use one of ${TLS_PROFILES.join(", ")}.`);
			}
		},
	};
}
