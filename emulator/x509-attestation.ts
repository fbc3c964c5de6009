/*
 * X.509 decisions of the emulated services: which DPS enrollment a device certificate chain
 * attests to, whether the hub accepts a device's chain, and the checks of the X.509 forms of the
 * service API (enrollments, enrollment groups, hub devices, CA certificates).
 */
import type * as crypto from "node:crypto";
import {type DeviceAuthentication, type Enrollment, type EnrollmentGroup, EmulatorHttpError, type Registry, type X509GroupCa, type X509Thumbprints, registrationKey} from "./registry.js";
import {isPlainObject} from "./wire.js";
import {type PresentedChain, chainToVerified, commonName, matchesThumbprint, normalizeThumbprint, parseCertificate, sha256Thumbprint, validityProblem} from "./x509.js";

/** `commonName`: the leaf's CN for X.509, which becomes the device id unless an individual enrollment names one. */
export type DpsAttestation =
	| {kind: "individual"; enrollment: Enrollment; auth: DeviceAuthentication; commonName?: string}
	| {kind: "group"; group: EnrollmentGroup; auth: DeviceAuthentication; commonName?: string};

export type Decision<T> = {ok: true; value: T} | {ok: false; reason: string};

/** The CA certificate an enrollment group names, if it still exists. */
function groupCertificate(registry: Registry, ca: X509GroupCa): crypto.X509Certificate | undefined {
	if ("caName" in ca) return registry.dpsCertificates.has(ca.caName) ? registry.dpsCertificates.get(ca.caName).cert : undefined;
	return parseCertificate(ca.certificatePem, "certificate");
}

/**
 * DPS's order (concepts-x509-attestation.md): the individual enrollment for the registration id
 * first, then a group for the first CA above the leaf in the chain, and so on up to the root; the
 * first entry found decides (a disabled one refuses later, in the operation status).
 */
export function attestX509(registry: Registry, registrationId: string, chain: PresentedChain, now = Date.now()): Decision<DpsAttestation> {
	const leaf = chain[0];
	const cn = commonName(leaf);
	// Registration ids are case-insensitive in DPS, so the CN is compared as one.
	if (cn === undefined || registrationKey(cn) !== registrationKey(registrationId))
		return {ok: false, reason: `the certificate's CN ("${cn ?? ""}") is not the registration id "${registrationId}"`};
	const expired = validityProblem(leaf, now);
	if (expired) return {ok: false, reason: expired};
	const individual = registry.enrollments.get(registrationKey(registrationId));
	if (individual) {
		if (!individual.x509) return {ok: false, reason: "the individual enrollment for this registration id uses symmetric key attestation"};
		if (!matchesThumbprint(leaf, individual.x509.primary) && !matchesThumbprint(leaf, individual.x509.secondary))
			return {ok: false, reason: "the certificate is neither the primary nor the secondary certificate of the individual enrollment"};
		return {ok: true, value: {kind: "individual", enrollment: individual, auth: {type: "selfSigned", ...individual.x509}, commonName: cn}};
	}
	const groups = [...registry.groups.values()].flatMap(group => {
		const cert = group.x509 ? groupCertificate(registry, group.x509) : undefined;
		return cert ? [{group, cert}] : [];
	});
	const path = chainToVerified(chain, registry.dpsCertificates.verifiedCertificates(), [...registry.dpsCertificates.certificates(), ...groups.map(g => g.cert)], now);
	if (!path.ok) return {ok: false, reason: path.reason};
	for (const cert of path.path.slice(1)) {
		const match = groups.find(g => g.cert.fingerprint256 === cert.fingerprint256);
		if (match) return {ok: true, value: {kind: "group", group: match.group, auth: {type: "certificateAuthority"}, commonName: cn}};
	}
	return {ok: false, reason: "no individual enrollment for this registration id and no enrollment group for any CA in its chain"};
}

/**
 * The hub's check of an X.509 device at CONNECT. Thumbprint devices: "IoTHub validates only if the
 * cert is not expired and if the thumbprints match" (Azure/iotedge#621), so their CN is free (an
 * individual enrollment may name a device id other than the CN). CA-signed devices: CN = device id,
 * and a chain to a CA verified in the hub (authenticate-authorize-x509.md).
 */
export function authenticateHubX509(registry: Registry, deviceId: string, auth: DeviceAuthentication, chain: PresentedChain, now = Date.now()): string | undefined {
	const leaf = chain[0];
	if (auth.type === "selfSigned") {
		const expired = validityProblem(leaf, now);
		if (expired) return expired;
		if (!matchesThumbprint(leaf, auth.primary) && !matchesThumbprint(leaf, auth.secondary)) return "the certificate matches neither the device's primary nor its secondary thumbprint";
		return undefined;
	}
	if (auth.type !== "certificateAuthority") return "the device authenticates with a SAS token, not a certificate";
	const cn = commonName(leaf);
	if (cn !== deviceId) return `the certificate's CN ("${cn ?? ""}") is not the device id`;
	const path = chainToVerified(chain, registry.hubCertificates.verifiedCertificates(), [], now);
	return path.ok ? undefined : path.reason;
}

// ------------------------------------------------------------------ service API forms

/**
 * `{"type":"x509","certificate"?: pem, "secondaryCertificate"?: pem, "thumbprints"?: {"primary","secondary"?}}`
 * for an individual enrollment (az iot dps enrollment create --attestation-type x509 --certificate-path).
 * With a certificate, its CN must be the registration id (DPS takes the registration id from it).
 */
export function parseEnrollmentX509(input: Record<string, unknown>, registrationId: string | undefined): {registrationId: string; x509: X509Thumbprints} {
	const certificate = input.certificate === undefined ? undefined : parseCertificate(input.certificate, "attestation.certificate");
	const secondaryCertificate = input.secondaryCertificate === undefined ? undefined : parseCertificate(input.secondaryCertificate, "attestation.secondaryCertificate");
	const thumbprints = input.thumbprints;
	if (!certificate === (thumbprints === undefined)) throw new EmulatorHttpError(400, "An X.509 individual enrollment needs exactly one of \"attestation.certificate\" (PEM) and \"attestation.thumbprints\" ({\"primary\",\"secondary\"?}).");
	let x509: X509Thumbprints;
	if (certificate) {
		const cn = commonName(certificate);
		if (cn === undefined) throw new EmulatorHttpError(400, "The certificate has no subject CN: DPS takes the registration id from it.");
		if (registrationId !== undefined && registrationKey(cn) !== registrationKey(registrationId))
			throw new EmulatorHttpError(400, `The certificate's CN ("${cn}") is not the registration id "${registrationId}": the leaf's CN must be the registration id.`);
		registrationId ??= cn;
		x509 = {primary: sha256Thumbprint(certificate), ...(secondaryCertificate ? {secondary: sha256Thumbprint(secondaryCertificate)} : {})};
	}
	else {
		if (!isPlainObject(thumbprints)) throw new EmulatorHttpError(400, "\"attestation.thumbprints\" must be {\"primary\", \"secondary\"?}.");
		if (secondaryCertificate) throw new EmulatorHttpError(400, "Give the secondary as \"thumbprints.secondary\" when the primary is a thumbprint.");
		x509 = {
			primary: normalizeThumbprint(thumbprints.primary, "attestation.thumbprints.primary"),
			...(thumbprints.secondary !== undefined ? {secondary: normalizeThumbprint(thumbprints.secondary, "attestation.thumbprints.secondary")} : {}),
		};
	}
	if (registrationId === undefined) throw new EmulatorHttpError(400, "\"registrationId\" is needed with thumbprints (it is the certificate's CN).");
	return {registrationId, x509};
}

/**
 * `{"type":"x509","caName": name}` (a CA in DPS's certificates, az ... enrollment-group create --ca-name) or
 * `{"type":"x509","certificate": pem}` (a root or intermediate held by the group, --certificate-path).
 */
export function parseGroupX509(registry: Registry, input: Record<string, unknown>): X509GroupCa {
	if ((input.caName === undefined) === (input.certificate === undefined))
		throw new EmulatorHttpError(400, "An X.509 enrollment group needs exactly one of \"attestation.caName\" (a certificate uploaded to DPS) and \"attestation.certificate\" (PEM of a root or intermediate CA).");
	if (input.caName !== undefined) {
		if (typeof input.caName !== "string" || !registry.dpsCertificates.has(input.caName))
			throw new EmulatorHttpError(404, `No certificate "${String(input.caName)}" in DPS: upload it first (POST /certificates with "target":"dps" or "both").`);
		return {caName: input.caName};
	}
	const cert = parseCertificate(input.certificate, "attestation.certificate");
	if (!cert.ca) throw new EmulatorHttpError(400, "\"attestation.certificate\" is not a CA certificate (basicConstraints CA:TRUE): an enrollment group holds a root or intermediate CA.");
	return {certificatePem: input.certificate as string};
}

/**
 * A hub device identity as `az iot hub device-identity create --am` makes them:
 * `{"type":"sas","symmetricKey"?}`, `{"type":"selfSigned","primaryThumbprint","secondaryThumbprint"?}`
 * or `{"type":"certificateAuthority"}`.
 */
export function parseDeviceAuthentication(input: unknown, newKey: () => string, isKey: (k: unknown) => boolean): DeviceAuthentication {
	const a = input === undefined ? {type: "sas"} : input;
	if (!isPlainObject(a)) throw new EmulatorHttpError(400, "\"authentication\" must be an object with a \"type\": sas, selfSigned or certificateAuthority.");
	switch (a.type) {
	case "sas":
		if (a.symmetricKey !== undefined && !isKey(a.symmetricKey)) throw new EmulatorHttpError(400, "\"authentication.symmetricKey\" must be base64.");
		return {type: "sas", key: (a.symmetricKey as string | undefined) ?? newKey()};
	case "selfSigned":
		return {
			type: "selfSigned",
			primary: normalizeThumbprint(a.primaryThumbprint, "authentication.primaryThumbprint"),
			...(a.secondaryThumbprint !== undefined ? {secondary: normalizeThumbprint(a.secondaryThumbprint, "authentication.secondaryThumbprint")} : {}),
		};
	case "certificateAuthority":
		return {type: "certificateAuthority"};
	default:
		throw new EmulatorHttpError(400, "\"authentication.type\" must be sas, selfSigned or certificateAuthority.");
	}
}
