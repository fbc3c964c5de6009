/*
 * The example applications (examples/), each an application of its own on the library, judged by
 * what the hub received (the emulator's telemetry, twin and method answers), never by what they
 * print: the thermostat's acknowledgement of targetTemperature (ac 200, av the desired version) and
 * its getMaxMinReport answer; the controller's component telemetry ($.sub), component reported
 * properties (__t) and component commands; the minimal application of the README.
 *
 * The same checks run on two hosts: the Node host (`npm run device -- --app examples/<name>`,
 * tools/node-device.ts), everywhere; and the Moddable simulator (mcconfig and mcsim, through
 * tools/sim-runner.ts), where the SDK is. On the simulator the minimal application is first copied
 * out of the repository, as a newcomer's own project would be, and built with AZURE_IOT from the
 * environment: its manifest's one include line is the only way the library comes in.
 */
import test, {type ExecutionContext} from "ava";
import {spawn, type ChildProcess} from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {startEmulator, type Emulator} from "../emulator/index.js";
import {REPO_ROOT, buildFirmware, runFirmware, simulatorAvailable, type FirmwareRun} from "../tools/sim-runner.js";
import {eventually} from "./helpers/e2e.js";

// The examples' manifests take AZURE_IOT from the shell when it is set; these builds test the default.
delete process.env.AZURE_IOT;

const sim = simulatorAvailable();
const BUILD_ROOT = path.join(REPO_ROOT, "build/examples-test");
const INTERVAL_MS = 1500;
const SINCE = "2024-01-01T00:00:00Z";
const DATE_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

let emulator: Emulator;
let dataDir: string;
const cleanups: (() => Promise<void> | void)[] = [];

test.before(async () => {
	dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "examples-test-"));
	emulator = await startEmulator({dataDir, retryAfterSeconds: 1});
});

test.after.always(async () => {
	for (const c of cleanups.reverse()) await c();
	await emulator?.close();
	if (dataDir) fs.rmSync(dataDir, {recursive: true, force: true});
});

/** An application running somewhere: its output lines so far. */
interface Running {
	lines: readonly string[];
	stop(): Promise<void>;
}

type Host = "node" | "sim";

function enroll(name: string, host: Host): {registrationId: string; symmetricKey: string} {
	return emulator.addEnrollment({registrationId: `example-${name}-${host}-${process.pid}`});
}

/** `npm run device -- --app <dir> --config <device.json>`: the application on the Node host, in a child process of its own. */
function startOnNode(appDir: string, registrationId: string, symmetricKey: string): Running {
	const dir = fs.mkdtempSync(path.join(dataDir, "node-"));
	const config = path.join(dir, "device.json");
	fs.writeFileSync(config, JSON.stringify({
		dps: {host: emulator.host, port: emulator.port, idScope: emulator.idScope, registrationId, symmetricKey},
		hub: {port: emulator.port},
		tls: {roots: [emulator.caDerPath]},
		telemetry: {intervalMs: INTERVAL_MS},
	}), {mode: 0o600});
	const child: ChildProcess = spawn(process.execPath, ["--import=tsx", "tools/node-device.ts", "--app", appDir, "--config", config, "--state", path.join(dir, "state.json")], {
		cwd: REPO_ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"],
	});
	const lines: string[] = [];
	let rest = "";
	const take = (chunk: Buffer) => {
		rest += chunk.toString();
		const parts = rest.split("\n");
		rest = parts.pop() ?? "";
		lines.push(...parts);
	};
	child.stdout!.on("data", take);
	child.stderr!.on("data", take);
	const exited = new Promise<void>(resolve => child.once("exit", () => resolve()));
	const running: Running = {
		lines,
		async stop() {
			if (child.exitCode === null && child.signalCode === null) {
				try {
					process.kill(-child.pid!, "SIGTERM");
				}
				catch {
					// gone
				}
				const killer = setTimeout(() => { try { process.kill(-child.pid!, "SIGKILL"); } catch { /* gone */ } }, 5000);
				await exited;
				clearTimeout(killer);
			}
		},
	};
	cleanups.push(() => running.stop());
	return running;
}

/** Builds the application for the simulator (settings and the emulator's root added by the runner's wrapper manifest) and starts it. */
async function startOnSim(t: ExecutionContext, manifest: string, name: string, registrationId: string, symmetricKey: string, env?: Record<string, string>): Promise<Running> {
	if (!sim.ok) throw new Error("no simulator");
	const build = await buildFirmware({
		sdk: sim.sdk, manifest, env,
		buildDir: path.join(BUILD_ROOT, name),
		settings: {dpsHost: emulator.host, dpsPort: emulator.port, idScope: emulator.idScope, registrationId, symmetricKey, hubPort: emulator.port, intervalMs: INTERVAL_MS},
		roots: [emulator.caDer],
	});
	t.log(`${name}: built for the simulator in ${build.seconds.toFixed(0)} s`);
	const run: FirmwareRun = runFirmware({sdk: sim.sdk, soPath: build.soPath, fresh: true});
	cleanups.push(() => run.stop());
	await run.waitFor("hub.connected", {timeoutMs: 90_000});
	return {lines: run.lines, stop: () => run.stop()};
}

// ---------------------------------------------------------------- what the hub must have received

function reported(id: string): Record<string, any> {
	// Empty until the device has registered.
	return emulator.devices().some(d => d.deviceId === id) ? emulator.twin(id).reported as Record<string, any> : {};
}

function bodies(id: string): {body: Record<string, unknown>; sub?: string}[] {
	return emulator.telemetry(id).map(r => ({body: JSON.parse(r.body), sub: r.systemProperties["$.sub"]}));
}

/** A getMaxMinReport answer: exactly the model's fields, consistent. */
function checkReport(t: ExecutionContext, answer: {status: number; payload: unknown}): void {
	t.is(answer.status, 200, JSON.stringify(answer));
	const p = answer.payload as Record<string, unknown>;
	t.deepEqual(Object.keys(p).sort(), ["avgTemp", "endTime", "maxTemp", "minTemp", "startTime"]);
	for (const k of ["maxTemp", "minTemp", "avgTemp"]) t.is(typeof p[k], "number", k);
	t.true((p.minTemp as number) <= (p.avgTemp as number) && (p.avgTemp as number) <= (p.maxTemp as number), JSON.stringify(p));
	t.is(p.startTime, SINCE);
	t.regex(String(p.endTime), DATE_TIME);
}

async function checkThermostat(t: ExecutionContext, id: string, running: Running): Promise<void> {
	const timeout = 60_000;
	try {
		await eventually(() => bodies(id).some(m => typeof m.body.temperature === "number"), timeout, "temperature telemetry");
		const readings = bodies(id);
		t.true(readings.every(m => Object.keys(m.body).join() === "temperature" && m.sub === undefined), "root telemetry {temperature}, no component");
		t.is(emulator.devices().find(d => d.deviceId === id)?.modelId, "dtmi:com:example:Thermostat;1", "the model id reached the hub");
		await eventually(() => typeof reported(id).maxTempSinceLastReboot === "number", timeout, "maxTempSinceLastReboot reported");

		const {version} = emulator.patchDesired(id, {targetTemperature: 25.5});
		const ack = await eventually(() => reported(id).targetTemperature?.av === version && reported(id).targetTemperature, timeout, "the targetTemperature acknowledgement");
		t.deepEqual(ack, {value: 25.5, ac: 200, av: version, ad: "success"});

		const refused = emulator.patchDesired(id, {targetTemperature: "warm"});
		const nack = await eventually(() => reported(id).targetTemperature?.av === refused.version && reported(id).targetTemperature, timeout, "the refusal");
		t.like(nack, {value: 25.5, ac: 400, av: refused.version});

		checkReport(t, await emulator.invokeMethod(id, "getMaxMinReport", SINCE, 30));
		const badSince = await emulator.invokeMethod(id, "getMaxMinReport", 42, 30);
		t.is(badSince.status, 400);
		t.regex(String((badSince.payload as {message?: string}).message), /since/);
		const unknown = await emulator.invokeMethod(id, "setPoint", null, 30);
		t.is(unknown.status, 404);
		t.regex(String((unknown.payload as {message?: string}).message), /setPoint/);
	}
	catch (e) {
		t.log(running.lines.slice(-30).join("\n"));
		throw e;
	}
}

async function checkController(t: ExecutionContext, id: string, running: Running): Promise<void> {
	const timeout = 60_000;
	try {
		const seen = () => bodies(id);
		await eventually(() => {
			const m = seen();
			return m.some(x => x.sub === "thermostat1") && m.some(x => x.sub === "thermostat2") && m.some(x => "workingSet" in x.body);
		}, timeout, "telemetry of both thermostats and the root");
		for (const m of seen()) {
			if (m.sub === undefined) t.deepEqual(Object.keys(m.body), ["workingSet"], "root telemetry: workingSet");
			else {
				t.true(m.sub === "thermostat1" || m.sub === "thermostat2", `$.sub ${m.sub}`);
				t.deepEqual(Object.keys(m.body), ["temperature"], "component telemetry: temperature");
			}
		}
		t.is(emulator.devices().find(d => d.deviceId === id)?.modelId, "dtmi:com:example:TemperatureController;2");

		await eventually(() => reported(id).thermostat2?.maxTempSinceLastReboot !== undefined && reported(id).deviceInformation, timeout, "the component reports");
		const r = reported(id);
		t.is(r.serialNumber, id);
		t.like(r.thermostat1, {__t: "c"});
		t.is(typeof r.thermostat1.maxTempSinceLastReboot, "number");
		t.like(r.thermostat2, {__t: "c"});
		t.like(r.deviceInformation, {__t: "c", swVersion: "0.1.0"});
		for (const k of ["manufacturer", "model", "osName", "processorArchitecture", "processorManufacturer"]) t.is(typeof r.deviceInformation[k], "string", k);
		for (const k of ["totalStorage", "totalMemory"]) t.is(typeof r.deviceInformation[k], "number", k);

		const {version} = emulator.patchDesired(id, {thermostat1: {targetTemperature: 30}});
		const ack = await eventually(() => reported(id).thermostat1?.targetTemperature?.av === version && reported(id).thermostat1, timeout, "thermostat1's acknowledgement");
		t.is(ack.__t, "c");
		t.deepEqual(ack.targetTemperature, {value: 30, ac: 200, av: version, ad: "success"});
		t.is(reported(id).thermostat2.targetTemperature, undefined, "only thermostat1 was asked");

		checkReport(t, await emulator.invokeMethod(id, "thermostat2*getMaxMinReport", SINCE, 30));
		const badDelay = await emulator.invokeMethod(id, "reboot", "soon", 30);
		t.is(badDelay.status, 400);
		for (const name of ["thermostat3*getMaxMinReport", "thermostat1*reboot", "getMaxMinReport"]) {
			const answer = await emulator.invokeMethod(id, name, SINCE, 30);
			t.is(answer.status, 404, name);
			t.is(typeof (answer.payload as {message?: unknown}).message, "string", name);
		}
		// Last, since it may end the device: the answer comes first, then the restart. The simulator
		// cannot restart (the application says so); `npm run device` on Node restarts by exiting.
		t.deepEqual(await emulator.invokeMethod(id, "reboot", 0, 30), {status: 200, payload: {}});
		await eventually(() => running.lines.some(l => l.includes("reboot: this platform cannot restart") || l.includes("device: restart asked for")), timeout, "the reboot line");
	}
	catch (e) {
		t.log(running.lines.slice(-30).join("\n"));
		throw e;
	}
}

async function checkMinimal(t: ExecutionContext, id: string, running: Running): Promise<void> {
	const timeout = 60_000;
	try {
		await eventually(() => bodies(id).length >= 2, timeout, "two readings");
		t.deepEqual(bodies(id).slice(0, 2).map(m => m.body), [{count: 1}, {count: 2}]);

		const {version} = emulator.patchDesired(id, {intervalMs: 1000});
		const ack = await eventually(() => reported(id).intervalMs?.av === version && reported(id).intervalMs, timeout, "the intervalMs acknowledgement");
		t.deepEqual(ack, {value: 1000, ac: 200, av: version});
		const tooShort = emulator.patchDesired(id, {intervalMs: 10});
		t.like(await eventually(() => reported(id).intervalMs?.av === tooShort.version && reported(id).intervalMs, timeout, "the refusal"), {ac: 400, value: 1000}, "refused with the interval in use");

		const pong = await emulator.invokeMethod(id, "ping", null, 30);
		t.is(pong.status, 200);
		t.is(typeof (pong.payload as {pong?: unknown}).pong, "number");
		const unknown = await emulator.invokeMethod(id, "reboot", null, 30);
		t.is(unknown.status, 404);
		t.regex(String((unknown.payload as {message?: string}).message), /reboot/);

		emulator.sendC2d(id, {body: "hello minimal"});
		await eventually(() => running.lines.some(l => l.includes("message: hello minimal")) && emulator.c2dQueue(id) === 0, timeout, "the message printed and completed");
		t.pass();
	}
	catch (e) {
		t.log(running.lines.slice(-30).join("\n"));
		throw e;
	}
}

// ---------------------------------------------------------------- the Node host (everywhere)

test.serial("thermostat on the Node host: telemetry, the targetTemperature acknowledgement, getMaxMinReport", async t => {
	t.timeout(120_000);
	const {registrationId, symmetricKey} = enroll("thermostat", "node");
	const running = startOnNode("examples/thermostat", registrationId, symmetricKey);
	await checkThermostat(t, registrationId, running);
	await running.stop();
});

test.serial("temperature controller on the Node host: component telemetry, component reports and acknowledgements, component commands", async t => {
	t.timeout(120_000);
	const {registrationId, symmetricKey} = enroll("controller", "node");
	const running = startOnNode("examples/temperature-controller", registrationId, symmetricKey);
	await checkController(t, registrationId, running);
	await running.stop();
});

test.serial("the minimal application on the Node host", async t => {
	t.timeout(120_000);
	const {registrationId, symmetricKey} = enroll("minimal", "node");
	const running = startOnNode("examples/minimal", registrationId, symmetricKey);
	await checkMinimal(t, registrationId, running);
	await running.stop();
});

// ---------------------------------------------------------------- the Moddable simulator

if (!sim.ok) {
	console.log(`examples.test.ts: the simulator tests are skipped. ${sim.reason}`);
	test.skip("the examples on the Moddable simulator", () => {});
}
else {
	test.serial("thermostat on the simulator: telemetry, the targetTemperature acknowledgement, getMaxMinReport", async t => {
		t.timeout(600_000);
		const {registrationId, symmetricKey} = enroll("thermostat", "sim");
		const running = await startOnSim(t, path.join(REPO_ROOT, "examples/thermostat/manifest.json"), "thermostat", registrationId, symmetricKey);
		await checkThermostat(t, registrationId, running);
		await running.stop();
		t.falsy(running.lines.find(l => l.includes("XS abort")));
	});

	test.serial("temperature controller on the simulator: component telemetry, component reports and acknowledgements, component commands", async t => {
		t.timeout(600_000);
		const {registrationId, symmetricKey} = enroll("controller", "sim");
		const running = await startOnSim(t, path.join(REPO_ROOT, "examples/temperature-controller/manifest.json"), "temperature-controller", registrationId, symmetricKey);
		await checkController(t, registrationId, running);
		await running.stop();
		t.falsy(running.lines.find(l => l.includes("XS abort")));
	});

	test.serial("the minimal application, copied out of the repository, builds with mcconfig by its one include line (AZURE_IOT from the environment) and runs", async t => {
		t.timeout(600_000);
		const project = fs.mkdtempSync(path.join(os.tmpdir(), "my-azure-app-"));
		cleanups.push(() => fs.rmSync(project, {recursive: true, force: true}));
		for (const f of ["manifest.json", "main.ts"]) fs.copyFileSync(path.join(REPO_ROOT, "examples/minimal", f), path.join(project, f));
		const manifest = JSON.parse(fs.readFileSync(path.join(project, "manifest.json"), "utf8"));
		t.deepEqual(manifest.include, ["$(AZURE_IOT)/src/manifest.json"], "the library comes in by one include line");
		const {registrationId, symmetricKey} = enroll("minimal", "sim");
		const running = await startOnSim(t, path.join(project, "manifest.json"), "minimal-outside", registrationId, symmetricKey, {AZURE_IOT: REPO_ROOT});
		const modules = path.join(BUILD_ROOT, "minimal-outside/tmp/lin/mc/release/app/modules");
		for (const m of ["main.xsb", "azure-iot/device.xsb", "azure-iot/platform.xsb"]) t.true(fs.existsSync(path.join(modules, m)), m);
		await checkMinimal(t, registrationId, running);
		await running.stop();
	});
}
