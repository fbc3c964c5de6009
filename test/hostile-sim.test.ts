/*
 * A hostile hub against the reference firmware on the simulator, with the ESP32's memory (the
 * simulator's creation sizes are the ESP32 firmware's, fixed: 6,144 slots, 48 KB of chunks, 1,024
 * stack slots) and the default incoming limits (src/limits.ts). The emulator sends what IoT Hub
 * allows itself to send (POST /faults, kinds send.*): a 64 KB cloud-to-device message, a 100 KB
 * method payload, an oversized and a malformed desired patch, a flood of desired patches, a publish
 * on a topic the device never subscribed to, methods every 100 ms; and the device's first twin
 * document comes back truncated. Each is answered the way Azure expects, telemetry goes on, and the
 * emulator's connection log shows one connection for the whole run: no reconnect loop. Last, an XS
 * abort (the fixture's test-only trigger: test/fixtures/hostile-sim) is reported after the next boot
 * as device.reset and the reported property lastReset.
 *
 * The same cases for the core on Node: test/hostile-node.test.ts. Skipped, saying why, where the
 * SDK, xvfb-run or dbus-run-session is missing.
 */
import test from "ava";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {startEmulator, type Emulator, type SentView} from "../emulator/index.js";
import {DEFAULT_LIMITS} from "../src/limits.js";
import {utf8Decode} from "../src/encoding.js";
import {REPO_ROOT, buildFirmware, runFirmware, simulatorAvailable, type Build, type DeviceEvent, type FirmwareRun} from "../tools/sim-runner.js";
import {eventually} from "./helpers/e2e.js";
import {uniqueId} from "./helpers/faults.js";

const sim = simulatorAvailable();

if (!sim.ok) {
	console.log(`hostile-sim.test.ts: skipped. ${sim.reason}`);
	test.skip("a hostile hub against the firmware on the Moddable simulator", () => {});
}
else {
	const sdk = sim.sdk;
	let emulator: Emulator;
	let firmware: Build;
	let run: FirmwareRun;
	let id: string;
	let symmetricKey: string;
	const runs: FirmwareRun[] = [];
	const runDir = fs.mkdtempSync(path.join(os.tmpdir(), "hostile-sim-"));

	const start = (preferences?: Record<string, string | number>, fresh = false): FirmwareRun => {
		const r = runFirmware({soPath: firmware.soPath, sdk, runDir, fresh, preferences});
		runs.push(r);
		return r;
	};

	test.before(async t => {
		t.timeout(600_000);
		emulator = await startEmulator({retryAfterSeconds: 1});
		firmware = await buildFirmware({
			sdk,
			manifest: path.join(REPO_ROOT, "test/fixtures/hostile-sim/manifest.json"),
			buildDir: path.join(REPO_ROOT, "build/sim-hostile"),
			settings: {dpsHost: emulator.host, idScope: emulator.idScope, intervalMs: 1000},
			roots: [emulator.caDer],
		});
		id = uniqueId("hostile-sim");
		symmetricKey = emulator.addEnrollment({registrationId: id}).symmetricKey;
		// The first twin document after the connect comes back cut short.
		emulator.addFault({kind: "twin.malformed", count: 1, deviceId: id});
		run = start({registrationId: id, symmetricKey, dpsPort: emulator.port, hubPort: emulator.port}, true);
		await run.waitFor("telemetry.acked", {timeoutMs: 120_000});
	});

	test.after.always(async () => {
		await Promise.all(runs.map(r => r.stop()));
		await emulator?.close();
		fs.rmSync(runDir, {recursive: true, force: true});
	});

	const count = (name: string) => run.events.filter(e => e.event === name).length;

	async function telemetryContinues(n = 2): Promise<void> {
		const seen = count("telemetry.acked");
		await run.waitFor(() => count("telemetry.acked") >= seen + n, {timeoutMs: 30_000});
	}

	function finished(sent: SentView | undefined): Promise<SentView> {
		if (!sent) throw new Error("the emulator returned no record for the send");
		return eventually(() => {
			const now = emulator.sent(id).find(s => s.id === sent.id);
			return now?.done ? now : undefined;
		}, 60_000, `send ${sent.kind} to be done`);
	}

	test.serial("the build runs with the ESP32 firmware's creation sizes", t => {
		const creation = (file: string) => JSON.parse(fs.readFileSync(path.join(REPO_ROOT, file), "utf8")).creation;
		const esp32 = creation("hosts/esp32/manifest.json"), simulator = creation("hosts/sim/manifest.json");
		t.deepEqual(simulator.chunk, esp32.chunk);
		t.deepEqual(simulator.heap, esp32.heap);
		t.is(simulator.stack, esp32.stack);
		t.deepEqual(esp32.chunk, {initial: 49152, incremental: 0}, "a fixed 48 KB chunk heap");
	});

	test.serial("XS decodes UTF-8 as the core does on Node (native path for well-formed input, replacements otherwise)", t => {
		const event = run.events.find(e => e.event === "test.utf8");
		t.truthy(event, "the fixture printed its decodings");
		const cases = [[0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0x78], [0x61, 0x00, 0x62], [0xc0, 0xaf, 0x41], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x61, 0xe2, 0x82]];
		t.deepEqual(event?.decoded, cases.map(bytes => utf8Decode(Uint8Array.from(bytes))));
	});

	test.serial("a truncated twin document after the connect: reported, read again with backoff, the device connected", async t => {
		const error = run.events.find(e => e.event === "error" && e.code === "hub.badReply");
		t.truthy(error, "the cut-off document was reported");
		await eventually(() => (emulator.stats().devices[id]?.twinGets ?? 0) >= 2, 30_000, "the second twin read");
		t.true((emulator.stats().devices[id]?.twinGets ?? 0) <= 3, "not read in a loop");
	});

	test.serial("a 64 KB cloud-to-device message: completed unread, c2d.rejected with its size, not delivered again", async t => {
		t.timeout(120_000);
		const since = run.events.length;
		const sent = await finished(emulator.send({kind: "send.c2d", deviceId: id, bytes: 65536}));
		const rejected = await run.waitFor("c2d.rejected", {since, timeoutMs: 30_000});
		t.is(rejected.size, 65536);
		t.is(rejected.limit, DEFAULT_LIMITS.maxMessageBytes);
		await eventually(() => emulator.sent(id).find(s => s.id === sent.id)?.messages?.[0].completed, 20_000, "the hub to see it completed");
		t.is(emulator.sent(id).find(s => s.id === sent.id)!.messages![0].deliveries, 1);
		t.is(emulator.c2dQueue(id), 0);
		emulator.sendC2d(id, {body: "small enough"});
		const received = await run.waitFor("c2d.received", {since, timeoutMs: 30_000});
		t.is(received.body, "small enough");
		await telemetryContinues();
	});

	test.serial("a 100 KB method payload: 413 with a short JSON reason, method.rejected", async t => {
		t.timeout(120_000);
		const since = run.events.length;
		const sent = await finished(emulator.send({kind: "send.method", deviceId: id, bytes: 100 * 1024, name: "setTelemetryInterval"}));
		const result = sent.results![0] as {status: number; payload: {message: string}};
		t.is(result.status, 413, JSON.stringify(result));
		t.true(JSON.stringify(result.payload).length < 200);
		t.regex(result.payload.message, /102400 bytes/);
		const rejected = await run.waitFor("method.rejected", {since, timeoutMs: 30_000});
		t.like(rejected, {status: 413, size: 100 * 1024});
		await telemetryContinues();
	});

	test.serial("an oversized desired patch (24 KB; IoT Hub allows 32 KB): twin.rejected, the device keeps its values and takes the next patch", async t => {
		t.timeout(120_000);
		const since = run.events.length;
		const sent = await finished(emulator.send({kind: "send.desired", deviceId: id, bytes: 24 * 1024}));
		const rejected = await run.waitFor("twin.rejected", {since, timeoutMs: 30_000});
		t.like(rejected, {what: "desired", limit: DEFAULT_LIMITS.maxTwinBytes, version: sent.versions![0]});
		// Gone from the twin again before the next case, so that a twin read would not be refused too.
		emulator.patchDesired(id, {hostile: null});
		const {version} = emulator.patchDesired(id, {telemetryIntervalMs: 1500});
		await run.waitFor((e: DeviceEvent) => e.event === "twin.desired" && e.version === version, {since, timeoutMs: 30_000});
		await eventually(() => {
			const reported = emulator.twin(id).reported as Record<string, {ac?: number; av?: number}>;
			return reported.telemetryIntervalMs?.av === version && reported.telemetryIntervalMs.ac === 200;
		}, 30_000, "the acknowledgement of telemetryIntervalMs");
		await telemetryContinues();
	});

	test.serial("a malformed desired patch: reported and ignored", async t => {
		t.timeout(120_000);
		const since = run.events.length;
		await finished(emulator.send({kind: "send.malformedDesired", deviceId: id}));
		const error = await run.waitFor((e: DeviceEvent) => e.event === "error" && e.code === "hub.badReply", {since, timeoutMs: 30_000});
		t.regex(String(error.message), /not a JSON object/);
		const {version} = emulator.patchDesired(id, {telemetryIntervalMs: 1000});
		await run.waitFor((e: DeviceEvent) => e.event === "twin.desired" && e.version === version, {since, timeoutMs: 30_000});
		await telemetryContinues();
	});

	test.serial("a flood of 100 desired patches in one second: each delivered once, in order", async t => {
		t.timeout(120_000);
		const since = run.events.length;
		const sent = await finished(emulator.send({kind: "send.desired", deviceId: id, repeat: 100, everyMs: 10}));
		const last = sent.versions![99];
		await run.waitFor((e: DeviceEvent) => e.event === "twin.desired" && e.version === last, {since, timeoutMs: 60_000});
		t.deepEqual(run.events.slice(since).filter(e => e.event === "twin.desired").map(e => e.version), sent.versions);
		await telemetryContinues();
	});

	test.serial("a 32 KB publish on a topic the device never subscribed to: acknowledged, skipped unread", async t => {
		t.timeout(120_000);
		const sent = await finished(emulator.send({kind: "send.unsubscribed", deviceId: id, bytes: 32 * 1024, qos: 1}));
		await eventually(() => emulator.sent(id).find(s => s.id === sent.id)?.acked === 1, 20_000, "the PUBACK");
		t.truthy(run.lines.find(l => l.includes("ignored a message of 32768 bytes, unread")), "logged");
		await telemetryContinues();
	});

	test.serial("a method every 100 ms for 3 s: every call answered", async t => {
		t.timeout(120_000);
		const sent = await finished(emulator.send({kind: "send.method", deviceId: id, repeat: 30, everyMs: 100}));
		t.deepEqual(sent.results!.map(r => "status" in r ? r.status : r.error), new Array(30).fill(404));
		await telemetryContinues();
	});

	test.serial("through every case: one connection, never closed; no abort; every acknowledged reading at the hub", async t => {
		const connections = emulator.connections(id);
		t.is(connections.length, 1, JSON.stringify(connections));
		t.is(connections[0].endedAt, undefined);
		t.is(count("hub.disconnected"), 0);
		t.is(run.failure, undefined);
		const acked = run.events.filter(e => e.event === "telemetry.acked").map(e => Number(e.seq));
		const received = new Set(emulator.telemetry(id).map(r => Number(r.properties.seq)));
		t.deepEqual(acked.filter(s => !received.has(s)), []);
		t.true(acked.length >= 15, `${acked.length} readings acknowledged`);
	});

	test.serial("what still aborts is not silent: after an XS abort the next boot reports device.reset and lastReset", async t => {
		t.timeout(240_000);
		await run.stop();
		// The fixture asks for more memory than the heap has, 3 s after this boot.
		run = start({testAbortMs: 3000});
		await new Promise<void>((resolve, reject) => {
			const timer = setTimeout(() => reject(new Error(`no abort within 60 s\n${run.lines.slice(-15).join("\n")}`)), 60_000);
			if (run.failure) { clearTimeout(timer); resolve(); return; }
			run.emitter.once("abort", () => { clearTimeout(timer); resolve(); });
		});
		t.regex(run.failure ?? "", /XS abort: memory full/);
		await run.stop();
		run = start();
		const reset = await run.waitFor("device.reset", {timeoutMs: 60_000});
		t.like(reset, {reason: "unknown", detail: "XS abort: memory full"});
		await run.waitFor("telemetry.acked", {timeoutMs: 90_000});
		await eventually(() => {
			const reported = emulator.twin(id).reported as Record<string, unknown>;
			const last = reported.lastReset as {reason?: string; detail?: string} | undefined;
			return last?.detail === "XS abort: memory full" ? last : undefined;
		}, 30_000, "the reported property lastReset");
		t.is(run.failure, undefined, "this boot did not abort");
		// Reported once: the boot after this one has nothing to report.
		await run.stop();
		run = start();
		await run.waitFor("telemetry.acked", {timeoutMs: 90_000});
		t.false(run.events.some(e => e.event === "device.reset"), "the simulator has no reset reason of its own, and the abort was reported already");
	});
}
