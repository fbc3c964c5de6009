/*
 * The firmware rows: the benchmark firmware (bench/fixtures/) built for the Moddable Linux
 * simulator and run headless, one fresh mcsim per run (a device boot), against the emulator.
 * Building and running go through tools/sim-runner.ts; only the instrumented build (mcconfig -i,
 * for the memory figures) is made here, because the runner builds release images only.
 */
import {spawn} from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import {buildFirmware, runFirmware, type FirmwareRun, type Sdk} from "../tools/sim-runner.js";
import {Driver, type RunResult} from "./driver.js";
import {REPO_ROOT, bounded, newRegistrationId, type EmulatorProcess} from "./lib.js";
import type {X509Fleet} from "./x509.js";

/**
 * A fresh device's identity as Preference values: a new SAS enrollment, or with `x509` a new
 * certificate from the benchmark's fleet CA, stored as the blobs a commissioned device holds in NVS.
 */
async function identity(emu: EmulatorProcess, prefix: string, x509: X509Fleet | undefined): Promise<Record<string, string | Uint8Array>> {
	if (!x509) {
		const registrationId = newRegistrationId(prefix);
		return {registrationId, symmetricKey: await emu.addEnrollment(registrationId)};
	}
	const {registrationId, identity: id} = x509.issue(`${prefix}-x509`);
	return {registrationId, x509Cert: new Uint8Array(id.certDer), x509Chain: new Uint8Array(id.chainDer), x509Key: new Uint8Array(id.keyDer)};
}

export const BENCH_MANIFEST = path.join(REPO_ROOT, "bench/fixtures/manifest.json");
export const MEMORY_MANIFEST = path.join(REPO_ROOT, "bench/fixtures/manifest-memory.json");
export const PRODUCT_MEMORY_MANIFEST = path.join(REPO_ROOT, "bench/fixtures/manifest-product-memory.json");
export const BUILD_ROOT = path.join(REPO_ROOT, "build/bench");

export interface XsBuild {
	soPath: string;
	buildDir: string;
	seconds: number;
}

function settings(emu: EmulatorProcess) {
	return {dpsHost: emu.host, dpsPort: emu.port, idScope: emu.idScope, hubPort: emu.port};
}

/** The release benchmark firmware (timings). */
export async function buildBenchFirmware(sdk: Sdk, emu: EmulatorProcess, log: (line: string) => void): Promise<XsBuild> {
	const build = await buildFirmware({sdk, manifest: BENCH_MANIFEST, buildDir: path.join(BUILD_ROOT, "xs"), roots: [emu.caDer], settings: settings(emu)});
	log(`xs: benchmark firmware built in ${build.seconds.toFixed(1)} s`);
	return build;
}

/** The production firmware (manifest.json) as the simulator build of it: for the size figures. */
export async function buildProductFirmware(sdk: Sdk, emu: EmulatorProcess, log: (line: string) => void): Promise<XsBuild> {
	const build = await buildFirmware({sdk, buildDir: path.join(BUILD_ROOT, "firmware"), roots: [emu.caDer], settings: settings(emu)});
	log(`xs: firmware built in ${build.seconds.toFixed(1)} s`);
	return build;
}

/** The firmware as it ships (src/main, the Device), instrumented, with small growing heaps. */
export async function buildProductMemoryFirmware(sdk: Sdk, emu: EmulatorProcess, log: (line: string) => void): Promise<XsBuild> {
	const build = await buildFirmware({
		sdk, manifest: PRODUCT_MEMORY_MANIFEST, variant: "instrument", buildDir: path.join(BUILD_ROOT, "firmware-memory"),
		roots: [emu.caDer], settings: settings(emu),
	});
	log(`xs: instrumented firmware (as shipped) built in ${build.seconds.toFixed(1)} s`);
	return build;
}

/**
 * One boot of the instrumented firmware as it ships, as a factory-fresh device: provisioning, the
 * hub, the twin, then `messages` telemetry messages one interval apart. Its own events mark the
 * phases for bench/memory.ts: boot ends when it starts to register, connect once the hub and the
 * twin are done (its reported properties acknowledged), steady after the messages.
 */
export async function runProductMemoryOnce(o: {sdk: Sdk; soPath: string; emu: EmulatorProcess; messages: number; timeoutMs: number; x509?: X509Fleet}): Promise<readonly string[]> {
	const device = await identity(o.emu, "bench-fw", o.x509);
	const lines: string[] = [];
	let acked = 0;
	const run: FirmwareRun = runFirmware({
		sdk: o.sdk, soPath: o.soPath, fresh: true,
		preferences: {...device, intervalMs: 1000},
		onLine: line => {
			lines.push(line);
			const marker = (phase: string) => lines.push(JSON.stringify({event: "bench.phaseEnd", phase}));
			if (line.includes('"event":"dps.registering"') && !lines.some(l => l.includes('"phase":"boot"'))) marker("boot");
			else if (line.includes('"event":"twin.reported"') && !lines.some(l => l.includes('"phase":"connect"'))) marker("connect");
			else if (line.includes('"event":"telemetry.acked"') && ++acked === o.messages) marker("steady");
		},
	});
	try {
		await run.waitFor(e => e.event === "telemetry.acked" && acked >= o.messages, {timeoutMs: o.timeoutMs});
		return lines;
	}
	catch (e) {
		throw new Error(`the firmware did not send ${o.messages} messages: ${(e as Error).message}\n${lines.slice(-15).map(l => "  | " + l).join("\n")}`);
	}
	finally {
		await run.stop();
		fs.rmSync(run.runDir, {recursive: true, force: true});
	}
}

/**
 * The instrumented benchmark firmware with small, growing heaps (bench/fixtures/manifest-memory.json).
 * Same wrapper manifest as the runner's (roots as data, settings as config), built with -i.
 */
export async function buildMemoryFirmware(sdk: Sdk, emu: EmulatorProcess, log: (line: string) => void): Promise<XsBuild> {
	const buildDir = path.join(BUILD_ROOT, "xs-memory");
	const appDir = path.join(buildDir, "app");
	const rootsDir = path.join(buildDir, "roots");
	fs.mkdirSync(appDir, {recursive: true});
	fs.mkdirSync(rootsDir, {recursive: true});
	writeIfChanged(path.join(rootsDir, "bench-root.der"), emu.caDer);
	const config: Record<string, string> = {roots: "bench-root.der"};
	for (const [k, v] of Object.entries(settings(emu))) config[k] = String(v);
	const manifest: Record<string, unknown> = {
		"//": "Generated by bench/xs.ts: the instrumented memory build of the benchmark firmware.",
		include: [MEMORY_MANIFEST],
		config,
		data: {"*": [path.join(rootsDir, "bench-root")]},
	};
	writeIfChanged(path.join(appDir, "manifest.json"), JSON.stringify(manifest, null, "\t") + "\n");
	const started = Date.now();
	const output: string[] = [];
	const code = await new Promise<number>((resolve, reject) => {
		// -i: instrumented release. Never -d: its make recipe kills every mcsim on the machine.
		const child = spawn(sdk.mcconfig, ["-i", "-m", "-p", "lin", "-t", "build", "-o", buildDir, path.join(appDir, "manifest.json")], {
			cwd: appDir,
			env: {...process.env, MODDABLE: sdk.moddable, PATH: [path.dirname(sdk.mcconfig), sdk.tscDir, process.env.PATH].join(path.delimiter)},
			stdio: ["ignore", "pipe", "pipe"],
		});
		const take = (d: Buffer) => {
			output.push(...d.toString().split("\n").filter(Boolean));
			output.splice(0, Math.max(0, output.length - 200));
		};
		child.stdout!.on("data", take);
		child.stderr!.on("data", take);
		child.on("error", reject);
		child.on("close", c => resolve(c ?? 1));
	});
	if (code !== 0) throw new Error(`mcconfig -i failed (exit ${code}):\n${output.slice(-30).join("\n")}`);
	const soPath = path.join(buildDir, "bin/lin/mc/instrument/app/mc.so");
	if (!fs.existsSync(soPath)) throw new Error(`mcconfig -i succeeded but ${soPath} is missing`);
	const seconds = (Date.now() - started) / 1000;
	log(`xs: instrumented benchmark firmware built in ${seconds.toFixed(1)} s`);
	return {soPath, buildDir, seconds};
}

function writeIfChanged(file: string, data: string | Uint8Array): void {
	const bytes = Buffer.from(data);
	try {
		if (fs.readFileSync(file).equals(bytes)) return;
	}
	catch {
		// absent
	}
	fs.writeFileSync(file, bytes);
}

export interface XsRunOptions {
	sdk: Sdk;
	soPath: string;
	emu: EmulatorProcess;
	messages: number;
	window: number;
	reconnects: number;
	timeoutMs: number;
	onLine?: (line: string) => void;
	/** The core's own log lines too (slower). */
	log?: boolean;
	/** Connect with an X.509 identity from this fleet instead of a symmetric key. */
	x509?: X509Fleet;
}

/** The mcsim process of a run (a descendant in the run's process group). */
function mcsimPid(groupId: number): number | undefined {
	for (const entry of fs.readdirSync("/proc")) {
		if (!/^\d+$/.test(entry)) continue;
		try {
			const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
			const close = stat.lastIndexOf(")");
			const name = stat.slice(stat.indexOf("(") + 1, close);
			const fields = stat.slice(close + 2).split(" ");
			if (name === "mcsim" && Number(fields[2]) === groupId) return Number(entry);
		}
		catch {
			// gone
		}
	}
	return undefined;
}

/** CPU time (user + system) a process has used, in ms (10 ms resolution). */
function cpuMs(pid: number | undefined): number | undefined {
	if (pid === undefined) return undefined;
	try {
		const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
		const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
		return (Number(fields[11]) + Number(fields[12])) * 10;
	}
	catch {
		return undefined;
	}
}

/** One boot of the benchmark firmware: a fresh device (new enrollment, empty storage). */
export async function runXsOnce(o: XsRunOptions): Promise<RunResult & {lines: readonly string[]; connectCpuMs?: number}> {
	const device = await identity(o.emu, "bench-xs", o.x509);
	const driver = new Driver(o.emu);
	const run: FirmwareRun = runFirmware({
		sdk: o.sdk, soPath: o.soPath, fresh: true,
		preferences: {...device, benchMessages: o.messages, benchWindow: o.window, benchReconnects: o.reconnects, benchLog: o.log ? 1 : 0},
		onLine: o.onLine,
	});
	// The simulator's CPU time from the start of the scenario to connected: the part of the connect
	// time that is computation in XS (the rest is waiting for the network, the server and the socket poll).
	let cpuAtStart: number | undefined, connectCpuMs: number | undefined, pid: number | undefined;
	run.emitter.on("event", e => {
		if (e.event === "bench.start") {
			pid = mcsimPid(run.pid);
			cpuAtStart = cpuMs(pid);
		}
		else if (e.event === "bench.connected") {
			const now = cpuMs(pid);
			if (now !== undefined && cpuAtStart !== undefined) connectCpuMs = now - cpuAtStart;
		}
		driver.onEvent(e);
	});
	try {
		await bounded("the firmware run", o.timeoutMs, Promise.race([
			driver.done,
			run.waitFor("bench.error", {timeoutMs: o.timeoutMs + 1000}).then(e => { throw new Error(`the firmware failed: ${e.message}`); }),
		]));
		return {...driver.result, lines: run.lines, connectCpuMs};
	}
	catch (e) {
		throw new Error(`${(e as Error).message}\n${run.lines.slice(-15).map(l => "  | " + l).join("\n")}`);
	}
	finally {
		await run.stop();
		fs.rmSync(run.runDir, {recursive: true, force: true});
	}
}

/** Starts a firmware boot for the fleet: it waits until the wall-clock time startAt, then registers. */
export function startXsDevice(o: {sdk: Sdk; soPath: string; registrationId: string; symmetricKey: string; startAt: number}): FirmwareRun {
	const run = runFirmware({
		sdk: o.sdk, soPath: o.soPath, fresh: true,
		preferences: {registrationId: o.registrationId, symmetricKey: o.symmetricKey, benchMessages: 0, benchReconnects: 0, benchStartAt: o.startAt},
	});
	const stop = run.stop.bind(run);
	return Object.assign(run, {
		stop: async () => {
			await stop();
			fs.rmSync(run.runDir, {recursive: true, force: true});
		},
	});
}
