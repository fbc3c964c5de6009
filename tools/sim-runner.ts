/*
 * Builds the firmware for the Moddable Linux simulator and runs it headless, as a library for the
 * `npm run sim` command, the tests, `npm start` and the benchmarks.
 *
 * - findSdk(): where the SDK and the headless-display tools are, or exactly what is missing.
 * - buildFirmware(): writes a per-build manifest into the build directory (it includes the
 *   repository's manifest.json, adds the roots to trust as data resources and the device settings
 *   as config) and runs `mcconfig -m -p lin -t build -o <build dir>`. Never `-d`: that kills every
 *   mcsim on the machine. The settings live in that file, not on the command line, so the key
 *   never appears in a process list or a log.
 * - runFirmware(): starts mcsim under xvfb-run + its own dbus-run-session (two mcsim on one session
 *   bus collapse into one) in its own process group, in a run directory that holds the device's
 *   storage (the sim manifest points Preference at the working directory), streams its stdout as
 *   lines and JSON events, and stops the whole group.
 */
import {spawn, type ChildProcess} from "node:child_process";
import {EventEmitter} from "node:events";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {fileURLToPath} from "node:url";
import type {SettingName} from "../src/settings.js";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface Sdk {
	moddable: string;
	mcconfig: string;
	mcsim: string;
	/** Directory holding tsc, put on PATH for mcconfig's TypeScript steps. */
	tscDir: string;
	xvfbRun: string;
	dbusRunSession: string;
	stdbuf: string;
}

export class SdkMissingError extends Error {
	readonly missing: string[];
	constructor(missing: string[], help: string[]) {
		super(`missing ${missing.join(", ")}.\n${help.join("\n")}`);
		this.name = "SdkMissingError";
		this.missing = missing;
	}
}

function which(command: string): string | undefined {
	for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
		if (!dir) continue;
		const file = path.join(dir, command);
		try {
			fs.accessSync(file, fs.constants.X_OK);
			return file;
		}
		catch {
			// not here
		}
	}
	for (const dir of ["/usr/bin", "/usr/sbin", "/bin"]) {
		const file = path.join(dir, command);
		if (fs.existsSync(file)) return file;
	}
	return undefined;
}

/**
 * Finds the SDK ($MODDABLE, else ~/.local/share/moddable) and the tools; throws SdkMissingError
 * naming what is missing and how to install it. `{simulator: false}`: only what building needs.
 */
export function findSdk(options: {simulator?: boolean} = {}): Sdk {
	const simulator = options.simulator ?? true;
	const missing: string[] = [];
	const help: string[] = [];
	const candidates = [process.env.MODDABLE, path.join(os.homedir(), ".local/share/moddable")].filter((d): d is string => !!d);
	const moddable = candidates.find(d => fs.existsSync(path.join(d, "tools/mcconfig")));
	const bin = moddable ? path.join(moddable, "build/bin/lin/release") : "";
	if (!moddable) {
		missing.push(`the Moddable SDK (looked in ${candidates.join(" and ")})`);
		help.push("Install the Moddable SDK 8.2 and its Linux tools: `npx xs-dev setup` (https://github.com/HipsterBrown/xs-dev), or follow https://github.com/Moddable-OpenSource/moddable/blob/public/documentation/Moddable%20SDK%20-%20Getting%20Started.md (Linux), then set MODDABLE to the SDK directory.");
	}
	else if (!fs.existsSync(path.join(bin, "mcconfig")) || (simulator && !fs.existsSync(path.join(bin, "mcsim")))) {
		missing.push(`the SDK's built Linux tools (${path.join(bin, "mcconfig")}, mcsim)`);
		help.push(`Build them: cd ${path.join(moddable, "build/makefiles/lin")} && make (see the SDK's Getting Started guide, Linux section).`);
	}
	const localTsc = path.join(REPO_ROOT, "node_modules/.bin/tsc");
	const tsc = fs.existsSync(localTsc) ? localTsc : which("tsc");
	if (!tsc) {
		missing.push("tsc (TypeScript 6 or later)");
		help.push("Run `npm install` in the repository (TypeScript is a dev dependency).");
	}
	const xvfbRun = which("xvfb-run");
	if (simulator && !xvfbRun) {
		missing.push("xvfb-run");
		help.push("Install a virtual display for the headless simulator: apt-get install xvfb xauth");
	}
	const dbusRunSession = which("dbus-run-session");
	if (simulator && !dbusRunSession) {
		missing.push("dbus-run-session");
		help.push("Install D-Bus (each simulator needs its own session bus): apt-get install dbus");
	}
	const stdbuf = which("stdbuf");
	if (simulator && !stdbuf) {
		missing.push("stdbuf");
		help.push("Install coreutils (stdbuf keeps the simulator's output line-buffered): apt-get install coreutils");
	}
	if (missing.length) throw new SdkMissingError(missing, help);
	return {
		moddable: moddable!,
		mcconfig: path.join(bin, "mcconfig"),
		mcsim: path.join(bin, "mcsim"),
		tscDir: path.dirname(tsc!),
		xvfbRun: xvfbRun ?? "xvfb-run",
		dbusRunSession: dbusRunSession ?? "dbus-run-session",
		stdbuf: stdbuf ?? "stdbuf",
	};
}

/** Build values by setting name (src/settings.ts); bytes (X.509) become data resources of the build. */
export type FirmwareSettings = Partial<Record<SettingName, string | number | Uint8Array>>;

export interface BuildOptions {
	/** Settings for mc/config. */
	settings?: FirmwareSettings;
	/** Roots to trust, DER. Omitted: the production roots of manifest.json. */
	roots?: readonly Uint8Array[];
	/** Default build/sim/ in the repository. */
	buildDir?: string;
	/** The app manifest to build; default the repository's manifest.json (the firmware). */
	manifest?: string;
	/** "instrument" (mcconfig -i) prints the XS heap, chunk and stack figures once a second: for sizing the ESP32's creation. */
	variant?: "release" | "instrument";
	/** Build output lines (mcconfig, make, tsc, xsc, cc); default: kept and shown only if the build fails. */
	onOutput?: (line: string) => void;
	/** More environment for mcconfig: build variables a manifest takes from the shell (`"AZURE_IOT ?="`). */
	env?: Record<string, string>;
	sdk?: Sdk;
}

export interface Build {
	buildDir: string;
	/** The mc.so to give mcsim. */
	soPath: string;
	seconds: number;
}

export class BuildError extends Error {
	readonly output: string;
	constructor(message: string, output: string) {
		super(message);
		this.name = "BuildError";
		this.output = output;
	}
}

/** Builds (incrementally) the firmware for the simulator. Runs one build at a time per build directory. */
export async function buildFirmware(options: BuildOptions = {}): Promise<Build> {
	const sdk = options.sdk ?? findSdk();
	const buildDir = path.resolve(options.buildDir ?? path.join(REPO_ROOT, "build/sim"));
	const manifestPath = writeBuildManifest(buildDir, options);
	const appDir = path.dirname(manifestPath);

	const started = Date.now();
	const variant = options.variant ?? "release";
	const args = ["-m", ...(variant === "instrument" ? ["-i"] : []), "-p", "lin", "-t", "build", "-o", buildDir, manifestPath];
	const {code, output} = await runTool(sdk.mcconfig, args, {cwd: appDir, env: sdkEnv(sdk, options.env), onOutput: options.onOutput});
	if (code !== 0)
		throw new BuildError(`mcconfig failed (exit ${code}) building ${buildDir}:\n${output.slice(-40).join("\n")}`, output.join("\n"));
	const soPath = path.join(buildDir, `bin/lin/mc/${variant}/app/mc.so`);
	if (!fs.existsSync(soPath)) throw new BuildError(`mcconfig succeeded but ${soPath} is missing`, output.join("\n"));
	return {buildDir, soPath, seconds: (Date.now() - started) / 1000};
}

/** The environment mcconfig needs: MODDABLE, and its tools and tsc on PATH. */
export function sdkEnv(sdk: Sdk, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
	return {...process.env, MODDABLE: sdk.moddable, PATH: [path.dirname(sdk.mcconfig), sdk.tscDir, process.env.PATH].join(path.delimiter), ...extra};
}

/** Runs a build tool, keeping the last 400 lines of its output (and passing each line on). */
export function runTool(command: string, args: readonly string[], o: {cwd: string; env: NodeJS.ProcessEnv; onOutput?: (line: string) => void}): Promise<{code: number; output: string[]}> {
	const output: string[] = [];
	return new Promise((resolve, reject) => {
		const child = spawn(command, args, {cwd: o.cwd, env: o.env, stdio: ["ignore", "pipe", "pipe"]});
		const take = (chunk: Buffer) => {
			for (const line of chunk.toString().split("\n")) {
				if (!line) continue;
				output.push(line);
				if (output.length > 400) output.shift();
				o.onOutput?.(line);
			}
		};
		child.stdout!.on("data", take);
		child.stderr!.on("data", take);
		child.on("error", reject);
		child.on("close", c => resolve({code: c ?? 1, output}));
	});
}

/**
 * Writes <build dir>/app/manifest.json: it includes the app manifest (default the firmware's) and
 * adds the settings as config and the roots as data resources (config `roots` then names only
 * these). It holds the key, so it is written for the owner only. Returns its path.
 */
export function writeBuildManifest(buildDir: string, options: {settings?: FirmwareSettings; roots?: readonly Uint8Array[]; manifest?: string}): string {
	const appDir = path.join(buildDir, "app");
	fs.mkdirSync(appDir, {recursive: true});
	const manifest: Record<string, unknown> = {
		"//": "Generated by tools/sim-runner.ts for one build: holds the device settings (including the key), so it stays in the build directory.",
		include: [path.resolve(options.manifest ?? path.join(REPO_ROOT, "manifest.json"))],
	};
	const config: Record<string, string> = {};
	const data: string[] = [];
	for (const [key, value] of Object.entries(options.settings ?? {})) {
		if (value === undefined) continue;
		if (value instanceof Uint8Array) {
			// Bytes go in as a data resource; the setting names it (hosts/moddable/platform.ts reads it).
			const dataDir = path.join(buildDir, "data");
			fs.mkdirSync(dataDir, {recursive: true});
			writeIfChanged(path.join(dataDir, `${key}.der`), value, 0o600);
			data.push(path.join(dataDir, key));
			config[key] = `${key}.der`;
		}
		else config[key] = String(value);
	}
	if (options.roots) {
		if (!options.roots.length) throw new Error("roots: an empty list would trust nothing; give at least one root certificate");
		const rootsDir = path.join(buildDir, "roots");
		fs.mkdirSync(rootsDir, {recursive: true});
		const names = options.roots.map((der, i) => {
			const name = `root-${i}`;
			writeIfChanged(path.join(rootsDir, name + ".der"), der);
			return name;
		});
		for (const file of fs.readdirSync(rootsDir))
			if (!names.includes(path.basename(file, ".der"))) fs.rmSync(path.join(rootsDir, file), {force: true});
		data.push(...names.map(n => path.join(rootsDir, n)));
		config.roots = names.map(n => n + ".der").join(",");
	}
	if (data.length) manifest.data = {"*": data};
	manifest.config = config;
	const file = path.join(appDir, "manifest.json");
	writeIfChanged(file, JSON.stringify(manifest, null, "\t") + "\n", 0o600);
	return file;
}

function writeIfChanged(file: string, data: string | Uint8Array, mode?: number): void {
	const bytes = typeof data === "string" ? Buffer.from(data) : Buffer.from(data);
	try {
		if (fs.readFileSync(file).equals(bytes)) return; // keep the mtime: make then skips the step
	}
	catch {
		// absent
	}
	fs.writeFileSync(file, bytes, {mode});
}

export interface RunOptions {
	/** The mc.so of a build. */
	soPath: string;
	/** Working directory of the simulator, holding the device's storage (modpreferences.json). Default: a new temp directory, removed by stop(). */
	runDir?: string;
	/** Forget the device's storage first (cached DPS assignment, boot count): a factory-fresh device. */
	fresh?: boolean;
	/**
	 * Preference values (domain "azure") written before the start. src/main.ts lets them win over
	 * the build settings, so one build can be pointed at another port or id scope without rebuilding.
	 * Bytes (X.509 certificates and keys) are stored as blobs, as NVS holds them on the ESP32.
	 */
	preferences?: Record<string, string | number | Uint8Array>;
	/** Every stdout/stderr line of the simulator as it comes. */
	onLine?: (line: string) => void;
	sdk?: Sdk;
}

export interface DeviceEvent {
	event: string;
	[key: string]: unknown;
}

export interface FirmwareRun {
	readonly pid: number;
	readonly runDir: string;
	/** Every line so far. */
	readonly lines: readonly string[];
	/** Every JSON line with an "event" key so far. */
	readonly events: readonly DeviceEvent[];
	/** "line" (string), "event" (DeviceEvent), "abort" (string) and "exit" (code) are emitted. */
	readonly emitter: EventEmitter;
	/**
	 * The first event named `event` (or matching the predicate) from index `since` of events (default
	 * 0: already-seen ones count). Rejects on timeout, on "XS abort" and when the simulator exits.
	 */
	waitFor(event: string | ((e: DeviceEvent) => boolean), options?: {timeoutMs?: number; since?: number}): Promise<DeviceEvent>;
	/** Stops the simulator and everything it started (its process group). */
	stop(): Promise<void>;
	readonly exited: boolean;
	/** Why the run failed, if it did: an "XS abort" line or an early exit. */
	readonly failure: string | undefined;
}

/** Starts the firmware in mcsim under a virtual display. */
/** Simulators started by this process, killed if it exits without stopping them. */
const live = new Set<FirmwareRun>();
process.once("exit", () => {
	for (const run of live) {
		try {
			process.kill(-run.pid, "SIGKILL");
		}
		catch {
			// gone
		}
	}
});

export function runFirmware(options: RunOptions): FirmwareRun {
	const sdk = options.sdk ?? findSdk();
	// A run directory made here is removed by stop(); one that was given is the caller's to keep.
	const ownRunDir = !options.runDir;
	const runDir = options.runDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "azure-sim-run-"));
	fs.mkdirSync(runDir, {recursive: true});
	const prefsFile = path.join(runDir, "modpreferences.json");
	if (options.fresh) fs.rmSync(prefsFile, {force: true});
	if (options.preferences) {
		let prefs: Record<string, Record<string, unknown>> = {};
		try {
			prefs = JSON.parse(fs.readFileSync(prefsFile, "utf8"));
		}
		catch {
			// none yet
		}
		prefs.azure = {...prefs.azure};
		for (const [key, value] of Object.entries(options.preferences)) {
			if (key.length > 15) throw new Error(`preference ${key}: at most 15 characters (ESP32 NVS)`);
			// The simulator's Preference keeps a buffer as {"buffer": "b0,b1,..."} (modules/files/preference/lin/preference.js).
			prefs.azure[key] = value instanceof Uint8Array ? {buffer: Array.from(value).join(",")} : String(value);
		}
		fs.writeFileSync(prefsFile, JSON.stringify(prefs), {mode: 0o600});
	}
	const xdg = path.join(runDir, "xdg");
	fs.mkdirSync(xdg, {recursive: true});

	const child: ChildProcess = spawn(sdk.xvfbRun, ["-a", sdk.dbusRunSession, "--", sdk.stdbuf, "-oL", "-eL", sdk.mcsim, options.soPath], {
		cwd: runDir,
		detached: true,
		env: {...process.env, XDG_CONFIG_HOME: xdg, NO_AT_BRIDGE: "1"},
		stdio: ["ignore", "pipe", "pipe"],
	});
	const emitter = new EventEmitter();
	emitter.setMaxListeners(100);
	const lines: string[] = [];
	const events: DeviceEvent[] = [];
	let exited = false;
	let failure: string | undefined;

	const onLine = (line: string) => {
		lines.push(line);
		options.onLine?.(line);
		emitter.emit("line", line);
		// XS's own line, not an event that quotes one (device.reset carries the last abort's reason).
		if (line.includes("XS abort") && !line.trimStart().startsWith("{")) {
			failure ??= `the firmware aborted: ${line.trim()}`;
			emitter.emit("abort", line);
		}
		const start = line.indexOf("{\"event\"");
		if (start >= 0) {
			try {
				const e = JSON.parse(line.slice(start));
				if (e && typeof e.event === "string") {
					events.push(e);
					emitter.emit("event", e);
				}
			}
			catch {
				// not JSON after all
			}
		}
	};
	const splitter = () => {
		let rest = "";
		return (chunk: Buffer) => {
			rest += chunk.toString();
			let nl;
			while ((nl = rest.indexOf("\n")) >= 0) {
				onLine(rest.slice(0, nl).replace(/\r$/, ""));
				rest = rest.slice(nl + 1);
			}
		};
	};
	child.stdout!.on("data", splitter());
	child.stderr!.on("data", splitter());
	const exitPromise = new Promise<void>(resolve => {
		child.on("exit", code => {
			exited = true;
			failure ??= `the simulator exited (code ${code})`;
			emitter.emit("exit", code);
			resolve();
		});
		child.on("error", e => {
			exited = true;
			failure ??= `cannot start the simulator: ${e.message}`;
			emitter.emit("exit", -1);
			resolve();
		});
	});
	let stopping: Promise<void> | undefined;

	const killGroup = (signal: NodeJS.Signals) => {
		if (child.pid === undefined) return;
		try {
			process.kill(-child.pid, signal);
		}
		catch {
			// already gone
		}
	};

	const run: FirmwareRun = {
		get pid() { return child.pid ?? -1; },
		runDir,
		lines,
		events,
		emitter,
		get exited() { return exited; },
		get failure() { return failure; },
		waitFor(event, o = {}) {
			return waitForEvent({events, lines, emitter, failure: () => failure}, event, o);
		},
		stop() {
			stopping ??= (async () => {
				if (exited) {
					if (ownRunDir) fs.rmSync(runDir, {recursive: true, force: true});
					return;
				}
				killGroup("SIGTERM");
				const killer = setTimeout(() => killGroup("SIGKILL"), 3000);
				await exitPromise;
				clearTimeout(killer);
				// xvfb-run may exit before its children: make sure the group is gone.
				killGroup("SIGKILL");
				if (ownRunDir) fs.rmSync(runDir, {recursive: true, force: true});
			})();
			return stopping;
		},
	};
	live.add(run);
	emitter.once("exit", () => live.delete(run));
	return run;
}

/** FirmwareRun.waitFor over any run's events: resolves with the first match, rejects on timeout, abort or exit. */
function waitForEvent(source: {events: readonly DeviceEvent[]; lines: readonly string[]; emitter: EventEmitter; failure(): string | undefined}, event: string | ((e: DeviceEvent) => boolean), o: {timeoutMs?: number; since?: number}): Promise<DeviceEvent> {
	const {events, lines, emitter} = source;
	const match = typeof event === "string" ? (e: DeviceEvent) => e.event === event : event;
	const name = typeof event === "string" ? `event "${event}"` : "the expected event";
	const found = events.slice(o.since ?? 0).find(match);
	if (found) return Promise.resolve(found);
	if (source.failure()) return Promise.reject(new Error(`${source.failure()} before ${name}\n${tail(lines)}`));
	return new Promise<DeviceEvent>((resolve, reject) => {
		const cleanup = () => {
			clearTimeout(timer);
			emitter.off("event", onEvent);
			emitter.off("abort", onFail);
			emitter.off("exit", onFail);
		};
		const onEvent = (e: DeviceEvent) => {
			if (!match(e)) return;
			cleanup();
			resolve(e);
		};
		const onFail = () => {
			cleanup();
			reject(new Error(`${source.failure()} before ${name}\n${tail(lines)}`));
		};
		const timer = setTimeout(() => {
			cleanup();
			reject(new Error(`${name} did not come within ${(o.timeoutMs ?? 60000) / 1000} s\n${tail(lines)}`));
		}, o.timeoutMs ?? 60000);
		emitter.on("event", onEvent);
		emitter.on("abort", onFail);
		emitter.on("exit", onFail);
	});
}

export interface UpdatableRunOptions extends RunOptions {
	/**
	 * A new image that has not printed hub.connected this long after it started is stopped and the
	 * previous image started instead, as ESP-IDF's bootloader goes back to the previous app when a
	 * new one restarts unconfirmed. Default 120 s.
	 */
	rollbackMs?: number;
}

export interface Boot {
	/** The mc.so started. */
	image: string;
	/** "start" (the first), "restart" (asked for, nothing new installed), "update" (the installed image), "rollback" (back to the previous one). */
	reason: "start" | "restart" | "update" | "rollback";
	/** Index of the first event of this boot in FirmwareRun.events. */
	since: number;
}

export interface UpdatableRun extends FirmwareRun {
	/** Every start of the simulator so far. */
	readonly boots: readonly Boot[];
}

/**
 * Runs the firmware as a device with two OTA slots would run: when it prints sim.restart (its
 * Device Update image store, hosts/sim/images.ts, after making an image bootable), the simulator is
 * stopped and started again, with the image it wrote (update.img in the run directory, copied to
 * images/) if it wrote one; that image is on probation until it prints hub.connected, and is
 * replaced by the previous one when it does not within rollbackMs. Events and lines of every boot
 * are in one run, in order; "boot" is emitted with each Boot.
 */
export function runUpdatableFirmware(options: UpdatableRunOptions): UpdatableRun {
	const sdk = options.sdk ?? findSdk();
	const ownRunDir = !options.runDir;
	const runDir = options.runDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "azure-sim-run-"));
	const imagesDir = path.join(runDir, "images");
	fs.mkdirSync(imagesDir, {recursive: true});
	const rollbackMs = options.rollbackMs ?? 120_000;
	const emitter = new EventEmitter();
	emitter.setMaxListeners(100);
	const lines: string[] = [];
	const events: DeviceEvent[] = [];
	const boots: Boot[] = [];
	let current: FirmwareRun | undefined;
	let image = options.soPath;
	let previous: string | undefined;
	let probation: NodeJS.Timeout | undefined;
	let failure: string | undefined;
	let exited = false;
	let stopping = false;
	let switching: Promise<void> | undefined;
	let installed = 0;

	const boot = (reason: Boot["reason"]) => {
		boots.push({image, reason, since: events.length});
		const run = current = runFirmware({
			soPath: image, runDir, sdk,
			...(reason === "start" ? {fresh: options.fresh, preferences: options.preferences} : {}),
			onLine: line => {
				lines.push(line);
				options.onLine?.(line);
				emitter.emit("line", line);
			},
		});
		emitter.emit("boot", boots[boots.length - 1]);
		run.emitter.on("event", (e: DeviceEvent) => {
			events.push(e);
			emitter.emit("event", e);
			if (e.event === "hub.connected" && probation) {
				clearTimeout(probation);
				probation = undefined;
				previous = undefined; // confirmed: the old image is not gone back to any more
			}
			if (e.event === "sim.restart") switchTo(() => restart());
		});
		run.emitter.on("abort", (line: string) => {
			failure ??= run.failure;
			emitter.emit("abort", line);
		});
		run.emitter.on("exit", (code: number) => {
			if (run !== current || stopping || switching) return;
			exited = true;
			failure ??= run.failure;
			emitter.emit("exit", code);
		});
	};

	/** One switch of image at a time: the old simulator is stopped before the next starts. */
	const switchTo = (next: () => void) => {
		const old = current;
		switching = (async () => {
			await old?.stop();
			if (!stopping) next();
			switching = undefined;
		})();
	};

	const restart = () => {
		const ready = path.join(runDir, "update.ready");
		const written = path.join(runDir, "update.img");
		if (!fs.existsSync(ready) || !fs.existsSync(written)) {
			boot("restart");
			return;
		}
		const slot = path.join(imagesDir, `image-${++installed}.so`);
		fs.renameSync(written, slot);
		fs.rmSync(ready, {force: true});
		previous = image;
		image = slot;
		boot("update");
		probation = setTimeout(() => {
			probation = undefined;
			if (stopping || !previous) return;
			image = previous;
			previous = undefined;
			switchTo(() => boot("rollback"));
		}, rollbackMs);
	};

	boot("start");
	const run: UpdatableRun = {
		get pid() { return current?.pid ?? -1; },
		runDir,
		lines,
		events,
		emitter,
		boots,
		get exited() { return exited; },
		get failure() { return failure; },
		waitFor(event, o = {}) {
			return waitForEvent({events, lines, emitter, failure: () => failure}, event, o);
		},
		async stop() {
			stopping = true;
			clearTimeout(probation);
			await switching;
			await current?.stop();
			if (ownRunDir) fs.rmSync(runDir, {recursive: true, force: true});
		},
	};
	return run;
}

function tail(lines: readonly string[], n = 25): string {
	return lines.slice(-n).map(l => "  | " + l).join("\n");
}

/** True when the simulator can be built and run here; otherwise the reason. */
export function simulatorAvailable(): {ok: true; sdk: Sdk} | {ok: false; reason: string} {
	try {
		return {ok: true, sdk: findSdk()};
	}
	catch (e) {
		return {ok: false, reason: (e as Error).message};
	}
}
