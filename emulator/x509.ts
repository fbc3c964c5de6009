/*
 * X.509 as DPS and IoT Hub check it: the client certificate chain a device presents in the TLS
 * handshake, thumbprints, CA certificates uploaded to a service (verified by proof of possession or
 * uploaded as verified), and the path from a device's leaf to a verified CA. node:crypto does the
 * parsing and signature checks; nothing here is shared with the device core.
 */
import * as crypto from "node:crypto";
import type * as tls from "node:tls";
import {EmulatorHttpError} from "./registry.js";

export type CertificateService = "dps" | "hub";

/** A certificate chain as presented: the leaf first, then what the device sent with it. */
export type PresentedChain = crypto.X509Certificate[];

const MAX_DEPTH = 10;
const REMEMBERED_CHAINS = 10_000;
const THUMBPRINT = /^(?:[0-9A-F]{40}|[0-9A-F]{64})$/;
const CERTIFICATE_NAME = /^[A-Za-z0-9\-._]{1,256}$/;

/**
 * The intermediates each leaf came with in its last full handshake. A TLS session resumed from a
 * ticket restores only the peer's leaf in OpenSSL (the ticket carries the certificate, not its
 * chain), so a resumed CA-signed device would otherwise lose the path to its CA.
 */
const rememberedChains = new Map<string, Buffer[]>();

/** The client certificate chain of a TLS connection, or undefined when the client sent none. */
export function presentedChain(socket: tls.TLSSocket): PresentedChain | undefined {
	if (typeof socket.getPeerCertificate !== "function") return undefined;
	const first = socket.getPeerCertificate(true);
	if (!first || !first.raw) return undefined;
	const raws: Buffer[] = [];
	const seen = new Set<string>();
	for (let c: tls.DetailedPeerCertificate | undefined = first; c?.raw && !seen.has(c.fingerprint256) && raws.length < MAX_DEPTH; c = c.issuerCertificate) {
		seen.add(c.fingerprint256);
		raws.push(c.raw);
	}
	const leafKey = first.fingerprint256;
	if (raws.length === 1 && socket.isSessionReused()) {
		const rest = rememberedChains.get(leafKey);
		if (rest) raws.push(...rest);
	}
	else {
		rememberedChains.delete(leafKey);
		rememberedChains.set(leafKey, raws.slice(1));
		if (rememberedChains.size > REMEMBERED_CHAINS) rememberedChains.delete(rememberedChains.keys().next().value as string);
	}
	return raws.map(raw => new crypto.X509Certificate(raw));
}

/** The subject's common name (the first CN), or undefined. */
export function commonName(cert: crypto.X509Certificate): string | undefined {
	for (const line of cert.subject.split("\n")) {
		if (line.startsWith("CN=")) return line.slice(3);
	}
	return undefined;
}

export function sha1Thumbprint(cert: crypto.X509Certificate): string {
	return cert.fingerprint.replace(/:/g, "");
}

export function sha256Thumbprint(cert: crypto.X509Certificate): string {
	return cert.fingerprint256.replace(/:/g, "");
}

/**
 * A thumbprint as IoT Hub and the az CLI take it: SHA-1 (40 hex) or SHA-256 (64 hex), either
 * case, colons allowed (openssl's -fingerprint output). Upper case without colons comes back.
 */
export function normalizeThumbprint(value: unknown, field: string): string {
	const hex = typeof value === "string" ? value.replace(/:/g, "").toUpperCase() : "";
	if (!THUMBPRINT.test(hex)) throw new EmulatorHttpError(400, `"${field}" must be a SHA-1 (40 hex digits) or SHA-256 (64 hex digits) certificate thumbprint.`);
	return hex;
}

/** Whether `cert` is the certificate a thumbprint names (SHA-1 and SHA-256 thumbprints both count). */
export function matchesThumbprint(cert: crypto.X509Certificate, thumbprint: string | undefined): boolean {
	if (!thumbprint) return false;
	return thumbprint === sha1Thumbprint(cert) || thumbprint === sha256Thumbprint(cert);
}

export function parseCertificate(pem: unknown, field: string): crypto.X509Certificate {
	if (typeof pem !== "string" || !pem.includes("-----BEGIN CERTIFICATE-----"))
		throw new EmulatorHttpError(400, `"${field}" must be a PEM certificate (-----BEGIN CERTIFICATE-----).`);
	if (pem.split("-----BEGIN CERTIFICATE-----").length > 2) throw new EmulatorHttpError(400, `"${field}" holds more than one certificate: give one.`);
	try {
		return new crypto.X509Certificate(pem);
	}
	catch (error) {
		throw new EmulatorHttpError(400, `"${field}" is not a readable certificate (${(error as Error).message}).`);
	}
}

/** Why `cert` is not valid at `now`, or undefined. */
export function validityProblem(cert: crypto.X509Certificate, now = Date.now()): string | undefined {
	const name = commonName(cert) ?? cert.subject;
	if (Date.parse(cert.validTo) <= now) return `certificate "${name}" expired on ${new Date(cert.validTo).toISOString()}`;
	if (Date.parse(cert.validFrom) > now) return `certificate "${name}" is not valid before ${new Date(cert.validFrom).toISOString()}`;
	return undefined;
}

function sameCertificate(a: crypto.X509Certificate, b: crypto.X509Certificate): boolean {
	return a.fingerprint256 === b.fingerprint256;
}

/** `issuer` is a CA certificate that signed `cert`. */
function issued(issuer: crypto.X509Certificate, cert: crypto.X509Certificate): boolean {
	return issuer.ca && cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
}

export type ChainCheck =
	| {ok: true; path: crypto.X509Certificate[]}
	| {ok: false; reason: string};

/**
 * The path from the device's leaf to a verified CA, built only from what the device sent, and then
 * on up through the service's other certificates (`known`) so that a group for a CA above the
 * verified one still matches. DPS: "the device must send the certificate chain from the leaf
 * certificate to a certificate verified with proof-of-possession" (concepts-x509-attestation.md);
 * the verified certificate itself may be sent or not (devices commonly leave the root out).
 */
export function chainToVerified(presented: PresentedChain, verified: crypto.X509Certificate[], known: crypto.X509Certificate[] = [], now = Date.now()): ChainCheck {
	const [leaf, ...sent] = presented;
	const path = [leaf];
	let trusted = false;
	for (let current = leaf; !trusted && path.length <= MAX_DEPTH;) {
		const anchor = verified.find(ca => issued(ca, current));
		if (anchor) {
			path.push(anchor);
			trusted = true;
			break;
		}
		const next = sent.find(c => !path.includes(c) && issued(c, current));
		if (!next) break;
		path.push(next);
		current = next;
		if (verified.some(ca => sameCertificate(ca, next))) trusted = true;
	}
	if (!trusted) return {ok: false, reason: "the certificate chain does not lead to a verified CA certificate (send the leaf and every intermediate up to the verified CA)"};
	for (const cert of path) {
		const problem = validityProblem(cert, now);
		if (problem) return {ok: false, reason: problem};
	}
	for (let top = path[path.length - 1]; path.length <= MAX_DEPTH && !top.checkIssued(top);) {
		const above = known.find(c => !path.some(p => sameCertificate(p, c)) && issued(c, top));
		if (!above) break;
		path.push(above);
		top = above;
	}
	return {ok: true, path};
}

export interface CaCertificate {
	name: string;
	pem: string;
	cert: crypto.X509Certificate;
	verified: boolean;
	verificationCode?: string;
	created: string;
}

export interface CertificateView {
	name: string;
	service: CertificateService;
	subject: string;
	sha1Thumbprint: string;
	sha256Thumbprint: string;
	notAfter: string;
	verified: boolean;
}

/** One service's uploaded CA certificates (DPS and IoT Hub each keep their own, as in Azure). */
export class CertificateStore {
	readonly service: CertificateService;
	readonly #entries = new Map<string, CaCertificate>();

	constructor(service: CertificateService) {
		this.service = service;
	}

	#label(): string {
		return this.service === "dps" ? "DPS" : "IoT Hub";
	}

	static checkName(name: unknown): string {
		if (typeof name !== "string" || !CERTIFICATE_NAME.test(name)) throw new EmulatorHttpError(400, "\"name\" must be 1-256 characters of A-Z, a-z, 0-9, - . _");
		return name;
	}

	add(name: string, pem: string, cert: crypto.X509Certificate, verified: boolean): CertificateView {
		this.#entries.set(name, {name, pem, cert, verified, created: new Date().toISOString()});
		return this.view(name);
	}

	has(name: string): boolean {
		return this.#entries.has(name);
	}

	get(name: string): CaCertificate {
		const entry = this.#entries.get(name);
		if (!entry) throw new EmulatorHttpError(404, `No certificate "${name}" in the ${this.#label()} certificates.`);
		return entry;
	}

	delete(name: string): boolean {
		return this.#entries.delete(name);
	}

	/** A new proof-of-possession challenge; the previous one no longer counts. */
	setVerificationCode(name: string, code: string): void {
		this.get(name).verificationCode = code;
	}

	/**
	 * Proof of possession: a certificate whose CN is the code this store issued, signed by the CA's key.
	 * Throws naming what is wrong.
	 */
	verify(name: string, proof: crypto.X509Certificate): CertificateView {
		const entry = this.get(name);
		if (!entry.verificationCode) throw new EmulatorHttpError(400, `Certificate "${name}": generate a verification code first (POST /certificates/${name}/verification-code).`);
		if (commonName(proof) !== entry.verificationCode) throw new EmulatorHttpError(400, `The verification certificate's CN is not the verification code issued for "${name}" by ${this.#label()}.`);
		if (!proof.checkIssued(entry.cert) || !proof.verify(entry.cert.publicKey)) throw new EmulatorHttpError(400, `The verification certificate is not signed by the private key of "${name}".`);
		const problem = validityProblem(proof);
		if (problem) throw new EmulatorHttpError(400, `The verification certificate is not valid: ${problem}.`);
		entry.verified = true;
		entry.verificationCode = undefined;
		return this.view(name);
	}

	verifiedCertificates(): crypto.X509Certificate[] {
		return [...this.#entries.values()].filter(e => e.verified).map(e => e.cert);
	}

	certificates(): crypto.X509Certificate[] {
		return [...this.#entries.values()].map(e => e.cert);
	}

	view(name: string): CertificateView {
		const {cert, verified} = this.get(name);
		return {
			name, service: this.service, subject: cert.subject.replace(/\n/g, ", "), sha1Thumbprint: sha1Thumbprint(cert), sha256Thumbprint: sha256Thumbprint(cert),
			notAfter: new Date(cert.validTo).toISOString(), verified,
		};
	}

	views(): CertificateView[] {
		return [...this.#entries.keys()].map(name => this.view(name));
	}
}

/** A proof-of-possession challenge in the form Azure issues them (hex). */
export function newVerificationCode(): string {
	return crypto.randomBytes(24).toString("hex").toUpperCase();
}
