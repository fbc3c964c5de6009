/*
 * npm run sim -- [--app DIR] --config device.json [--until EVENT] [--timeout S] [--build-dir D] [--fresh] [--instrument]
 *
 * Builds an application (default: the reference firmware) for the Moddable Linux simulator with the settings and roots of device.json,
 * runs it headless and streams what the device prints (one JSON event per line) to stdout; this
 * tool's own messages go to stderr. With --until it exits 0 once that event appears and 1 on
 * timeout, an "XS abort" or an early exit; without it, it runs until Ctrl-C. Exit 2: the SDK or a
 * tool is missing, or device.json is invalid (the message names the field).
 *
 * The device's storage (cached DPS assignment, boot count) is kept in <build dir>/device, so a
 * second run starts from the cached hub as a rebooted device would; --fresh forgets it. A restart
 * the firmware asks for after a Device Update starts the simulator again with the image it installed
 * (tools/sim-runner.ts runUpdatableFirmware).
 */
import {Command, InvalidArgumentError} from "commander";
import * as path from "node:path";
import {resolveApp} from "./app.js";
import {firmwareSettings, loadDeviceFile} from "./device-config.js";
import {REPO_ROOT, BuildError, SdkMissingError, buildFirmware, findSdk, runUpdatableFirmware, type FirmwareRun} from "./sim-runner.js";

function seconds(value: string): number {
	const n = Number(value);
	if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("give a number of seconds above 0");
	return n;
}

const program = new Command()
	.name("npm run sim --")
	.description("Build the firmware for the Moddable simulator and run it headless against the DPS and hub of device.json")
	.requiredOption("--config <file>", "device settings (see device.example.json)")
	.option("--app <dir>", "the application to build and run (default: the reference firmware; e.g. examples/thermostat)")
	.option("--until <event>", "exit 0 as soon as the device emits this event (e.g. hub.connected)")
	.option("--timeout <seconds>", "give up after this long (default 120 with --until, none without)", seconds)
	.option("--build-dir <dir>", "where to build (kept between runs: later builds are incremental; default build/sim/<app>)")
	.option("--fresh", "forget the device's storage first (cached hub assignment): provision again", false)
	.option("--instrument", "instrumented build: the simulator prints XS heap, chunk and stack use once a second (sizing the ESP32)", false)
	.showHelpAfterError();

async function main(): Promise<number> {
	program.parse();
	const o = program.opts<{config: string; app?: string; until?: string; timeout?: number; buildDir?: string; fresh: boolean; instrument: boolean}>();
	let app;
	try {
		app = resolveApp(o.app);
	}
	catch (e) {
		console.error(`sim: ${(e as Error).message}`);
		return 2;
	}

	let sdk;
	try {
		sdk = findSdk();
	}
	catch (e) {
		if (e instanceof SdkMissingError) {
			console.error(`sim: ${e.message}`);
			return 2;
		}
		throw e;
	}

	let device;
	try {
		device = loadDeviceFile(o.config);
	}
	catch (e) {
		console.error(`sim: ${o.config}: ${(e as Error).message}`);
		return 2;
	}

	const buildDir = path.resolve(o.buildDir ?? path.join(REPO_ROOT, "build/sim", app.name));
	// The settings go into a manifest in the build directory, never onto a command line.
	console.error(`sim: building in ${buildDir} (mcconfig -m -p lin -t build -o ${buildDir} ${path.join(buildDir, "app/manifest.json")})`);
	let build;
	try {
		build = await buildFirmware({
			sdk,
			buildDir,
			variant: o.instrument ? "instrument" : "release",
			roots: device.roots,
			settings: firmwareSettings(device),
			manifest: app.manifest,
		});
	}
	catch (e) {
		console.error(`sim: ${e instanceof BuildError ? e.message : (e as Error).stack}`);
		return 1;
	}
	console.error(`sim: built in ${build.seconds.toFixed(1)} s; starting the simulator`);

	// Kept running across a restart the firmware asks for, into the image a Device Update installed (and back, if it does not reach the hub).
	const run: FirmwareRun = runUpdatableFirmware({
		sdk,
		soPath: build.soPath,
		runDir: path.join(buildDir, "device"),
		fresh: o.fresh,
		onLine: line => {
			if (!line.startsWith("dbus-daemon[")) process.stdout.write(line + "\n");
		},
	});
	const stop = async (code: number) => {
		await run.stop();
		return code;
	};
	process.once("SIGINT", () => void stop(0).then(code => process.exit(code)));
	process.once("SIGTERM", () => void stop(0).then(code => process.exit(code)));

	const timeoutMs = (o.timeout ?? (o.until ? 120 : 0)) * 1000;
	if (o.until) {
		try {
			await run.waitFor(o.until, {timeoutMs});
			console.error(`sim: got "${o.until}"`);
			return stop(0);
		}
		catch (e) {
			console.error(`sim: ${(e as Error).message.split("\n")[0]}`);
			return stop(1);
		}
	}
	// No --until: run until Ctrl-C, the timeout, or the simulator's end.
	return new Promise<number>(resolve => {
		const timer = timeoutMs ? setTimeout(() => {
			console.error(`sim: stopping after ${timeoutMs / 1000} s`);
			void stop(0).then(resolve);
		}, timeoutMs) : undefined;
		run.emitter.once("abort", (line: string) => {
			clearTimeout(timer);
			console.error(`sim: ${line.trim()}`);
			void stop(1).then(resolve);
		});
		run.emitter.once("exit", () => {
			clearTimeout(timer);
			if (run.failure) console.error(`sim: ${run.failure}`);
			resolve(1);
		});
	});
}

main().then(code => process.exit(code), e => {
	console.error(`sim: ${(e as Error).stack ?? e}`);
	process.exit(1);
});
