/*
 * Fault matrix on the firmware itself: built with mcconfig, run in the Moddable simulator (headless)
 * against the emulator, through tools/sim-runner.ts. The firmware is built once under
 * build/sim-faults/ with only the pinned root and the DPS host baked in; the device identity and the
 * ports come from Preference at each start (src/main.ts lets Preference win), so the build stays
 * the same from run to run.
 *
 * Skipped, saying why, where the SDK, xvfb-run or dbus-run-session is missing.
 */
import test from "ava";
import * as path from "node:path";
import {startEmulator, type Emulator} from "../emulator/index.js";
import {REPO_ROOT, buildFirmware, runFirmware, simulatorAvailable, type Build, type DeviceEvent, type FirmwareRun} from "../tools/sim-runner.js";
import {eventually} from "./helpers/e2e.js";
import {uniqueId} from "./helpers/faults.js";

const sim = simulatorAvailable();

if (!sim.ok) {
	console.log(`faults-sim.test.ts: skipped. ${sim.reason}`);
	test.skip("the fault matrix on the Moddable simulator", () => {});
}
else {
	const sdk = sim.sdk;
	let emulator: Emulator;
	let firmware: Build;
	const runs: FirmwareRun[] = [];
	const logs: string[] = [];

	test.before(async () => {
		// The shared PKI cache (the default data directory) keeps the root, and so the build, unchanged between runs.
		emulator = await startEmulator({retryAfterSeconds: 1, log: line => logs.push(line)});
		firmware = await buildFirmware({
			sdk,
			buildDir: path.join(REPO_ROOT, "build/sim-faults"),
			settings: {dpsHost: emulator.host, idScope: emulator.idScope, intervalMs: 1000},
			roots: [emulator.caDer],
		});
	});

	test.after.always(async () => {
		await Promise.all(runs.map(r => r.stop()));
		await emulator?.close();
	});

	/** A factory-fresh simulated device with its own enrollment. */
	function startDevice(prefix: string): {id: string; run: FirmwareRun} {
		const id = uniqueId(prefix);
		const {symmetricKey} = emulator.addEnrollment({registrationId: id});
		const run = runFirmware({
			soPath: firmware.soPath, sdk, fresh: true,
			preferences: {registrationId: id, symmetricKey, dpsPort: emulator.port, hubPort: emulator.port},
		});
		runs.push(run);
		return {id, run};
	}

	const ackedSeqs = (run: FirmwareRun) => run.events.filter(e => e.event === "telemetry.acked").map(e => Number(e.seq));

	test.serial("firmware: the hub connection dropped, then recovered; telemetry still acknowledged and none lost", async t => {
		t.timeout(150_000);
		const {id, run} = startDevice("sim-drop");
		await run.waitFor("telemetry.acked", {timeoutMs: 60_000});
		const lastBefore = Math.max(...ackedSeqs(run));
		const since = run.events.length;
		emulator.dropAll();
		const dropped = await run.waitFor("hub.disconnected", {timeoutMs: 20_000, since});
		t.is(dropped.code, "network");
		t.true(Number(dropped.retryInMs) > 0, "a pause before reconnecting");
		const back = await run.waitFor((e: DeviceEvent) => e.event === "hub.connected" && e.reconnect === true, {timeoutMs: 60_000, since});
		t.truthy(back);
		await run.waitFor((e: DeviceEvent) => e.event === "telemetry.acked" && Number(e.seq) > lastBefore + 2, {timeoutMs: 60_000, since});
		const acked = ackedSeqs(run);
		const received = new Set(emulator.telemetry(id).map(r => Number(r.properties.seq)));
		t.deepEqual(acked.filter(s => !received.has(s)), [], "every acknowledged message is at the hub");
		const highest = Math.max(...acked);
		const missing = Array.from({length: highest}, (_, i) => i + 1).filter(s => !received.has(s));
		t.deepEqual(missing, [], "every message up to the last acknowledged one arrived (those in flight at the drop were re-sent)");
		t.is(run.failure, undefined);
		await run.stop();
	});

	test.serial("firmware: CONNACK 3 from the hub is retried with backoff until accepted", async t => {
		t.timeout(150_000);
		const id = uniqueId("sim-connack3");
		emulator.addFault({kind: "connack", target: "hub", returnCode: 3, count: 2, deviceId: id});
		const {symmetricKey} = emulator.addEnrollment({registrationId: id});
		const run = runFirmware({
			soPath: firmware.soPath, sdk, fresh: true,
			preferences: {registrationId: id, symmetricKey, dpsPort: emulator.port, hubPort: emulator.port},
		});
		runs.push(run);
		await run.waitFor("hub.connected", {timeoutMs: 90_000});
		const refusals = run.events.filter(e => e.event === "hub.disconnected");
		t.is(refusals.length, 2);
		for (const e of refusals) {
			t.is(e.code, "hub.unavailable");
			t.true(Number(e.retryInMs) >= 500, `backoff ${e.retryInMs} ms`);
		}
		await eventually(() => logs.filter(l => l.startsWith(`hub ${id}: CONNACK 3`)).length === 2, 5000, "two refusals at the emulator");
		await run.waitFor("telemetry.acked", {timeoutMs: 30_000});
		t.is(run.failure, undefined);
		await run.stop();
	});

	test.serial("firmware: the hub down long enough to fill the telemetry queue: overflow reported, no memory exhaustion, the queue delivered afterwards", async t => {
		t.timeout(240_000);
		const {id, run} = startDevice("sim-queue");
		await run.waitFor("telemetry.acked", {timeoutMs: 60_000});
		const since = run.events.length;
		// 1 message a second against the firmware's default queue of 16: 25 s offline overflows it.
		emulator.addFault({kind: "down", ms: 25_000});
		const overflow = await run.waitFor((e: DeviceEvent) => e.event === "error" && e.code === "queue.full", {timeoutMs: 60_000, since});
		t.regex(String(overflow.message), /queue is full/);
		await run.waitFor((e: DeviceEvent) => e.event === "hub.connected" && e.reconnect === true, {timeoutMs: 120_000, since});
		const lastSent = Math.max(...run.events.filter(e => e.event === "telemetry.sent").map(e => Number(e.seq)));
		await run.waitFor((e: DeviceEvent) => e.event === "telemetry.acked" && Number(e.seq) > lastSent, {timeoutMs: 60_000, since});
		t.is(run.failure, undefined, "the VM did not run out of memory");
		const sent = run.events.filter(e => e.event === "telemetry.sent" && Number(e.seq) <= lastSent).length;
		const acked = run.events.filter(e => e.event === "telemetry.acked" && Number(e.seq) <= lastSent).length;
		// A refusal is reported just before the telemetry.sent of the same reading: count those up to lastSent,
		// not one for a reading refused while this test was still waiting.
		const refused = run.events.filter((e, i) => e.event === "error" && e.code === "queue.full" &&
			Number(run.events.slice(i + 1).find(n => n.event === "telemetry.sent")?.seq ?? Infinity) <= lastSent).length;
		t.log(`handed over ${sent}, acknowledged ${acked}, refused (queue full) ${refused}`);
		t.true(refused >= 1);
		t.is(acked + refused, sent, "every message handed over was either acknowledged or refused with the application told");
		const received = new Set(emulator.telemetry(id).map(r => Number(r.properties.seq)));
		t.deepEqual(ackedSeqs(run).filter(s => !received.has(s)), [], "every acknowledged message is at the hub");
		await run.stop();
	});
}
