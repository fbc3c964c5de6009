/*
 * The firmware itself, built with mcconfig and run in the Moddable simulator (mcsim, headless),
 * against the emulator: the same path as the ESP32 except the radio. The firmware is built once
 * (incrementally, under build/sim-test/) and pointed at each emulator through Preference, which
 * src/main.ts lets win over the build settings.
 *
 * Skipped, saying why, where the SDK, xvfb-run or dbus-run-session is missing.
 */
import test from "ava";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";
import {testPki} from "./helpers/pki.js";
import {startEmulator, type Emulator} from "../emulator/index.js";
import {REPO_ROOT, buildFirmware, runFirmware, simulatorAvailable, type Build, type DeviceEvent, type FirmwareRun} from "../tools/sim-runner.js";

const sim = simulatorAvailable();
const REGISTRATION_ID = "sim-device-1";
const BUILD_ROOT = path.join(REPO_ROOT, "build/sim-test");

let dataDir: string;
let emulator: Emulator;
let symmetricKey: string;
let firmware: Build;
let stateDir: string;
const runs: FirmwareRun[] = [];
const emulators: Emulator[] = [];

function start(options: Parameters<typeof runFirmware>[0]): FirmwareRun {
	const run = runFirmware(options);
	runs.push(run);
	return run;
}

function hasTlsCode(e: DeviceEvent): boolean {
	return (e.event === "error" || e.event === "dps.failed") && e.code === "tls";
}

if (!sim.ok) {
	console.log(`sim.test.ts: skipped. ${sim.reason}`);
	test.skip("the firmware on the Moddable simulator", () => {});
}
else {
	test.before(async () => {
		dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "sim-test-emulator-"));
		stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "sim-test-device-"));
		emulator = await startEmulator({dataDir, retryAfterSeconds: 1});
		emulators.push(emulator);
		symmetricKey = emulator.addEnrollment({registrationId: REGISTRATION_ID}).symmetricKey;
		firmware = await buildFirmware({
			sdk: sim.sdk,
			buildDir: path.join(BUILD_ROOT, "firmware"),
			settings: {
				dpsHost: emulator.host, dpsPort: emulator.port, idScope: emulator.idScope,
				registrationId: REGISTRATION_ID, symmetricKey, hubPort: emulator.port, intervalMs: 2000,
			},
			roots: [emulator.caDer],
		});
	});

	test.after.always(async () => {
		await Promise.all(runs.map(r => r.stop()));
		await Promise.all(emulators.map(e => e.close()));
		for (const dir of [dataDir, stateDir]) if (dir) fs.rmSync(dir, {recursive: true, force: true});
	});

	test.serial("XS: the core's SAS vectors, AzureIoTError, UTF-8, and the host's storage, timers and TLS (20 KB each way) work in the simulator", async t => {
		t.timeout(120_000);
		const pki = testPki();
		// An echo server sending leaf + intermediate, as the SDK's TLS needs to check the name.
		const echo = tls.createServer({key: pki.leafKeyPem, cert: pki.chainPem, minVersion: "TLSv1.2"}, socket => socket.pipe(socket));
		await new Promise<void>(resolve => echo.listen(0, "127.0.0.1", resolve));
		try {
			const smoke = await buildFirmware({
				sdk: sim.sdk,
				buildDir: path.join(BUILD_ROOT, "xs-smoke"),
				manifest: path.join(REPO_ROOT, "test/fixtures/xs-smoke/manifest.json"),
				roots: [pki.rootDer],
			});
			const run = start({soPath: smoke.soPath, sdk: sim.sdk, preferences: {echoPort: (echo.address() as {port: number}).port}});
			await run.waitFor("test.done", {timeoutMs: 30_000}).catch(e => t.log(e.message));
			await run.stop();
			const results = run.events.filter(e => e.event === "test");
			const names = results.map(r => r.name);
			for (const name of ["deriveDeviceKey", "dpsPassword", "hubPassword", "AzureIoTError", "storage", "storageKeyLimit", "timer", "tlsEcho20KB", "utf8Decode2KB"])
				t.true(names.includes(name), `${name} reported`);
			for (const r of results) {
				const info = run.events.find(e => e.event === "test.info" && e.name === r.name);
				t.true(r.pass, `${r.name}${info ? `: ${info.message}` : ""}`);
			}
		}
		finally {
			echo.close();
		}
	});

	test.serial("firmware: the image holds the roots it was given and no certificate store beyond the SDK's index", t => {
		const resources = fs.readdirSync(path.join(firmware.buildDir, "tmp/lin/mc/release/app/resources"));
		t.false(resources.some(f => /^ca\d+\.der$/.test(f)), `no SDK store certificates: ${resources.join(", ")}`);
		t.true(resources.includes("root-0.der"));
		t.true(resources.includes("digicert-global-root-g2.der") && resources.includes("microsoft-rsa-root-2017.der"));
		t.false(resources.some(f => /baltimore/i.test(f)));
	});

	test.serial("firmware: provisions, connects, sends telemetry, answers a method, applies a desired property, receives a C2D message", async t => {
		t.timeout(150_000);
		const run = start({soPath: firmware.soPath, sdk: sim.sdk, runDir: stateDir, fresh: true});
		const assigned = await run.waitFor("dps.assigned", {timeoutMs: 60_000});
		t.is(assigned.assignedHub, emulator.hubName);
		t.is(assigned.deviceId, REGISTRATION_ID);
		t.is(assigned.status, "assigned");
		await run.waitFor("hub.connected", {timeoutMs: 30_000});

		const acked = await run.waitFor("telemetry.acked", {timeoutMs: 30_000});
		const stored = emulator.telemetry(REGISTRATION_ID);
		t.true(stored.length >= 1, "the emulator stored telemetry");
		t.is(JSON.parse(stored[0].body).seq, 1);
		t.is(stored.find(r => r.systemProperties["$.mid"] === acked.messageId)?.systemProperties["$.ct"], "application/json");

		const reply = await emulator.invokeMethod(REGISTRATION_ID, "setTelemetryInterval", {intervalMs: 3000}, 20);
		t.deepEqual(reply, {status: 200, payload: {intervalMs: 3000}});
		await run.waitFor(e => e.event === "method.invoked" && e.name === "setTelemetryInterval", {timeoutMs: 10_000});

		const {version} = emulator.patchDesired(REGISTRATION_ID, {telemetryIntervalMs: 1500});
		await run.waitFor(e => e.event === "twin.reported" && e.telemetryIntervalMs === 1500 && e.ac === 200, {timeoutMs: 30_000});
		const reported = emulator.twin(REGISTRATION_ID).reported as Record<string, any>;
		t.like(reported.telemetryIntervalMs, {value: 1500, ac: 200, av: version});

		const {messageId} = emulator.sendC2d(REGISTRATION_ID, {body: "hello from the cloud", properties: {color: "green"}});
		const c2d = await run.waitFor("c2d.received", {timeoutMs: 30_000});
		t.is(c2d.messageId, messageId);
		t.is(c2d.body, "hello from the cloud");
		t.deepEqual(c2d.properties, {color: "green"});
		await run.stop();
		t.falsy(run.lines.find(l => l.includes(symmetricKey)), "the key never appears in the output");
		t.falsy(run.lines.find(l => /sig=[A-Za-z0-9%]{20,}/.test(l)), "no SAS signature appears in the output");
	});

	test.serial("firmware: a restart connects to the cached hub without contacting DPS", async t => {
		t.timeout(120_000);
		const before = emulator.stats().dpsRegisterRequests;
		const dpsConnects = emulator.stats().dpsConnects;
		const run = start({soPath: firmware.soPath, sdk: sim.sdk, runDir: stateDir});
		const cached = await run.waitFor("dps.cached", {timeoutMs: 30_000});
		t.is(cached.assignedHub, emulator.hubName);
		t.is(cached.deviceId, REGISTRATION_ID);
		await run.waitFor("hub.connected", {timeoutMs: 30_000});
		await run.waitFor("telemetry.acked", {timeoutMs: 30_000});
		t.is(emulator.stats().dpsRegisterRequests, before, "no new registration");
		t.is(emulator.stats().dpsConnects, dpsConnects, "DPS was not contacted");
		t.falsy(run.events.find(e => e.event === "dps.registering"));
		await run.stop();
	});

	test.serial("firmware: a bad setting in Preference (which wins over the build) prints one config error and stops", async t => {
		t.timeout(60_000);
		const run = start({soPath: firmware.soPath, sdk: sim.sdk, fresh: true, preferences: {idScope: "not an id scope"}});
		const error = await run.waitFor("error", {timeoutMs: 20_000});
		t.is(error.code, "config");
		t.regex(String(error.message), /idScope/);
		await new Promise(resolve => setTimeout(resolve, 1500));
		t.is(run.events.filter(e => e.event === "error").length, 1, "one line, no retry loop");
		t.falsy(run.events.find(e => e.event === "dps.registering" || e.event === "wifi.connected"));
		t.false(run.exited, "the simulator is still running (the VM did not abort)");
		t.is(run.failure, undefined);
		await run.stop();
	});

	const impostors = {
		untrustedRoot: "a chain to an unpinned root",
		wrongHost: "a certificate for another name",
		expired: "an expired certificate",
		selfSigned: "a self-signed leaf",
	} as const;
	for (const profile of Object.keys(impostors) as (keyof typeof impostors)[]) {
		test.serial(`firmware: refuses a server with ${impostors[profile]} (tls ${profile})`, async t => {
			t.timeout(120_000);
			const bad = await startEmulator({dataDir, tls: profile, retryAfterSeconds: 1});
			emulators.push(bad);
			bad.addEnrollment({registrationId: REGISTRATION_ID, symmetricKey});
			const run = start({
				soPath: firmware.soPath, sdk: sim.sdk, fresh: true,
				preferences: {dpsPort: bad.port, hubPort: bad.port},
			});
			const failure = await run.waitFor(hasTlsCode, {timeoutMs: 60_000});
			t.regex(String(failure.message), /TLS|certificate/i);
			t.is(bad.stats().dpsRegisterRequests, 0, "nothing was sent to the impostor");
			t.falsy(run.events.find(e => e.event === "dps.assigned"));
			await run.stop();
			t.falsy(run.failure?.includes("XS abort"), "the VM did not abort");
		});
	}
}
