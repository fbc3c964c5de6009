/*
 * The protocol core through the Node host, end to end against the emulator: DPS, then the hub with
 * telemetry, cloud-to-device, twin and methods, then the whole Device flow with its cache.
 */
import test from "ava";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {ProvisioningClient} from "../src/dps.js";
import {HubClient} from "../src/hub.js";
import {deriveDeviceKey} from "../src/sas.js";
import {startReference} from "../firmware/reference.js";
import {EventLog, eventually, nodePlatform, startRig, uniqueId, type Rig} from "./helpers/e2e.js";

let rig: Rig;
test.before(async () => { rig = await startRig(); });
test.after.always(async () => { await rig?.emulator.close(); });

function provisioning(registrationId: string, symmetricKey: string, extra: Partial<ConstructorParameters<typeof ProvisioningClient>[0]> = {}) {
	return new ProvisioningClient({
		adapter: rig.host, roots: rig.roots, endpoint: rig.emulator.host, port: rig.emulator.port,
		idScope: rig.emulator.idScope, registrationId, symmetricKey, ...extra,
	});
}

test("DPS: an individual enrollment registers and every field of the registration state is returned", async t => {
	const id = uniqueId("e2e-individual");
	const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id});
	const client = provisioning(id, symmetricKey, {modelId: "dtmi:com:example:Thermostat;1"});
	const result = await client.register();
	t.is(result.status, "assigned");
	t.is(result.registrationId, id);
	t.is(result.deviceId, id);
	t.is(result.assignedHub, rig.emulator.hubName);
	t.is(result.substatus, "initialAssignment");
	for (const field of ["createdDateTimeUtc", "lastUpdatedDateTimeUtc", "etag", "operationId"] as const) t.truthy(result[field], field);
	t.deepEqual(result.payload, {modelId: "dtmi:com:example:Thermostat;1"});
	t.is(client.counts.register, 1);
	t.true(client.counts.poll >= 1, "the 202 was followed by at least one poll");
});

test("DPS: a key derived from a group key registers under the group", async t => {
	const groupId = uniqueId("group");
	const {symmetricKey: groupKey} = rig.emulator.addEnrollmentGroup({groupId});
	const id = uniqueId("e2e-grouped");
	const result = await provisioning(id, deriveDeviceKey(groupKey, id, rig.host.hmacSha256)).register();
	t.is(result.status, "assigned");
	t.is(result.deviceId, id);
});

test("DPS: a wrong key is a terminal dps.unauthorized error that names the fix", async t => {
	const id = uniqueId("e2e-wrongkey");
	rig.emulator.addEnrollment({registrationId: id});
	const error = await t.throwsAsync(provisioning(id, "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=").register());
	t.is((error as {code?: string}).code, "dps.unauthorized");
	t.regex(error!.message, /key/);
});

test("hub: telemetry, cloud-to-device, twin, desired updates and a direct method", async t => {
	const id = uniqueId("e2e-hub");
	const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id});
	const result = await provisioning(id, symmetricKey).register();
	const c2d: {text: string; properties: Record<string, string>}[] = [];
	const desired: [Record<string, unknown>, number][] = [];
	const hub = new HubClient({
		adapter: rig.host, roots: rig.roots, hubHost: result.assignedHub!, deviceId: result.deviceId!, symmetricKey,
		port: rig.emulator.port, modelId: "dtmi:com:example:Thermostat;1",
		onMessage: m => { c2d.push({text: m.text(), properties: m.properties}); },
		onDesired: (patch, version) => { desired.push([patch, version]); },
		onMethod: request => ({status: 200, payload: {echo: request.payload, name: request.name}}),
	});
	try {
		await hub.open();
		t.true(hub.connected);
		t.is(rig.emulator.devices().find(d => d.deviceId === id)?.modelId, "dtmi:com:example:Thermostat;1");

		const {messageId} = await hub.sendTelemetry({temperature: 21.5}, {properties: {alert: "a b&c=d"}, correlationId: "corr-1"});
		const stored = rig.emulator.telemetry(id);
		t.is(stored.length, 1);
		t.deepEqual(JSON.parse(stored[0].body), {temperature: 21.5});
		t.is(stored[0].properties.alert, "a b&c=d");
		t.is(stored[0].systemProperties["$.mid"], messageId);
		t.is(stored[0].systemProperties["$.cid"], "corr-1");
		t.is(stored[0].systemProperties["$.ct"], "application/json");
		t.is(stored[0].systemProperties["$.ce"], "utf-8");

		rig.emulator.sendC2d(id, {body: "hello device", properties: {colour: "blue"}});
		await eventually(() => c2d.length === 1, 10_000, "the cloud-to-device message");
		t.is(c2d[0].text, "hello device");
		t.is(c2d[0].properties.colour, "blue");
		await eventually(() => rig.emulator.c2dQueue(id) === 0, 5000, "the C2D message to be completed by PUBACK");

		const version = await hub.updateReported({firmwareVersion: "1.0.0", nested: {a: 1}});
		t.true(version >= 1);
		const twin = await hub.getTwin();
		t.is(twin.reported.firmwareVersion, "1.0.0");
		t.deepEqual((rig.emulator.twin(id).reported as Record<string, unknown>).nested, {a: 1});

		const {version: desiredVersion} = rig.emulator.patchDesired(id, {telemetryIntervalMs: 5000});
		await eventually(() => desired.find(([, v]) => v === desiredVersion), 10_000, "the desired update");
		t.is(desired.find(([, v]) => v === desiredVersion)![0].telemetryIntervalMs, 5000);

		const answer = await rig.emulator.invokeMethod(id, "ping", {n: 1}, 10);
		t.is(answer.status, 200);
		t.deepEqual(answer.payload, {echo: {n: 1}, name: "ping"});
	}
	finally {
		await hub.close();
	}
	t.false(hub.connected);
});

test("device: the whole flow, then a restart connects to the cached hub without DPS", async t => {
	const id = uniqueId("e2e-device");
	const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id});
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "azure-device-"));
	const storage = path.join(dir, "prefs.json");
	const settings = {dpsHost: rig.emulator.host, dpsPort: rig.emulator.port, idScope: rig.emulator.idScope, registrationId: id, symmetricKey, hubPort: rig.emulator.port, intervalMs: 1000};
	const log = new EventLog();
	const lines: string[] = [];
	const device = startReference(nodePlatform(rig, log, storage, lines, settings));
	try {
		const assigned = await log.waitFor("dps.assigned");
		t.is(assigned.deviceId, id);
		t.is(assigned.status, "assigned");
		t.true(lines.includes("Registration result:"));
		t.true(lines.some(l => l.includes(`Device id:     ${id}`)));
		await log.waitFor("hub.connected");
		await log.waitFor("telemetry.acked");
		t.true(rig.emulator.telemetry(id).length >= 1);

		const reply = await rig.emulator.invokeMethod(id, "setTelemetryInterval", {intervalMs: 2000}, 10);
		t.is(reply.status, 200);
		await log.waitFor("method.invoked", e => e.name === "setTelemetryInterval");
		t.is((await rig.emulator.invokeMethod(id, "nope", {}, 10)).status, 404);

		const {version} = rig.emulator.patchDesired(id, {telemetryIntervalMs: 1500});
		await log.waitFor("twin.desired", e => e.version === version);
		await eventually(() => (rig.emulator.twin(id).reported as any).telemetryIntervalMs?.av === version, 10_000, "the acknowledgement");
		t.like(rig.emulator.twin(id).reported, {telemetryIntervalMs: {value: 1500, ac: 200, av: version}});

		rig.emulator.sendC2d(id, {body: "hi"});
		const c2d = await log.waitFor("c2d.received");
		t.is(c2d.body, "hi");
	}
	finally {
		device.close();
	}

	const registersBefore = rig.emulator.stats().dpsRegisterRequests;
	const log2 = new EventLog();
	const again = startReference(nodePlatform(rig, log2, storage, [], settings));
	try {
		const cached = await log2.waitFor("dps.cached");
		t.is(cached.deviceId, id);
		await log2.waitFor("hub.connected");
		t.is(log2.count("dps.registering"), 0);
		t.is(rig.emulator.stats().dpsRegisterRequests, registersBefore, "DPS was not contacted on restart");
	}
	finally {
		again.close();
	}
	t.false(JSON.stringify([log.events, log2.events, lines]).includes(symmetricKey), "no event or line carries the key");
});
