/*
 * A hostile hub against the core on the Node host: the reference device (firmware/reference.ts)
 * with small incoming limits, and the emulator sending what IoT Hub allows itself to send (POST
 * /faults, kinds send.*; emulator/hostile.ts). Each case is answered the way Azure expects (a
 * refused cloud-to-device message completed, a method too large answered 413, a twin too large
 * reported and the device carrying on), the device keeps sending telemetry, and the emulator's
 * connection log shows no reconnect: the one connection of the device lasts through every case.
 * The same cases on the simulator with the ESP32's memory: test/hostile-sim.test.ts.
 */
import test from "ava";
import {startReference} from "../firmware/reference.js";
import {createNodePlatform} from "../hosts/node/platform.js";
import type {Device, DeviceEvent} from "../src/device.js";
import type {SentView} from "../emulator/index.js";
import {EventLog, eventually} from "./helpers/e2e.js";
import {sleep, startFaultRig, uniqueId, type FaultRig} from "./helpers/faults.js";

const LIMITS = {maxMessageBytes: 1024, maxMethodBytes: 1024, maxTwinBytes: 2048};

let rig: FaultRig;
let device: Device;
let id: string;
const log = new EventLog();

test.before(async () => {
	rig = await startFaultRig();
	id = uniqueId("hostile-node");
	const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id});
	// The first twin read after the connect comes back cut short (the case "a truncated twin document").
	rig.emulator.addFault({kind: "twin.malformed", count: 1, deviceId: id});
	device = startReference(createNodePlatform({
		roots: rig.roots, emit: log.emit, print: () => {},
		settings: {
			dpsHost: rig.emulator.host, dpsPort: rig.emulator.port, idScope: rig.emulator.idScope, registrationId: id, symmetricKey,
			hubPort: rig.emulator.port, intervalMs: 1000, ...LIMITS,
		},
	}));
	await log.waitFor("hub.connected", () => true, 30_000);
	await log.waitFor("telemetry.acked", () => true, 30_000);
});

test.after.always(async () => {
	device?.close();
	await rig?.close();
});

/** Resolves once the device has had `n` more telemetry messages acknowledged than now. */
async function telemetryContinues(n = 2): Promise<void> {
	const seen = log.count("telemetry.acked");
	await eventually(() => log.count("telemetry.acked") >= seen + n, 20_000, `${n} more telemetry acknowledgements`);
}

/** The record of a hostile send once it is done. */
function finished(sent: SentView | undefined): Promise<SentView> {
	if (!sent) throw new Error("the emulator returned no record for the send");
	return eventually(() => {
		const now = rig.emulator.sent(id).find(s => s.id === sent.id);
		return now?.done ? now : undefined;
	}, 40_000, `send ${sent.kind} to be done`);
}

const since = () => log.events.length;
const after = (from: number, name: string, where: (e: DeviceEvent) => boolean = () => true) =>
	eventually(() => log.events.slice(from).find(e => e.event === name && where(e)), 20_000, `a ${name} event`);

test.serial("a truncated twin document after the connect: reported, read again, the device connected", async t => {
	const error = log.events.find(e => e.event === "error" && e.code === "hub.badReply");
	t.truthy(error, "the cut-off twin document was reported");
	t.regex(String(error?.message), /twin document/);
	t.is(rig.emulator.faults().filter(f => f.kind === "twin.malformed").length, 0, "the fault fired");
	// The read is retried with backoff, not in a loop.
	await eventually(() => (rig.emulator.stats().devices[id]?.twinGets ?? 0) >= 2, 20_000, "the second twin read");
	t.true((rig.emulator.stats().devices[id]?.twinGets ?? 0) <= 3);
});

test.serial("a cloud-to-device message over maxMessageBytes: completed unread (PUBACK), c2d.rejected with its size; a small one still arrives", async t => {
	const from = since();
	const sent = await finished(rig.emulator.send({kind: "send.c2d", deviceId: id, bytes: 4096}));
	const rejected = await after(from, "c2d.rejected");
	t.is(rejected.size, 4096);
	t.is(rejected.limit, LIMITS.maxMessageBytes);
	t.is(rejected.messageId, sent.messages![0].messageId);
	await eventually(() => rig.emulator.sent(id).find(s => s.id === sent.id)?.messages?.[0].completed, 10_000, "the hub to see it completed");
	const view = rig.emulator.sent(id).find(s => s.id === sent.id)!;
	t.is(view.messages![0].deliveries, 1, "delivered once: completed, so not again");
	t.is(rig.emulator.c2dQueue(id), 0);
	rig.emulator.sendC2d(id, {body: "small enough"});
	const received = await after(from, "c2d.received");
	t.is(received.body, "small enough");
	t.false(log.events.slice(from).some(e => e.event === "c2d.received" && e.size === 4096));
	await telemetryContinues();
});

test.serial("a 100 KB method payload (IoT Hub allows 128 KB): answered 413 with a short JSON reason, method.rejected", async t => {
	const from = since();
	const sent = await finished(rig.emulator.send({kind: "send.method", deviceId: id, bytes: 100 * 1024, name: "setTelemetryInterval"}));
	const result = sent.results![0] as {status: number; payload: {message: string}};
	t.is(result.status, 413);
	t.true(typeof result.payload.message === "string" && JSON.stringify(result.payload).length < 200, JSON.stringify(result.payload));
	t.regex(result.payload.message, /102400 bytes/);
	const rejected = await after(from, "method.rejected");
	t.like(rejected, {name: "setTelemetryInterval", status: 413, size: 100 * 1024});
	t.false(log.events.slice(from).some(e => e.event === "method.invoked"), "the application never saw it");
	await telemetryContinues();
});

test.serial("a desired patch over maxTwinBytes: twin.rejected, ignored; the device keeps its values and takes the next patch", async t => {
	const from = since();
	const sent = await finished(rig.emulator.send({kind: "send.desired", deviceId: id, bytes: 8 * 1024}));
	const rejected = await after(from, "twin.rejected");
	t.like(rejected, {what: "desired", limit: LIMITS.maxTwinBytes, version: sent.versions![0]});
	t.true(Number(rejected.size) > LIMITS.maxTwinBytes);
	t.false(log.events.slice(from).some(e => e.event === "twin.desired"), "not handed to the application");
	// Still listening: a small patch is applied and acknowledged.
	const {version} = rig.emulator.patchDesired(id, {telemetryIntervalMs: 1500});
	await after(from, "twin.desired", e => e.version === version);
	await eventually(() => {
		const ack = rig.emulator.twin(id).reported as Record<string, {ac?: number; av?: number}>;
		return ack.telemetryIntervalMs?.av === version && ack.telemetryIntervalMs.ac === 200;
	}, 15_000, "the acknowledgement of telemetryIntervalMs");
	await telemetryContinues();
});

test.serial("the twin document over maxTwinBytes at a reconnect: twin.rejected once, no read loop, the device carries on", async t => {
	// The oversized desired value of the previous case is still in the twin.
	const from = since();
	const gets = () => rig.emulator.stats().devices[id]?.twinGets ?? 0;
	const before = gets();
	rig.emulator.dropAll();
	await after(from, "hub.connected", e => e.reconnect === true);
	const rejected = await after(from, "twin.rejected", e => e.what === "document");
	t.true(Number(rejected.size) > LIMITS.maxTwinBytes);
	await telemetryContinues(3);
	t.is(gets(), before + 1, "one read per connect: a twin too large is not read again and again");
	// Back to a twin the device can read, for the cases that follow.
	rig.emulator.patchDesired(id, {hostile: null});
});

test.serial("a malformed desired patch: reported as an error and ignored; the next patch is applied", async t => {
	const from = since();
	await finished(rig.emulator.send({kind: "send.malformedDesired", deviceId: id}));
	const error = await after(from, "error", e => e.code === "hub.badReply");
	t.regex(String(error.message), /not a JSON object/);
	const {version} = rig.emulator.patchDesired(id, {telemetryIntervalMs: 1000});
	await after(from, "twin.desired", e => e.version === version);
	await telemetryContinues();
});

test.serial("a flood of 100 desired patches in one second: each delivered once, in order; the device keeps up", async t => {
	const from = since();
	const sent = await finished(rig.emulator.send({kind: "send.desired", deviceId: id, repeat: 100, everyMs: 10}));
	t.is(sent.versions!.length, 100);
	const last = sent.versions![99];
	await after(from, "twin.desired", e => e.version === last);
	const versions = log.events.slice(from).filter(e => e.event === "twin.desired").map(e => Number(e.version));
	t.deepEqual(versions, sent.versions, "every patch, once, in order");
	await telemetryContinues();
});

test.serial("a publish on a topic the device never subscribed to: acknowledged and ignored", async t => {
	const sent = await finished(rig.emulator.send({kind: "send.unsubscribed", deviceId: id, bytes: 4096, qos: 1}));
	await eventually(() => rig.emulator.sent(id).find(s => s.id === sent.id)?.acked === 1, 10_000, "the PUBACK");
	await telemetryContinues();
	t.pass();
});

test.serial("a method every 100 ms for 3 s: every call answered", async t => {
	const sent = await finished(rig.emulator.send({kind: "send.method", deviceId: id, repeat: 30, everyMs: 100}));
	const statuses = sent.results!.map(r => "status" in r ? r.status : undefined);
	t.deepEqual(statuses, new Array(30).fill(404), "the reference device answers an unknown method 404, every time");
	await telemetryContinues();
});

test.serial("across every case: one connection the hub never closed (and the one drop the test made), telemetry at the hub", async t => {
	await sleep(500);
	const connections = rig.emulator.connections(id);
	t.is(connections.length, 2, JSON.stringify(connections));
	t.is(connections[0].endedBy, "service", "the test's own drop");
	t.is(connections[1].endedAt, undefined, "the connection since then is still up");
	t.is(log.count("hub.disconnected"), 1);
	const acked = log.events.filter(e => e.event === "telemetry.acked").map(e => Number(e.seq));
	const received = new Set(rig.emulator.telemetry(id).map(r => Number(r.properties.seq)));
	t.deepEqual(acked.filter(s => !received.has(s)), [], "every acknowledged reading is at the hub");
	t.true(acked.length >= 15, `${acked.length} readings acknowledged`);
});

test("the emulator's hostile sends over HTTP: POST /faults answers with the record, bad ones name the field; GET /faults/sent, connections, c2d purge; IoT Hub's own limits hold", async t => {
	const api = rig.emulator.apiUrl;
	const call = async (method: string, url: string, body?: unknown) => {
		const response = await fetch(api + url, {method, body: body === undefined ? undefined : JSON.stringify(body)});
		const text = await response.text();
		return {status: response.status, body: text ? JSON.parse(text) : undefined};
	};
	const other = uniqueId("hostile-api");
	rig.emulator.addDevice({deviceId: other});
	// Offline: a message is queued (as IoT Hub queues it); a method has no one to answer it.
	const c2d = await call("POST", "/faults", {kind: "send.c2d", deviceId: other, bytes: 1000, repeat: 2, everyMs: 10});
	t.is(c2d.status, 201);
	t.like(c2d.body.sent, {kind: "send.c2d", deviceId: other, repeat: 2, bytes: 1000});
	await eventually(() => rig.emulator.c2dQueue(other) === 2, 5000, "both messages queued");
	t.deepEqual(await call("DELETE", `/devices/${other}/c2d`), {status: 200, body: {totalMessagesPurged: 2}});
	const method = await call("POST", "/faults", {kind: "send.method", deviceId: other});
	await eventually(async () => (await call("GET", "/faults/sent")).body.find((s: SentView) => s.id === method.body.sent.id)?.done, 5000, "the method's record");
	const record = (await call("GET", "/faults/sent")).body.find((s: SentView) => s.id === method.body.sent.id);
	t.is(record.results[0].status, 404, "not connected, as IoT Hub answers");
	t.deepEqual((await call("GET", `/devices/${other}/connections`)).body, []);
	for (const [fault, message] of [
		[{kind: "send.c2d", bytes: 10}, /needs the "deviceId"/],
		[{kind: "send.c2d", deviceId: other, bytes: 65537}, /"bytes" must be an integer from 1 to 65536/],
		[{kind: "send.method", deviceId: other, bytes: 131073}, /"bytes" must be an integer from 16 to 131072/],
		[{kind: "send.desired", deviceId: other, bytes: 40000}, /"bytes"/],
		[{kind: "send.unsubscribed", deviceId: other, topic: "a/+/b"}, /without wildcards/],
		[{kind: "send.c2d", deviceId: "no-such-device", bytes: 10}, /not registered/],
	] as const) {
		const answer = await call("POST", "/faults", fault);
		t.true(answer.status === 400 || answer.status === 404, `${JSON.stringify(fault)}: ${answer.status}`);
		t.regex(answer.body.error, message);
	}
	// IoT Hub's limit on a direct method's payload: 128 KB.
	await t.throwsAsync(rig.emulator.invokeMethod(id, "x", {data: "x".repeat(131072)}), {message: /at most 128 KB/});
});
