/*
 * Device Update with the firmware itself in the Moddable simulator (XS, the SDK's TLS, sockets and
 * File), against the emulator. The runner (tools/sim-runner.ts runUpdatableFirmware) plays the
 * ESP32's two OTA slots: on the firmware's sim.restart it starts the image the firmware wrote, and
 * goes back to the previous one when that image does not reach the hub in time.
 *
 * Three builds of the reference firmware (incremental, under build/sim-test/): 1.0.0 runs, 1.1.0 is
 * the update, 1.2.0 is an image that cannot reach the hub (a broken build-only setting: it idles in
 * "failed"). The emulator keeps its PKI and ADU keys in a fixed directory and the ports and the
 * identity come from Preference, so the builds stay the same from run to run.
 *
 * Skipped, saying why, where the SDK, xvfb-run or dbus-run-session is missing.
 */
import test from "ava";
import * as fs from "node:fs";
import * as path from "node:path";
import {startEmulator, type Emulator} from "../emulator/index.js";
import {REPO_ROOT, buildFirmware, runUpdatableFirmware, simulatorAvailable, type Build, type DeviceEvent, type UpdatableRun} from "../tools/sim-runner.js";
import {eventually} from "./helpers/e2e.js";

const sim = simulatorAvailable();
const BUILD_ROOT = path.join(REPO_ROOT, "build/sim-test");
const MANUFACTURER = "Contoso";
const MODEL = "SimGadget";

let emulator: Emulator;
const builds: Record<string, Build> = {};
const runs: UpdatableRun[] = [];
let counter = 0;

interface Agent {
	state: number;
	installedUpdateId: string;
	lastInstallResult?: {resultCode: number; extendedResultCode: number; resultDetails?: string};
}

function agent(id: string): Agent | undefined {
	try {
		return ((emulator.twin(id).reported as Record<string, {agent?: Agent}>).deviceUpdate)?.agent;
	}
	catch {
		return undefined; // not provisioned yet
	}
}

/** Waits for state 0 with `version` installed (and, given `result`, the extendedResultCode reported before it). */
function idleOn(id: string, version: string, result?: number, timeoutMs = 90_000): Promise<Agent> {
	return eventually(() => {
		const a = agent(id);
		if (result !== undefined && a?.lastInstallResult?.extendedResultCode !== result) return undefined;
		return a && a.state === 0 && (JSON.parse(a.installedUpdateId) as {version: string}).version === version ? a : undefined;
	}, timeoutMs, `${id} idle on ${version}${result !== undefined ? ` after result ${result}` : ""}`);
}

/** A device of its own (enrollment, storage) on the 1.0.0 build. */
function startDevice(rollbackMs: number): {id: string; run: UpdatableRun} {
	const id = `adu-sim-${process.pid}-${++counter}`;
	const {symmetricKey} = emulator.addEnrollment({registrationId: id});
	const run = runUpdatableFirmware({
		sdk: sim.ok ? sim.sdk : undefined, soPath: builds["1.0.0"].soPath, fresh: true, rollbackMs,
		preferences: {registrationId: id, symmetricKey, dpsPort: emulator.port, hubPort: emulator.port},
	});
	runs.push(run);
	return {id, run};
}

function since(run: UpdatableRun, boot: number): number {
	return run.boots[boot]?.since ?? Number.MAX_SAFE_INTEGER;
}

if (!sim.ok) {
	console.log(`adu-sim.test.ts: skipped. ${sim.reason}`);
	test.skip("Device Update on the Moddable simulator", () => {});
}
else {
	test.before(async () => {
		// A fixed data directory: the same test CA and ADU root key every run, so the builds do not change.
		emulator = await startEmulator({dataDir: path.join(BUILD_ROOT, "adu-emulator"), retryAfterSeconds: 1});
		const settings = (version: string, extra: Record<string, string> = {}) => ({
			dpsHost: emulator.host, idScope: emulator.idScope, registrationId: "set-by-preference", symmetricKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
			intervalMs: 60_000, firmwareVersion: version, aduManufacturer: MANUFACTURER, aduModel: MODEL,
			aduRootKey: JSON.stringify(emulator.aduRootKey), ...extra,
		});
		for (const [version, extra] of [
			["1.0.0", {}],
			["1.1.0", {}],
			// Build-only and broken: this image says so and never connects, as a bad release would not reach the hub.
			["1.2.0", {aduRootKey: JSON.stringify({kid: "BROKEN", n: "AQAB", e: "AQAB"})}],
		] as const) {
			builds[version] = await buildFirmware({
				sdk: sim.sdk,
				buildDir: path.join(BUILD_ROOT, `adu-${version}`),
				settings: settings(version, extra),
				roots: [emulator.caDer],
			});
		}
	});

	test.after.always(async () => {
		await Promise.all(runs.map(r => r.stop()));
		await emulator?.close();
	});

	test.serial("an update end to end on the simulator: 1.0.0 downloads 1.1.0 over HTTP, verifies it in XS, restarts into it, reports it; deployment succeeded", async t => {
		t.timeout(300_000);
		const {id, run} = startDevice(120_000);
		await idleOn(id, "1.0.0");
		const update = emulator.importUpdate({provider: MANUFACTURER, name: MODEL, version: "1.1.0", file: builds["1.1.0"].soPath, compatibility: {manufacturer: MANUFACTURER, model: MODEL}});
		const {deploymentId} = emulator.deploy({updateId: update.updateId, deviceIds: [id]});
		await run.waitFor("update.accepted", {timeoutMs: 60_000});
		await run.waitFor("update.rebooting", {timeoutMs: 180_000});
		await eventually(() => run.boots.length >= 2, 30_000, "the restart into the new image");
		t.is(run.boots[1].reason, "update");
		await run.waitFor("hub.connected", {since: since(run, 1), timeoutMs: 60_000});
		const after = await idleOn(id, "1.1.0");
		t.deepEqual(JSON.parse(after.installedUpdateId), update.updateId);
		await eventually(() => emulator.deployment(deploymentId).state === "succeeded", 30_000, "the deployment to succeed");
		const first = run.events.slice(0, since(run, 1));
		const downloads = first.filter(e => e.event === "update.download");
		t.true(downloads.length >= 1 && downloads.length <= 10, `${downloads.length} update.download events`);
		t.is(downloads[downloads.length - 1].bytes, fs.statSync(builds["1.1.0"].soPath).size);
		for (const name of ["update.offered", "update.accepted", "update.verified", "update.installing", "update.rebooting"])
			t.true(first.some(e => e.event === name), name);
		await run.waitFor("update.succeeded", {since: since(run, 1), timeoutMs: 30_000});
		t.is(run.failure, undefined);
	});

	test.serial("refused on the simulator: an update for another model is rejected after its signature is checked in XS; nothing is downloaded", async t => {
		t.timeout(180_000);
		const {id, run} = startDevice(120_000);
		await idleOn(id, "1.0.0");
		const update = emulator.importUpdate({provider: MANUFACTURER, name: MODEL, version: "1.1.1", file: builds["1.1.0"].soPath, compatibility: {manufacturer: MANUFACTURER, model: "OtherModel"}});
		const {deploymentId} = emulator.deploy({updateId: update.updateId, deviceIds: [id]});
		const rejected: DeviceEvent = await run.waitFor("update.rejected", {timeoutMs: 60_000});
		t.is(rejected.reason, "incompatible");
		t.is(rejected.code, "adu.incompatible");
		await eventually(() => emulator.deployment(deploymentId).state === "failed", 30_000, "the deployment to fail");
		t.is(emulator.deployment(deploymentId).devices[0].download.requests, 0);
		t.like((await idleOn(id, "1.0.0", 301)).lastInstallResult, {resultCode: 0});
		t.is(run.boots.length, 1);
	});

	test.serial("rolled back by the runner: the new image never reaches the hub, the previous one starts again and reports the failure (255, then 0 on 1.0.0)", async t => {
		t.timeout(300_000);
		const {id, run} = startDevice(20_000);
		await idleOn(id, "1.0.0");
		const update = emulator.importUpdate({provider: MANUFACTURER, name: MODEL, version: "1.2.0", file: builds["1.2.0"].soPath, compatibility: {manufacturer: MANUFACTURER, model: MODEL}});
		const {deploymentId} = emulator.deploy({updateId: update.updateId, deviceIds: [id]});
		await run.waitFor("update.rebooting", {timeoutMs: 180_000});
		await eventually(() => run.boots.length >= 3, 90_000, "the rollback to the previous image");
		t.deepEqual(run.boots.map(b => b.reason), ["start", "update", "rollback"]);
		t.is(run.boots[2].image, builds["1.0.0"].soPath);
		t.false(run.events.slice(since(run, 1), since(run, 2)).some(e => e.event === "hub.connected"), "the new image never reached the hub");
		const failed = await run.waitFor("update.failed", {since: since(run, 2), timeoutMs: 60_000});
		t.is(failed.reason, "rolledBack");
		await eventually(() => emulator.deployment(deploymentId).state === "failed", 30_000, "the deployment to fail");
		t.like((await idleOn(id, "1.0.0", 405)).lastInstallResult, {resultCode: 0});
		await new Promise(r => setTimeout(r, 3000));
		t.false(run.events.slice(since(run, 2)).some(e => e.event === "update.accepted"), "the same deployment is not taken again");
		t.is(run.boots.length, 3);
	});
}
