/*
 * X.509 in the emulator, examined with a raw MQTT client presenting client certificates: proof of
 * possession, DPS's chain and matching rules, the hub's separate CA list, password rules, TLS
 * session resumption and the HTTP API forms.
 */
import test from "ava";
import * as tls from "node:tls";
import {type Emulator, EmulatorHttpError, startEmulator} from "../emulator/index.js";
import {ConnackError, Inbox, connect, end, hubCredentials, parseDpsReply, publish, subscribe, uniqueId, type DpsReply} from "./helpers/emulator-client.js";
import {type DeviceCredential, fleet} from "./helpers/x509.js";

let emu: Emulator;
test.before(async () => {
	emu = await startEmulator();
});
test.after.always(async () => {
	await emu?.close();
});

const tlsOf = (c: DeviceCredential) => ({cert: c.chainPem, key: c.keyPem});

/** Registers over DPS with a certificate and no password; returns the final reply (or the first refusal). */
async function provisionX509(e: Emulator, registrationId: string, credential: DeviceCredential, options: {password?: string; body?: string} = {}): Promise<DpsReply> {
	const client = await connect(e, {clientId: registrationId, username: `${e.idScope}/registrations/${registrationId}/api-version=2019-03-31`, password: options.password}, tlsOf(credential));
	try {
		const inbox = new Inbox(client);
		await subscribe(client, "$dps/registrations/res/#");
		let rid = 0;
		const request = async (topic: string, body: string) => {
			const id = String(++rid);
			await publish(client, topic.replace("{rid}", id), body);
			return parseDpsReply(await inbox.next(m => new URLSearchParams(m.topic.split("?")[1]).get("$rid") === id));
		};
		let reply = await request("$dps/registrations/PUT/iotdps-register/?$rid={rid}", options.body ?? JSON.stringify({registrationId}));
		for (let i = 0; i < 10 && reply.status === 202; i++)
			reply = await request(`$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId=${encodeURIComponent(reply.body.operationId)}`, "");
		return reply;
	}
	finally {
		await end(client);
	}
}

function hubX509(e: Emulator, deviceId: string, credential: DeviceCredential, extra: tls.ConnectionOptions = {}, password?: string) {
	return connect(e, {clientId: deviceId, username: `${e.hubName}/${deviceId}/?api-version=2021-04-12`, password}, {...tlsOf(credential), ...extra} as never);
}

async function connackOf(p: Promise<unknown>): Promise<number> {
	try {
		await end(await p as never);
		return 0;
	}
	catch (error) {
		return error instanceof ConnackError ? error.returnCode : -1;
	}
}

/** A fresh emulator-wide name for each test's certificates. */
const certName = (label: string) => uniqueId(label).replace(/[^A-Za-z0-9\-._]/g, "-");

// ---------------------------------------------------------------- proof of possession

test("proof of possession: the code's certificate signed by the CA verifies it; a wrong CN, a wrong signer or a stale code does not", t => {
	const name = certName("pop");
	const [dpsView, hubView] = emu.addCertificate({name, pem: fleet.intermediate.certPem, target: "both"});
	t.like(dpsView, {name, service: "dps", verified: false});
	t.like(hubView, {name, service: "hub", verified: false});
	t.throws(() => emu.verifyCertificate(name, fleet.verificationCertificate(fleet.intermediate, "no-code-yet")), {instanceOf: EmulatorHttpError, message: /verification code first/});
	const {verificationCode} = emu.certificateVerificationCode(name);
	t.regex(verificationCode, /^[0-9A-F]{48}$/);
	t.throws(() => emu.verifyCertificate(name, fleet.verificationCertificate(fleet.intermediate, "not-the-code")), {message: /CN is not the verification code/});
	t.throws(() => emu.verifyCertificate(name, fleet.verificationCertificate(fleet.other, verificationCode)), {message: /not signed by the private key/});
	const fresh = emu.certificateVerificationCode(name, "dps").verificationCode;
	t.throws(() => emu.verifyCertificate(name, fleet.verificationCertificate(fleet.intermediate, verificationCode), "dps"), {message: /CN is not the verification code/}, "a new code replaces the old one");
	t.like(emu.verifyCertificate(name, fleet.verificationCertificate(fleet.intermediate, fresh), "dps")[0], {service: "dps", verified: true});
	t.like(emu.certificates().find(c => c.name === name && c.service === "hub"), {verified: false}, "each service verifies its own copy");
	t.throws(() => emu.addCertificate({name, pem: fleet.root.certPem, target: "dps"}), {message: /already exists/});
	emu.deleteCertificate(name);
	t.false(emu.certificates().some(c => c.name === name));
});

// ---------------------------------------------------------------- DPS

test("DPS: an individual enrollment by SHA-1 thumbprint (lower case, with colons) registers; registrationState carries x509: {}", async t => {
	const id = uniqueId("x509-tp");
	const credential = fleet.selfSigned(id);
	const colons = credential.sha1.toLowerCase().match(/../g)!.join(":");
	emu.addEnrollment({registrationId: id, attestation: {type: "x509", thumbprints: {primary: colons}}});
	const reply = await provisionX509(emu, id, credential);
	t.is(reply.status, 200);
	t.like(reply.body.registrationState, {x509: {}, registrationId: id, deviceId: id, status: "assigned"});
	t.is(Object.keys(reply.body.registrationState)[0], "x509", "first, as in Azure's reply");
});

test("DPS: an individual enrollment's secondary certificate registers too, and its device id need not be the CN", async t => {
	const id = uniqueId("x509-second");
	const primary = fleet.leaf(id);
	const secondary = fleet.leaf(id, {ec: true});
	emu.addEnrollment({deviceId: `${id}-device`, attestation: {type: "x509", certificate: primary.certPem, secondaryCertificate: secondary.certPem}});
	const reply = await provisionX509(emu, id, secondary);
	t.is(reply.body.registrationState.deviceId, `${id}-device`);
	// Thumbprint authentication at the hub does not look at the CN.
	await end(await hubX509(emu, `${id}-device`, primary));
	t.pass();
});

test("DPS: a password-less connection without a certificate is refused (CONNACK 4); an empty password with one is X.509", async t => {
	const id = uniqueId("x509-nocert");
	t.is(await connackOf(connect(emu, {clientId: id, username: `${emu.idScope}/registrations/${id}/api-version=2019-03-31`})), 4);
	const credential = fleet.selfSigned(id);
	emu.addEnrollment({registrationId: id, attestation: {type: "x509", certificate: credential.certPem}});
	t.is((await provisionX509(emu, id, credential, {password: ""})).body.status, "assigned", "nanoFramework sends an empty password");
});

test("DPS group chain rules: the device sends its chain up to a verified CA; a group CA not verified, or a chain with a gap, is refused", async t => {
	const e = await startEmulator();
	t.teardown(() => e.close());
	// The intermediate is held by the group, unverified; nothing is verified in DPS yet.
	e.addEnrollmentGroup({groupId: "by-intermediate", attestation: {type: "x509", certificate: fleet.intermediate.certPem}});
	const a = uniqueId("chain");
	let reply = await provisionX509(e, a, fleet.leaf(a));
	t.is(reply.status, 401);
	t.like(reply.body, {errorCode: 401002, message: "Invalid certificate."});

	// The root verified (uploaded as verified): leaf + intermediate now reach it.
	e.addCertificate({name: "root", pem: fleet.root.certPem, verified: true, target: "dps"});
	reply = await provisionX509(e, a, fleet.leaf(a));
	t.is(reply.body.status, "assigned");
	t.is(e.devices().find(d => d.deviceId === a)?.enrollmentGroupId, "by-intermediate");
	t.is(e.devices().find(d => d.deviceId === a)?.authentication, "certificateAuthority");

	// The leaf alone leaves a gap DPS may not assume (the intermediate is only in the group).
	const b = uniqueId("gap");
	t.is((await provisionX509(e, b, fleet.leaf(b, {leafOnly: true}))).status, 401);
});

test("DPS matching order: the individual enrollment first, then the group of the CA nearest the leaf; the first found decides", async t => {
	const e = await startEmulator();
	t.teardown(() => e.close());
	e.addCertificate({name: "root", pem: fleet.root.certPem, verified: true, target: "dps"});
	e.addEnrollmentGroup({groupId: "root-group", attestation: {type: "x509", caName: "root"}});
	e.addEnrollmentGroup({groupId: "intermediate-group", enabled: false, attestation: {type: "x509", certificate: fleet.intermediate.certPem}});

	const viaIntermediate = uniqueId("order");
	t.is((await provisionX509(e, viaIntermediate, fleet.leaf(viaIntermediate))).body.status, "disabled", "the disabled intermediate group is found first");
	const direct = uniqueId("order-root");
	const fromRoot = await provisionX509(e, direct, fleet.leaf(direct, {issuer: "root"}));
	t.is(fromRoot.body.status, "assigned", "a leaf issued by the root itself has only the root's group");
	t.is(e.devices().find(d => d.deviceId === direct)?.enrollmentGroupId, "root-group");

	const individual = uniqueId("order-ind");
	const credential = fleet.leaf(individual);
	e.addEnrollment({attestation: {type: "x509", certificate: credential.certPem}});
	t.is((await provisionX509(e, individual, credential)).body.status, "assigned", "the individual enrollment wins over the disabled group");
	t.is(e.devices().find(d => d.deviceId === individual)?.authentication, "selfSigned");
	e.setEnrollmentEnabled(individual, false);
	t.is((await provisionX509(e, individual, credential)).body.status, "disabled");
	t.is((await provisionX509(e, individual, fleet.leaf(individual))).status, 401, "another certificate with the same CN is not the enrollment's");
});

test("DPS: the CN is compared case-insensitively with the registration id; an X.509 device cannot use a symmetric-key enrollment", async t => {
	const id = uniqueId("Case-X509");
	const credential = fleet.selfSigned(id.toLowerCase());
	emu.addEnrollment({registrationId: id, attestation: {type: "x509", thumbprints: {primary: credential.sha256}}});
	t.is((await provisionX509(emu, id, credential)).body.status, "assigned");
	const sas = uniqueId("sas-only");
	emu.addEnrollment({registrationId: sas});
	t.is((await provisionX509(emu, sas, fleet.selfSigned(sas))).status, 401);
	t.throws(() => emu.addEnrollment({registrationId: "other", attestation: {type: "x509", certificate: credential.certPem}}), {message: /CN .* is not the registration id/});
});

// ---------------------------------------------------------------- hub

test("hub: a CA known to DPS only is not enough; the hub needs its own verified copy (CONNACK 5 until then)", async t => {
	const e = await startEmulator();
	t.teardown(() => e.close());
	e.addCertificate({name: "root", pem: fleet.root.certPem, verified: true, target: "dps"});
	e.addEnrollmentGroup({groupId: "fleet", attestation: {type: "x509", caName: "root"}});
	const id = uniqueId("hub-ca");
	const credential = fleet.leaf(id);
	t.is((await provisionX509(e, id, credential)).body.status, "assigned");
	t.is(await connackOf(hubX509(e, id, credential)), 5);
	e.addCertificate({name: "root", pem: fleet.root.certPem, target: "hub"});
	t.is(await connackOf(hubX509(e, id, credential)), 5, "uploaded but not verified");
	const {verificationCode} = e.certificateVerificationCode("root", "hub");
	e.verifyCertificate("root", fleet.verificationCertificate(fleet.root, verificationCode), "hub");
	t.is(await connackOf(hubX509(e, id, credential)), 0);
});

test("hub: an X.509 device with a SAS password or without a certificate gets CONNACK 5; its empty password is fine; SAS devices are unchanged", async t => {
	const id = uniqueId("hub-pw");
	const credential = fleet.selfSigned(id);
	emu.addDevice({deviceId: id, authentication: {type: "selfSigned", primaryThumbprint: credential.sha1}});
	const sas = hubCredentials(emu, id, Buffer.alloc(32, 5).toString("base64"));
	t.is(await connackOf(connect(emu, sas, tlsOf(credential))), 5, "a SAS token for an X.509 device");
	t.is(await connackOf(connect(emu, {...sas, password: undefined})), 5, "no certificate");
	t.is(await connackOf(hubX509(emu, id, credential, {}, "")), 0, "empty password");

	const sasDevice = uniqueId("hub-sas");
	const {authentication} = emu.addDevice({deviceId: sasDevice});
	t.is(authentication.type, "sas");
	const key = (authentication as {symmetricKey: string}).symmetricKey;
	t.is(await connackOf(connect(emu, hubCredentials(emu, sasDevice, key), tlsOf(credential))), 0, "a SAS device may send a certificate too: the token decides");
	t.is(await connackOf(hubX509(emu, sasDevice, credential)), 5, "but not a certificate instead of its token");
});

test("TLS: a session resumed from a ticket still yields the device's chain (leaf and intermediate) for a CA-signed device", async t => {
	const e = await startEmulator();
	t.teardown(() => e.close());
	e.addCertificate({name: "root", pem: fleet.root.certPem, verified: true, target: "hub"});
	const id = uniqueId("resume");
	e.addDevice({deviceId: id, authentication: {type: "certificateAuthority"}});
	const credential = fleet.leaf(id);
	for (const maxVersion of ["TLSv1.2", "TLSv1.3"] as const) {
		const first = await hubX509(e, id, credential, {maxVersion});
		const stream = first.stream as tls.TLSSocket;
		t.false(stream.isSessionReused());
		// TLS 1.3 tickets arrive after the handshake: wait for one.
		const session = stream.getSession() ?? await new Promise<Buffer>(resolve => stream.once("session", resolve));
		await end(first);
		const again = await hubX509(e, id, credential, {maxVersion, session});
		t.true((again.stream as tls.TLSSocket).isSessionReused(), `${maxVersion}: resumed`);
		await end(again);
	}
});

// ---------------------------------------------------------------- HTTP API

async function api(method: string, path: string, body?: unknown): Promise<{status: number; body: any}> {
	const res = await fetch(emu.apiUrl + path, {method, headers: {"content-type": "application/json"}, body: body === undefined ? undefined : JSON.stringify(body)});
	const text = await res.text();
	return {status: res.status, body: text ? JSON.parse(text) : undefined};
}

test("HTTP API: certificates with proof of possession, an X.509 group and enrollment, hub devices by thumbprint and by CA", async t => {
	const name = certName("api-ca");
	const uploaded = await api("POST", "/certificates", {name, pem: fleet.intermediate.certPem, target: "both"});
	t.is(uploaded.status, 201);
	t.is(uploaded.body.length, 2);
	t.is((await api("POST", "/certificates", {name: "x", pem: fleet.root.certPem})).status, 400, "target is required");
	t.is((await api("POST", "/certificates", {name: "y", pem: "not a pem", target: "dps"})).status, 400);
	const code = await api("POST", `/certificates/${name}/verification-code`);
	t.is(code.status, 200);
	const verified = await api("POST", `/certificates/${name}/verify`, {pem: fleet.verificationCertificate(fleet.intermediate, code.body.verificationCode)});
	t.is(verified.status, 200);
	t.true(verified.body.every((c: {verified: boolean}) => c.verified));
	t.true((await api("GET", "/certificates")).body.some((c: {name: string; sha256Thumbprint: string}) => c.name === name && /^[0-9A-F]{64}$/.test(c.sha256Thumbprint)));
	t.is((await api("POST", "/certificates/nope/verification-code")).status, 404);

	const groupId = uniqueId("api-x509-group");
	const group = await api("POST", "/enrollment-groups", {groupId, attestation: {type: "x509", caName: name}});
	t.is(group.status, 201);
	t.like(group.body, {groupId, attestation: {type: "x509", caName: name}});
	t.is((await api("POST", "/enrollment-groups", {groupId: `${groupId}-2`, attestation: {type: "x509", caName: "missing"}})).status, 404);
	t.is((await api("POST", "/enrollment-groups", {groupId: `${groupId}-3`, attestation: {type: "x509", certificate: fleet.leaf("a-leaf").certPem}})).status, 400, "a leaf is no group CA");

	const id = uniqueId("api-x509");
	t.is((await provisionX509(emu, id, fleet.leaf(id))).body.status, "assigned");
	await end(await hubX509(emu, id, fleet.leaf(id)));

	const enrolled = await api("POST", "/enrollments", {attestation: {type: "x509", certificate: fleet.selfSigned(`${id}-ind`).certPem}});
	t.is(enrolled.status, 201);
	t.is(enrolled.body.registrationId, `${id}-ind`, "the registration id defaults to the CN");
	t.regex(enrolled.body.attestation.thumbprints.primary, /^[0-9A-F]{64}$/);
	t.is((await api("POST", "/enrollments", {registrationId: "r", attestation: {type: "x509", thumbprints: {primary: "abc"}}})).status, 400);
	t.is((await api("POST", "/enrollments", {registrationId: "r", attestation: {type: "tpm"}})).status, 400);

	const selfSigned = fleet.selfSigned(`${id}-tp`);
	const device = await api("POST", "/devices", {deviceId: `${id}-tp`, authentication: {type: "selfSigned", primaryThumbprint: selfSigned.sha256}});
	t.is(device.status, 201);
	t.like(device.body, {deviceId: `${id}-tp`, authentication: {type: "selfSigned", primaryThumbprint: selfSigned.sha256}});
	t.is((await api("POST", "/devices", {deviceId: `${id}-tp`})).status, 409);
	t.like((await api("GET", "/devices")).body.find((d: {deviceId: string}) => d.deviceId === `${id}-tp`), {authentication: "selfSigned"});
	await end(await hubX509(emu, `${id}-tp`, selfSigned));
	t.is((await api("DELETE", `/certificates/${name}`)).status, 204);
});
