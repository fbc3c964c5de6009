/*
 * The reference device (firmware/reference.ts on azure-iot/device) with an X.509 identity through
 * the Node host (hosts/node/platform.ts), against the emulator: an individual enrollment, a group
 * whose verified CA is the root (leaf + intermediate sent) and a group whose verified CA is the
 * intermediate (leaf alone), each provisioning and then using the hub with the same certificate
 * (telemetry, the twin, a method). Then what the device refuses to present (expired, a key that is
 * not the certificate's, an ECC key, a CN that is not the registration id): a config error, state
 * "failed", and no connection at all; and what only DPS can refuse (a CA it does not know): one
 * attempt, a clear dps.unauthorized, and no reconnect loop. The same cases run on the simulator in
 * x509-device-sim.test.ts.
 */
import test from "ava";
import * as crypto from "node:crypto";
import {startReference} from "../firmware/reference.js";
import type {Device} from "../src/device.js";
import {EventLog, eventually, nodePlatform, startRig, uniqueId, type Rig} from "./helpers/e2e.js";
import {type DeviceCredential, deviceSettings, enrollFleet, fleet} from "./helpers/x509.js";

let rootRig: Rig;
let intermediateRig: Rig;
test.before(async () => {
	rootRig = await startRig();
	enrollFleet(rootRig.emulator, "root", "fleet-root");
	intermediateRig = await startRig();
	enrollFleet(intermediateRig.emulator, "intermediate", "fleet-intermediate");
});
test.after.always(async () => {
	await rootRig?.emulator.close();
	await intermediateRig?.emulator.close();
});

function startDevice(rig: Rig, registrationId: string, credential: DeviceCredential, options: {keyPem?: string} = {}): {device: Device; log: EventLog} {
	const log = new EventLog();
	const e = rig.emulator;
	const device = startReference(nodePlatform(rig, log, undefined, [], {
		dpsHost: e.host, dpsPort: e.port, idScope: e.idScope, registrationId, hubPort: e.port, intervalMs: 1000,
		...deviceSettings(credential, options),
	}));
	return {device, log};
}

/** Provisions, then telemetry, a reported property read back from the twin, a desired one acknowledged, and a method. */
async function usesTheHub(t: import("ava").ExecutionContext, rig: Rig, id: string, credential: DeviceCredential, certificates: number) {
	const {device, log} = startDevice(rig, id, credential);
	t.teardown(() => device.close());
	const identity = await log.waitFor("x509.identity");
	t.like(identity, {commonName: id, certificates, keyBits: 2048});
	const assigned = await log.waitFor("dps.assigned");
	t.like(assigned, {deviceId: id, assignedHub: rig.emulator.hubName, status: "assigned"});
	await log.waitFor("hub.connected");
	await log.waitFor("telemetry.acked");
	t.is(JSON.parse(rig.emulator.telemetry(id)[0].body).seq, 1);
	await eventually(() => (rig.emulator.twin(id).reported as Record<string, unknown>).firmwareVersion, 10_000, "the reported firmwareVersion");
	const {version} = rig.emulator.patchDesired(id, {telemetryIntervalMs: 1500});
	await eventually(() => (rig.emulator.twin(id).reported as any).telemetryIntervalMs?.av === version, 10_000, "the acknowledgement");
	t.deepEqual(await rig.emulator.invokeMethod(id, "setTelemetryInterval", {intervalMs: 2000}, 10), {status: 200, payload: {intervalMs: 2000}});
	t.is(device.state, "connected");
	t.is(rig.emulator.stats().devices[id]?.dpsConnects, 1);
	t.is(rig.emulator.stats().devices[id]?.hubConnects, 1);
	t.false(JSON.stringify(log.events).includes(Buffer.from(deviceSettings(credential).x509Key).toString("base64").slice(0, 40)), "no event carries the key");
	return rig.emulator.devices().find(d => d.deviceId === id);
}

test("an individual enrollment (the device's certificate): provisions, then telemetry, the twin and a method over the hub with the same certificate", async t => {
	const id = uniqueId("x509-node-ind");
	const credential = fleet.selfSigned(id);
	rootRig.emulator.addEnrollment({attestation: {type: "x509", certificate: credential.certPem}});
	t.like(await usesTheHub(t, rootRig, id, credential, 1), {authentication: "selfSigned"});
});

test("a group whose verified CA is the root: the device sends leaf + intermediate, provisions and uses the hub", async t => {
	const id = uniqueId("x509-node-grp");
	t.like(await usesTheHub(t, rootRig, id, fleet.leaf(id), 2), {authentication: "certificateAuthority", enrollmentGroupId: "fleet-root"});
});

test("a group whose verified CA is the intermediate: the leaf alone provisions and uses the hub", async t => {
	const id = uniqueId("x509-node-int");
	t.like(await usesTheHub(t, intermediateRig, id, fleet.leaf(id, {leafOnly: true}), 1), {authentication: "certificateAuthority", enrollmentGroupId: "fleet-intermediate"});
});

/** The device refuses its own identity: one config error, state "failed", and the emulator never hears from it. */
async function refusesItself(t: import("ava").ExecutionContext, id: string, credential: DeviceCredential, message: RegExp, options: {keyPem?: string} = {}) {
	const {device, log} = startDevice(rootRig, id, credential, options);
	t.teardown(() => device.close());
	const error = await log.waitFor("error");
	t.is(error.code, "config");
	t.regex(String(error.message), message);
	await eventually(() => device.state === "failed", 5000, "state failed");
	await new Promise(resolve => setTimeout(resolve, 2500));
	t.is(log.count("error"), 1, "said once");
	t.is(log.count("dps.registering") + log.count("hub.connecting"), 0, "nothing was tried");
	t.false(id in rootRig.emulator.stats().devices, "the emulator saw no connection");
	t.notRegex(JSON.stringify(log.events), /BEGIN|PRIVATE/);
}

test("an expired certificate is a config error before any connection (no loop)", async t => {
	const id = uniqueId("x509-node-exp");
	const credential = fleet.selfSigned(id, {expired: true});
	rootRig.emulator.addEnrollment({registrationId: id, attestation: {type: "x509", thumbprints: {primary: credential.sha1}}});
	await refusesItself(t, id, credential, /^x509Cert\[0\]: \(CN="[^"]+"\) expired on .*Issue the device a new certificate/);
});

test("a key that is not the certificate's is a config error before any connection (no loop)", async t => {
	const id = uniqueId("x509-node-key");
	await refusesItself(t, id, fleet.leaf(id), /^x509Key: does not match the certificate .*the RSA modulus differs/, {keyPem: fleet.other.keyPem});
});

test("an ECC key, and a CN that is not the registration id, are config errors before any connection", async t => {
	const id = uniqueId("x509-node-ec");
	await refusesItself(t, id, fleet.leaf(id, {ec: true}), /^x509Cert\+x509Chain\[0\]: .*ECC \(P-256\) key; the SDK's TLS signs with RSA only/);
	const other = uniqueId("x509-node-cn");
	await refusesItself(t, other, fleet.leaf(`${other}-someone-else`), /^x509Cert\+x509Chain\[0\]: has CN=.* but the registration id is .*Set the registration id to the certificate's CN/);
});

test("a certificate from a CA DPS does not know: one attempt, dps.unauthorized (401), and no reconnect loop", async t => {
	const id = uniqueId("x509-node-untr");
	const {device, log} = startDevice(rootRig, id, fleet.leaf(id, {issuer: "other"}));
	t.teardown(() => device.close());
	const failed = await log.waitFor("dps.failed");
	t.like(failed, {code: "dps.unauthorized", status: 401});
	t.regex(String(failed.message), /\(401\) \(errorCode 401002\): the certificate does not match any enrollment\. .*verified \(proof of possession\)/);
	await eventually(() => device.state === "disconnected", 5000, "state disconnected");
	await new Promise(resolve => setTimeout(resolve, 3000));
	t.like(rootRig.emulator.stats().devices[id], {dpsConnects: 1, dpsRegisterRequests: 1, hubConnects: 0});
	t.is(log.count("dps.registering"), 1, "registered once; the next try is minutes away");
	t.false(rootRig.emulator.devices().some(d => d.registrationId === id));
});

test("the Node host refuses a key that does not match even without the device's check: no TLS connection is made", async t => {
	// The check in the device comes first; this pins down that the host underneath would not leak a connection either.
	const {createNodeHost} = await import("../hosts/node/host.js");
	const id = uniqueId("x509-node-raw");
	const credential = deviceSettings(fleet.leaf(id), {keyPem: fleet.other.keyPem});
	const before = rootRig.emulator.stats().connects + rootRig.emulator.stats().refusedConnects;
	const error = await new Promise<{kind: string; message: string}>(resolve => {
		createNodeHost().connect({host: "localhost", port: rootRig.emulator.port, roots: rootRig.roots, clientCertificates: [credential.x509Cert], clientKey: credential.x509Key}, {
			onConnect: () => resolve({kind: "connected", message: ""}),
			onData: () => {},
			onClose: e => resolve(e),
		});
	});
	t.is(error.kind, "tls");
	t.is(rootRig.emulator.stats().connects + rootRig.emulator.stats().refusedConnects, before);
	t.notRegex(error.message, new RegExp(crypto.createHash("sha1").update(credential.x509Key).digest("hex")));
});

test("a certificate that expires while the device runs: the next registration is stopped by the device (failed, the hub connection closed), not tried", async t => {
	const {createNodePlatform} = await import("../hosts/node/platform.js");
	const id = uniqueId("x509-node-later");
	const credential = fleet.leaf(id);
	let offset = 0;
	const log = new EventLog();
	const e = rootRig.emulator;
	const device = startReference(createNodePlatform({
		roots: rootRig.roots, emit: log.emit, print: () => {}, now: () => Date.now() + offset,
		settings: {dpsHost: e.host, dpsPort: e.port, idScope: e.idScope, registrationId: id, hubPort: e.port, intervalMs: 1000, ...deviceSettings(credential)},
	}));
	t.teardown(() => device.close());
	await log.waitFor("hub.connected");
	offset = 400 * 24 * 3600e3; // past the leaf's notAfter (365 days)
	device.reprovision();
	const error = await log.waitFor("error", ev => ev.code === "config");
	t.regex(String(error.message), /^x509Cert\+x509Chain\[0\]: \(CN="[^"]+"\) expired on /);
	await eventually(() => device.state === "failed", 5000, "state failed");
	await eventually(() => !e.devices().find(d => d.deviceId === id)?.connected, 5000, "the hub connection to close");
	t.is(e.stats().devices[id]?.dpsConnects, 1, "no second registration");
	t.is(log.count("dps.registering"), 1);
});
