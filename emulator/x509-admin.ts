/*
 * The service side of X.509, as the az CLI does it: CA certificates uploaded to DPS, to the hub or
 * to both, their proof of possession, X.509 enrollments and enrollment groups, and hub device
 * identities created directly with thumbprint or CA authentication. Certificates are public and
 * may be printed; nothing here handles a private key.
 */
import type {Context} from "./context.js";
import {type DeviceAuthentication, EmulatorHttpError, type Enrollment, type EnrollmentGroup, type HubDevice, isRegistrationId, newHubDevice, registrationKey} from "./registry.js";
import {isBase64Key, newSymmetricKey} from "./sas.js";
import {noteSecret} from "./secret-log.js";
import {isPlainObject} from "./wire.js";
import {parseDeviceAuthentication, parseEnrollmentX509, parseGroupX509} from "./x509-attestation.js";
import {type CertificateService, CertificateStore, type CertificateView, newVerificationCode, parseCertificate, sha1Thumbprint, sha256Thumbprint} from "./x509.js";

export type CertificateTarget = CertificateService | "both";

export interface CertificateInput {
	name: string;
	pem: string;
	/** Uploaded as verified (Azure's "Set certificate status to verified on upload", az --verified). */
	verified?: boolean;
	target: CertificateTarget;
}

export interface X509EnrollmentInput {
	/** Defaults to the certificate's CN. */
	registrationId?: string;
	deviceId?: string;
	enabled?: boolean;
	initialTwin?: object;
	attestation: {type: "x509"; certificate?: string; secondaryCertificate?: string; thumbprints?: {primary: string; secondary?: string}};
}

export interface X509EnrollmentGroupInput {
	groupId: string;
	enabled?: boolean;
	attestation: {type: "x509"; caName?: string; certificate?: string};
}

export interface DeviceInput {
	deviceId: string;
	authentication?: {type: "sas"; symmetricKey?: string} | {type: "selfSigned"; primaryThumbprint: string; secondaryThumbprint?: string} | {type: "certificateAuthority"};
}

export type DeviceAuthenticationView =
	| {type: "sas"; symmetricKey: string}
	| {type: "selfSigned"; primaryThumbprint: string; secondaryThumbprint?: string}
	| {type: "certificateAuthority"};

const DEVICE_ID = /^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,128}$/;

function targetOf(value: unknown, optional: boolean): CertificateTarget | undefined {
	if (value === undefined && optional) return undefined;
	if (value !== "dps" && value !== "hub" && value !== "both") throw new EmulatorHttpError(400, "\"target\" must be \"dps\", \"hub\" or \"both\".");
	return value;
}

export class X509Admin {
	#ctx: Context;

	constructor(ctx: Context) {
		this.#ctx = ctx;
	}

	#stores(target: CertificateTarget): CertificateStore[] {
		const {dpsCertificates, hubCertificates} = this.#ctx.registry;
		return target === "both" ? [dpsCertificates, hubCertificates] : target === "dps" ? [dpsCertificates] : [hubCertificates];
	}

	/** The stores `target` names, or without one every store that holds `name`; 404 when none does. */
	#holding(name: string, target: unknown): CertificateStore[] {
		const t = targetOf(target, true);
		const stores = t ? this.#stores(t) : this.#stores("both").filter(s => s.has(name));
		if (!stores.length) throw new EmulatorHttpError(404, `No certificate "${name}" in DPS or the hub.`);
		for (const store of stores) store.get(name);
		return stores;
	}

	addCertificate(input: CertificateInput): CertificateView[] {
		if (!isPlainObject(input)) throw new EmulatorHttpError(400, "Expected {\"name\",\"pem\",\"verified\"?,\"target\":\"dps\"|\"hub\"|\"both\"}.");
		const checkedName = CertificateStore.checkName(input.name);
		const target = targetOf(input.target, false) as CertificateTarget;
		if (input.verified !== undefined && typeof input.verified !== "boolean") throw new EmulatorHttpError(400, "\"verified\" must be true or false.");
		const cert = parseCertificate(input.pem, "pem");
		const stores = this.#stores(target);
		for (const store of stores) {
			if (store.has(checkedName)) throw new EmulatorHttpError(409, `A certificate "${checkedName}" already exists in ${store.service === "dps" ? "DPS" : "the hub"}: delete it first.`);
		}
		const views = stores.map(store => store.add(checkedName, input.pem, cert, input.verified ?? false));
		this.#ctx.log(`service: certificate ${checkedName} (${cert.subject.replace(/\n/g, ", ")}) uploaded to ${target}${input.verified ? " as verified" : ""}`);
		return views;
	}

	/** One code for every store named (or holding the name): one proof then verifies it in each. */
	verificationCode(name: string, target?: unknown): {verificationCode: string} {
		const verificationCode = newVerificationCode();
		for (const store of this.#holding(name, target)) store.setVerificationCode(name, verificationCode);
		return {verificationCode};
	}

	verify(name: string, pem: unknown, target?: unknown): CertificateView[] {
		const proof = parseCertificate(pem, "pem");
		const views = this.#holding(name, target).map(store => store.verify(name, proof));
		this.#ctx.log(`service: certificate ${name} verified (proof of possession)`);
		return views;
	}

	certificates(): CertificateView[] {
		return this.#stores("both").flatMap(store => store.views());
	}

	deleteCertificate(name: string, target?: unknown): void {
		for (const store of this.#holding(name, target)) store.delete(name);
	}

	addEnrollment(e: X509EnrollmentInput): {registrationId: string; attestation: {type: "x509"; thumbprints: {primary: string; secondary?: string}}} {
		const attestation = e.attestation as unknown as Record<string, unknown>;
		if (e.registrationId !== undefined && !isRegistrationId(e.registrationId))
			throw new EmulatorHttpError(400, "\"registrationId\" must be 1-128 characters of A-Z, a-z, 0-9, - . _ : ending in a letter, digit or -");
		const {registrationId, x509} = parseEnrollmentX509(attestation, e.registrationId);
		if (!isRegistrationId(registrationId) || registrationId.length > 64)
			throw new EmulatorHttpError(400, `The registration id "${registrationId}" is not one DPS takes with X.509 (at most 64 characters, the CN's limit, of A-Z a-z 0-9 - . _ : ending in a letter, digit or -).`);
		if (e.deviceId !== undefined && (typeof e.deviceId !== "string" || !DEVICE_ID.test(e.deviceId)))
			throw new EmulatorHttpError(400, "\"deviceId\" is not a valid IoT Hub device id.");
		const enrollment: Enrollment = {registrationId, x509, deviceId: e.deviceId, enabled: e.enabled ?? true, initialTwin: e.initialTwin};
		this.#ctx.registry.enrollments.set(registrationKey(registrationId), enrollment);
		this.#ctx.log(`service: X.509 enrollment ${registrationId} added (primary thumbprint ${x509.primary})`);
		return {registrationId, attestation: {type: "x509", thumbprints: {...x509}}};
	}

	addEnrollmentGroup(g: X509EnrollmentGroupInput): {groupId: string; attestation: {type: "x509"; caName?: string; sha1Thumbprint: string; sha256Thumbprint: string}} {
		if (!isRegistrationId(g.groupId)) throw new EmulatorHttpError(400, "\"groupId\" must be 1-128 characters of A-Z, a-z, 0-9, - . _ : ending in a letter, digit or -");
		const ca = parseGroupX509(this.#ctx.registry, g.attestation as unknown as Record<string, unknown>);
		const cert = "caName" in ca ? this.#ctx.registry.dpsCertificates.get(ca.caName).cert : parseCertificate(ca.certificatePem, "attestation.certificate");
		const group: EnrollmentGroup = {groupId: g.groupId, x509: ca, enabled: g.enabled ?? true};
		this.#ctx.registry.groups.set(g.groupId, group);
		this.#ctx.log(`service: X.509 enrollment group ${g.groupId} added (CA ${cert.subject.replace(/\n/g, ", ")})`);
		return {groupId: g.groupId, attestation: {type: "x509", ...("caName" in ca ? {caName: ca.caName} : {}), sha1Thumbprint: sha1Thumbprint(cert), sha256Thumbprint: sha256Thumbprint(cert)}};
	}

	/** A hub device identity, without DPS (az iot hub device-identity create). */
	addDevice(d: DeviceInput): {deviceId: string; authentication: DeviceAuthenticationView} {
		if (!isPlainObject(d) || typeof d.deviceId !== "string" || !DEVICE_ID.test(d.deviceId)) throw new EmulatorHttpError(400, "\"deviceId\" is not a valid IoT Hub device id.");
		const registry = this.#ctx.registry;
		if (registry.devices.has(d.deviceId)) throw new EmulatorHttpError(409, `Device "${d.deviceId}" already exists.`);
		const authentication = parseDeviceAuthentication(d.authentication, newSymmetricKey, isBase64Key);
		if (authentication.type === "sas") noteSecret("key", authentication.key);
		const device: HubDevice = newHubDevice(d.deviceId, d.deviceId, authentication, this.#ctx.settings.hubName);
		registry.devices.set(d.deviceId, device);
		this.#ctx.log(`service: hub device ${d.deviceId} added (${authentication.type})`);
		return {deviceId: d.deviceId, authentication: authenticationView(authentication)};
	}
}

function authenticationView(a: DeviceAuthentication): DeviceAuthenticationView {
	switch (a.type) {
	case "sas": return {type: "sas", symmetricKey: a.key};
	case "selfSigned": return {type: "selfSigned", primaryThumbprint: a.primary, ...(a.secondary ? {secondaryThumbprint: a.secondary} : {})};
	default: return {type: "certificateAuthority"};
	}
}
