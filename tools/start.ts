/*
 * `npm start [-- --app DIR]`: the whole flow on one machine. Starts the emulator, enrolls a demo
 * device, runs the application (default: the reference firmware; `--app examples/thermostat` one of
 * the examples) on the Moddable simulator against it and drives it from the service side (its
 * demo.json: methods, desired properties, a cloud-to-device message) so every step shows. Where the
 * SDK or a virtual display is missing it says what and how to install it, then runs the same
 * application on the Node host, labelled so.
 */
import {Command} from "commander";
import {EventEmitter} from "node:events";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {startEmulator, type Emulator} from "../emulator/index.js";
import {pathToFileURL} from "node:url";
import type {DeviceEvent} from "../src/device.js";
import {configurePlatform} from "../hosts/node/platform.js";
import {resolveApp, type App} from "./app.js";
import {REPO_ROOT, buildFirmware, runFirmware, simulatorAvailable} from "./sim-runner.js";

const program = new Command()
	.name("start")
	.description("Run the device against a local DPS + IoT Hub emulator and show the whole flow")
	.option("--app <dir>", "the application to run (default: the reference firmware; e.g. examples/thermostat)")
	.option("--node", "run the application on the Node host even where the simulator is available")
	.option("--duration <seconds>", "stop after this many seconds (default: run until Ctrl-C)", Number)
	.option("--registration-id <id>", "the demo device's registration id", "moddable-demo-001")
	.option("--port <port>", "the emulator's MQTT/TLS port (0: any free port)", Number, 0)
	.option("--api-port <port>", "the emulator's service API and page port on 127.0.0.1 (0: any free port)", Number, 0)
	.option("--models <dir>", "DTDL models the page reads Plug and Play commands from (default: the app's models/, else examples/models)")
	.parse();
const options = program.opts<{app?: string; node?: boolean; duration?: number; registrationId: string; port: number; apiPort: number; models?: string}>();
let app: App;
try {
	app = resolveApp(options.app);
}
catch (e) {
	console.error(`start: ${(e as Error).message}`);
	process.exit(2);
}
const intervalMs = app.demo?.intervalMs ?? 5000;

const say = (line: string) => console.log(`\x1b[1m==>\x1b[0m ${line}`);

interface RunningDevice {
	events: EventEmitter;
	seen: DeviceEvent[];
	stop(): Promise<void>;
}

function waitFor(device: RunningDevice, name: string, timeoutMs = 120_000, since = 0): Promise<DeviceEvent> {
	const seen = device.seen.slice(since).find(e => e.event === name);
	if (seen) return Promise.resolve(seen);
	return new Promise((resolve, reject) => {
		const timer = setTimeout(() => {
			device.events.off("event", on);
			reject(new Error(`the device sent no ${name} event within ${timeoutMs / 1000} s`));
		}, timeoutMs);
		const on = (e: DeviceEvent) => {
			if (e.event !== name) return;
			clearTimeout(timer);
			device.events.off("event", on);
			resolve(e);
		};
		device.events.on("event", on);
	});
}

async function startFirmware(emulator: Emulator, symmetricKey: string): Promise<RunningDevice> {
	say(`Building ${app.name} for the Moddable simulator (the first build takes a minute or two)…`);
	const build = await buildFirmware({
		settings: {
			dpsHost: emulator.host, dpsPort: emulator.port, idScope: emulator.idScope, registrationId: options.registrationId,
			symmetricKey, hubPort: emulator.port, intervalMs,
		},
		roots: [emulator.caDer],
		manifest: app.manifest,
		buildDir: path.join(REPO_ROOT, "build/sim", app.name),
	});
	say(`Built in ${build.seconds.toFixed(0)} s. Starting it on the simulator (mcsim under a virtual display):`);
	const events = new EventEmitter();
	const seen: DeviceEvent[] = [];
	const run = runFirmware({
		soPath: build.soPath,
		fresh: true,
		onLine: line => console.log(`\x1b[36m[firmware]\x1b[0m ${line}`),
	});
	run.emitter.on("event", (e: DeviceEvent) => { seen.push(e); events.emit("event", e); });
	run.emitter.on("abort", (line: string) => console.error(`the firmware aborted: ${line}`));
	return {events, seen, stop: () => run.stop()};
}

async function startOnNode(emulator: Emulator, symmetricKey: string): Promise<RunningDevice> {
	say(`Running ${app.name} on the Node host. This is NOT the firmware: it is the same TypeScript with Node's TLS and timers in place of the SDK's.`);
	const events = new EventEmitter();
	const seen: DeviceEvent[] = [];
	const state = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "azure-demo-")), "prefs.json");
	(globalThis as {trace?: (...v: unknown[]) => void}).trace = (...values: unknown[]) => process.stdout.write(`\x1b[35m[node host]\x1b[0m ${values.map(String).join("")}`);
	configurePlatform({
		roots: [emulator.caDer],
		storageFile: state,
		emit: e => {
			console.log(`\x1b[35m[node host]\x1b[0m ${JSON.stringify(e)}`);
			seen.push(e);
			events.emit("event", e);
		},
		print: line => console.log(`\x1b[35m[node host]\x1b[0m ${line}`),
		settings: {dpsHost: emulator.host, dpsPort: emulator.port, idScope: emulator.idScope, registrationId: options.registrationId, symmetricKey, hubPort: emulator.port, intervalMs},
	});
	const module = await import(pathToFileURL(app.main).href) as {default?: unknown};
	if (typeof module.default === "function") (module.default as () => void)();
	return {events, seen, stop: async () => {}};
}

/** What a service-side operator would do (the application's demo.json), so the device's side of each feature shows. */
async function drive(emulator: Emulator, device: RunningDevice, deviceId: () => string): Promise<void> {
	await waitFor(device, "hub.connected");
	await eventually(() => emulator.telemetry(deviceId()).length > 0, 60_000, "telemetry");
	const id = deviceId();
	say(`The emulator has received ${emulator.telemetry(id).length} telemetry message(s) from ${id}: ${emulator.telemetry(id).at(-1)!.body}`);
	for (const step of app.demo?.steps ?? []) {
		say(`${step.say}…`);
		const since = device.seen.length;
		if (step.method) {
			const answer = await emulator.invokeMethod(id, step.method, step.payload ?? null, 30);
			say(`The device answered ${answer.status} ${JSON.stringify(answer.payload)}.`);
		}
		if (step.desired) emulator.patchDesired(id, step.desired);
		if (step.c2d) emulator.sendC2d(id, step.c2d);
		if (step.wait) await waitFor(device, step.wait, 120_000, since);
	}
	await new Promise(r => setTimeout(r, 1500));
	say(`Reported properties now: ${JSON.stringify(emulator.twin(id).reported)}`);
	say("The whole flow ran. Telemetry keeps flowing; press Ctrl-C to stop.");
}

async function eventually(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
	const end = Date.now() + timeoutMs;
	while (!check()) {
		if (Date.now() > end) throw new Error(`no ${what} within ${timeoutMs / 1000} s`);
		await new Promise(r => setTimeout(r, 200));
	}
}

async function main(): Promise<number> {
	say("Starting the local DPS + IoT Hub emulator…");
	const modelsDir = options.models ?? [path.join(app.dir, "models"), path.join(REPO_ROOT, "examples/models")].find(d => fs.existsSync(d));
	const emulator = await startEmulator({port: options.port, apiPort: options.apiPort, retryAfterSeconds: 1, modelsDir});
	say(`Emulator ready: MQTT/TLS on ${emulator.host}:${emulator.port}, id scope ${emulator.idScope}, service API ${emulator.apiUrl}, root CA ${emulator.caPemPath}`);
	say(`The emulator's page: \x1b[4m${emulator.pageUrl}\x1b[0m (open it to watch and drive the device; loopback only)`);
	const {symmetricKey} = emulator.addEnrollment({registrationId: options.registrationId});
	say(`Enrolled the demo device ${options.registrationId} (individual enrollment, symmetric key).`);

	let device: RunningDevice | undefined;
	let stopping = false;
	const stop = async (code: number) => {
		if (stopping) return;
		stopping = true;
		await device?.stop().catch(() => {});
		await emulator.close();
		process.exit(code);
	};
	process.on("SIGINT", () => void stop(0));
	process.on("SIGTERM", () => void stop(0));

	const sim = simulatorAvailable();
	if (options.node) device = await startOnNode(emulator, symmetricKey);
	else if (!sim.ok) {
		console.log(`\n${sim.reason}\n`);
		device = await startOnNode(emulator, symmetricKey);
	}
	else {
		try {
			device = await startFirmware(emulator, symmetricKey);
		}
		catch (e) {
			console.error(`\n${(e as Error).message}\n`);
			say("The firmware could not be built or started; showing the flow on the Node host instead.");
			device = await startOnNode(emulator, symmetricKey);
		}
	}

	let assignedId = options.registrationId;
	device.events.on("event", (e: DeviceEvent) => { if (e.event === "dps.assigned" && typeof e.deviceId === "string") assignedId = e.deviceId; });
	if (options.duration) setTimeout(() => void stop(0), options.duration * 1000).unref();
	try {
		await drive(emulator, device, () => assignedId);
	}
	catch (e) {
		console.error(`start: ${(e as Error).message}`);
		await stop(1);
	}
	return 0;
}

void main().catch(e => {
	console.error(`start: ${(e as Error).message}`);
	process.exit(1);
});
