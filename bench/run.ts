/*
 * npm run bench -- [--runs N] [--messages N] [--window N] [--reconnects N] [--fleet N] [--fleet-sims K]
 *                  [--fleet-rate R] [--fleet-retry-after S] [--web N] [--quick] [--no-sim] [--no-microsoft]
 *                  [--no-x509 | --x509-only] [--no-limits] [--memory-only] [--json FILE] [--update FILE]
 *
 * One table, measured in one run against one local emulator (its own process, settings printed):
 * connect, reconnect and throughput for (a) the firmware on the Moddable simulator, (b) the core on
 * the Node host, (c) Microsoft's Node SDK; XS memory from an instrumented build; bytecode size; a
 * fleet provisioning at once against a throttling DPS; the largest incoming message the ESP32-sized
 * firmware takes and the heap around a burst (bench/limits.ts). Each figure is a median over the runs with
 * its range. Runs of the three clients are interleaved so that a change in the machine's load
 * falls on all of them. The X.509 connect (bench/x509.ts: a group enrollment, RSA-2048 leaf +
 * intermediate) is measured beside the SAS one, interleaved with it, with its XS memory peaks;
 * --x509-only measures just those connects (SAS and X.509) and their memory. What cannot be measured here (no Moddable SDK, no Microsoft SDK) is
 * reported as not measured, with the reason. The tables go to stdout (markdown); progress to stderr.
 * XS memory has a table of its own: the benchmark firmware's phases, and the reference firmware and
 * both examples as they ship, each over a whole boot; --memory-only measures just that.
 * --update FILE replaces the part of FILE between <!-- bench:begin --> and <!-- bench:end --> (the
 * main table) and between <!-- bench-memory:begin --> and <!-- bench-memory:end --> (memory).
 */
import {Command, InvalidArgumentError} from "commander";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {simulatorAvailable, type Sdk} from "../tools/sim-runner.js";
import {runCoreOnce} from "./core.js";
import type {RunResult} from "./driver.js";
import {runFleet, type FleetResult} from "./fleet.js";
import {runWebBench, type WebBenchResult} from "./web.js";
import {ESP32_SDK_DEFAULT, SLOT_BYTES_32, SLOT_BYTES_64, largestOf, parseMemory, worstOf, type MemoryReport, type PhaseMemory} from "./memory.js";
import {loadMicrosoftSdk, runMicrosoftOnce} from "./microsoft.js";
import {measureSize, type SizeReport} from "./size.js";
import {limitsRows, runLimits, type LimitsResult} from "./limits.js";
import {REPO_ROOT, formatSummary, ratio, startEmulatorProcess, summarize, type EmulatorProcess, type Summary} from "./lib.js";
import {MEMORY_APPS, buildAppMemoryFirmware, buildBenchFirmware, buildMemoryFirmware, buildProductFirmware, runAppMemoryOnce, runXsOnce, type XsBuild} from "./xs.js";
import {prepareX509Fleet, type X509Fleet} from "./x509.js";

function count(value: string): number {
	const n = Number(value);
	if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("a whole number of 0 or more");
	return n;
}

const program = new Command()
	.name("npm run bench --")
	.description("Benchmarks: connect, reconnect, throughput, XS memory, bytecode size and a throttled fleet, against the local emulator")
	.option("--runs <n>", "runs per client (each figure is the median)", count, 5)
	.option("--messages <n>", "QoS 1 telemetry messages per throughput run", count, 1000)
	.option("--window <n>", "messages sent and not yet acknowledged at once, for every client", count, 8)
	.option("--reconnects <n>", "drops per run", count, 3)
	.option("--fleet <n>", "Node-host devices provisioning at once", count, 1000)
	.option("--fleet-sims <k>", "simulator instances in the fleet", count, 100)
	.option("--fleet-rate <r>", "register requests per second the emulator lets through (429 above)", count, 100)
	.option("--fleet-retry-after <s>", "retry-after on the emulator's 429 replies, seconds", count, 3)
	.option("--retry-after <s>", "retry-after on DPS 202 replies, the same for every client", count, 1)
	.option("--web <n>", "devices at 1 msg/s with the emulator's page open in Chromium (bench/web.ts; 0: not run)", count, 0)
	.option("--quick", "a small configuration that only proves the benchmark works (figures meaningless)", false)
	.option("--no-sim", "do not build or run the firmware (its rows are reported as not measured)")
	.option("--no-microsoft", "do not run Microsoft's SDK (its rows are reported as not measured)")
	.option("--no-x509", "do not measure the X.509 connect")
	.option("--x509-only", "measure only the connects, SAS and X.509 side by side, and their XS memory (no throughput, reconnects, size or fleet)", false)
	.option("--no-limits", "do not probe the firmware's incoming limits (bench/limits.ts)")
	.option("--memory-only", "measure only XS memory (the benchmark firmware, the reference firmware and the examples), a few minutes", false)
	.option("--json <file>", "also write every figure as JSON")
	.option("--update <file>", "replace the sections between <!-- bench:begin --> and <!-- bench:end --> (not with --memory-only) and between <!-- bench-memory:begin --> and <!-- bench-memory:end --> of this file")
	.showHelpAfterError();

interface Options {
	runs: number; messages: number; window: number; reconnects: number; fleet: number; fleetSims: number;
	fleetRate: number; fleetRetryAfter: number; retryAfter: number; web: number; quick: boolean; sim: boolean; microsoft: boolean;
	x509: boolean; x509Only: boolean; limits: boolean; memoryOnly: boolean; json?: string; update?: string;
}

const log = (line: string) => process.stderr.write(`bench: ${line}\n`);

interface ClientFigures {
	/** Why the client was not measured. */
	missing?: string;
	runs: (RunResult & {connectCpuMs?: number; resumed?: number})[];
	errors: string[];
}

interface Results {
	options: Options;
	machine: Record<string, string>;
	emulator: {retryAfterSeconds: number; polls: number; hubName: string};
	xs: ClientFigures;
	core: ClientFigures;
	coreResumed: ClientFigures;
	microsoft: ClientFigures;
	/** The same connects with an X.509 identity (bench/x509.ts). */
	x509: {xs: ClientFigures; core: ClientFigures; microsoft: ClientFigures; missing?: string};
	microsoftVersions?: Record<string, string>;
	/** apps: by MEMORY_APPS name; appErrors: why one was not measured; firmwareX509: the reference firmware with an X.509 identity. */
	memory?: {
		asBuilt?: MemoryReport; asBuiltX509?: MemoryReport; apps: Record<string, MemoryReport | undefined>; appErrors: Record<string, string>;
		firmwareX509?: MemoryReport; missing?: string; esp32Project?: {chunkBytes?: number; heapSlots?: number; stackSlots?: number};
	};
	size?: SizeReport & {missing?: string};
	fleet?: FleetResult & {missing?: string};
	limits?: LimitsResult;
	fleetError?: string;
	web?: WebBenchResult;
	webError?: string;
	startedAt: string;
	seconds: number;
}

function machineInfo(sdk: Sdk | undefined): Record<string, string> {
	const cpus = os.cpus();
	let sdkVersion = "";
	try {
		sdkVersion = JSON.parse(fs.readFileSync(path.join(sdk?.moddable ?? "", "typings/package.json"), "utf8")).version ?? "";
	}
	catch {
		// unknown
	}
	let load = "";
	try {
		load = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
	}
	catch {
		// not Linux
	}
	return {
		cpu: `${cpus.length} × ${cpus[0]?.model ?? "?"}`,
		memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
		os: `${os.type()} ${os.release()} (${os.arch()})`,
		node: process.version,
		moddable: sdk ? `${sdk.moddable}${sdkVersion ? ` (typings ${sdkVersion})` : ""}` : "not found",
		loadBefore: load,
	};
}

async function main(): Promise<void> {
	program.parse();
	const o = program.opts<Options>();
	if (o.quick) Object.assign(o, {runs: 1, messages: 20, reconnects: 1, fleet: Math.min(o.fleet, 20), fleetSims: Math.min(o.fleetSims, 1), fleetRate: Math.min(o.fleetRate, 10), fleetRetryAfter: 1});
	if (o.x509Only) Object.assign(o, {x509: true, messages: 0, reconnects: 0, fleet: 0});
	const started = Date.now();
	const simCheck = o.sim ? simulatorAvailable() : {ok: false as const, reason: "--no-sim was given"};
	const sdk = simCheck.ok ? simCheck.sdk : undefined;
	const ms = o.memoryOnly ? "--memory-only was given" : o.microsoft ? await loadMicrosoftSdk() : "--no-microsoft was given";
	const results: Results = {
		options: o, machine: machineInfo(sdk),
		emulator: {retryAfterSeconds: o.retryAfter, polls: 0, hubName: "127.0.0.1"},
		xs: {runs: [], errors: [], missing: simCheck.ok ? undefined : simCheck.reason.split("\n")[0]},
		core: {runs: [], errors: []},
		coreResumed: {runs: [], errors: []},
		microsoft: {runs: [], errors: [], missing: typeof ms === "string" ? ms : undefined},
		x509: {xs: {runs: [], errors: []}, core: {runs: [], errors: []}, microsoft: {runs: [], errors: []}},
		microsoftVersions: typeof ms === "string" ? undefined : ms.versions,
		startedAt: new Date(started).toISOString(),
		seconds: 0,
	};
	log(`emulator: retry-after ${o.retryAfter} s on 202, assignment on the first poll`);
	// The hub is reached by another name than DPS (127.0.0.1, DPS: localhost), as on Azure where they are different hosts.
	const emu = await startEmulatorProcess({retryAfterSeconds: o.retryAfter, polls: 0, hubName: "127.0.0.1", dataDir: path.join(REPO_ROOT, "build/bench/emulator"), logFile: path.join(REPO_ROOT, "build/bench/emulator.log")});
	try {
		await measure(o, results, emu, sdk, typeof ms === "string" ? undefined : ms);
	}
	finally {
		await emu.stop();
	}
	results.seconds = Math.round((Date.now() - started) / 1000);
	const main = o.memoryOnly ? undefined : render(results);
	const memory = renderMemory(results);
	process.stdout.write((main ? main + "\n\n" : "") + memory + "\n");
	if (o.json) fs.writeFileSync(o.json, JSON.stringify(results, null, "\t") + "\n");
	if (o.update) {
		if (main) updateSection(o.update, "bench", main);
		updateSection(o.update, "bench-memory", memory);
	}
}

async function measure(o: Options, r: Results, emu: EmulatorProcess, sdk: Sdk | undefined, ms: Awaited<ReturnType<typeof loadMicrosoftSdk>> | undefined): Promise<void> {
	if (o.memoryOnly) {
		r.x509.missing = "--memory-only was given";
		await measureMemory(o, r, emu, sdk, undefined);
		return;
	}
	const timeoutMs = 120_000 + o.messages * 20;
	let bench: XsBuild | undefined;
	if (sdk) {
		try {
			bench = await buildBenchFirmware(sdk, emu, log);
		}
		catch (e) {
			r.xs.missing = `the benchmark firmware did not build: ${(e as Error).message.split("\n")[0]}`;
		}
	}
	const scenario = {emu, messages: o.messages, window: o.window, reconnects: o.reconnects, timeoutMs};
	let x509: X509Fleet | undefined;
	if (o.x509) {
		try {
			x509 = await prepareX509Fleet(emu);
			log("x509: a fleet CA (RSA-2048 root and intermediate), the root verified in DPS and the hub, a group on it");
		}
		catch (e) {
			r.x509.missing = `the fleet CA could not be set up: ${(e as Error).message.split("\n")[0]}`;
		}
	}
	else r.x509.missing = "--no-x509 was given";
	r.x509.xs.missing = r.x509.missing ?? r.xs.missing;
	r.x509.core.missing = r.x509.missing;
	r.x509.microsoft.missing = r.x509.missing ?? r.microsoft.missing;
	// The X.509 rows time the connect only: a fresh device's DPS registration and hub connection.
	const connectOnly = {...scenario, messages: 0, reconnects: 0, x509};
	// One unmeasured run each for the Node clients: module loading and the JIT's first compilations
	// are not part of connecting. Every simulator run is a fresh boot, as a device's would be.
	log("warm-up");
	await runCoreOnce({...scenario, messages: Math.min(o.messages, 50), reconnects: 0}).catch(() => {});
	if (x509) await runCoreOnce(connectOnly).catch(() => {});
	if (ms && typeof ms !== "string") await runMicrosoftOnce({...scenario, sdk: ms, messages: Math.min(o.messages, 50), reconnects: 0}).catch(() => {});

	for (let i = 1; i <= o.runs; i++) {
		log(`run ${i}/${o.runs}`);
		if (bench && sdk) await attempt(r.xs, () => runXsOnce({...scenario, sdk, soPath: bench!.soPath}).then(({lines: _lines, ...rest}) => rest));
		if (bench && sdk && x509) await attempt(r.x509.xs, () => runXsOnce({...connectOnly, sdk, soPath: bench!.soPath}).then(({lines: _lines, ...rest}) => rest));
		await attempt(r.core, () => runCoreOnce(scenario));
		if (x509) await attempt(r.x509.core, () => runCoreOnce(connectOnly));
		if (ms && typeof ms !== "string") await attempt(r.microsoft, () => runMicrosoftOnce({...scenario, sdk: ms}));
		if (ms && typeof ms !== "string" && x509) await attempt(r.x509.microsoft, () => runMicrosoftOnce({...connectOnly, sdk: ms}));
		if (!o.x509Only) await attempt(r.coreResumed, () => runCoreOnce({...scenario, messages: 0, resume: true}));
	}
	if (o.x509Only) r.coreResumed.missing = "--x509-only was given";

	await measureMemory(o, r, emu, sdk, x509);
	if (!sdk || !bench) r.size = {missing: r.xs.missing} as Results["size"];
	else if (o.x509Only) r.size = {missing: "--x509-only was given"} as Results["size"];
	else {
		try {
			log("size: the firmware (manifest.json) for the simulator");
			const product = await buildProductFirmware(sdk, emu, log);
			r.size = measureSize(product.buildDir);
		}
		catch (e) {
			r.size = {missing: `the firmware did not build: ${(e as Error).message.split("\n")[0]}`} as Results["size"];
		}
	}

	if (o.limits) {
		if (sdk) {
			log("limits: the largest incoming messages the ESP32-sized firmware takes, and a burst");
			try {
				r.limits = await runLimits({sdk, emu, quick: o.quick, log});
			}
			catch (e) {
				r.limits = {missing: (e as Error).message.split("\n")[0]};
			}
		}
		else r.limits = {missing: r.xs.missing ?? "no simulator"};
	}

	if (o.fleet > 0) {
		log(`fleet: ${o.fleet} Node devices${bench && sdk && o.fleetSims ? ` + ${o.fleetSims} simulators` : ""}, DPS throttled at ${o.fleetRate}/s (429, retry-after ${o.fleetRetryAfter} s)`);
		try {
			r.fleet = await runFleet({
				emu, devices: o.fleet, rate: o.fleetRate, retryAfter: o.fleetRetryAfter, timeoutMs: 5 * 60_000,
				sims: bench && sdk && o.fleetSims ? {sdk, soPath: bench.soPath, count: o.fleetSims} : undefined, log,
			});
		}
		catch (e) {
			r.fleetError = (e as Error).message.split("\n")[0];
		}
	}

	if (o.web > 0) {
		log(`web: ${o.web} devices at 1 msg/s with the emulator's page open`);
		try {
			r.web = await runWebBench({devices: o.web, seconds: o.quick ? 5 : 30, rate: 1, log});
		}
		catch (e) {
			r.webError = (e as Error).message.split("\n")[0];
		}
	}
}

/**
 * XS memory: the benchmark firmware's phases (and its X.509 connect), then each application as it
 * ships over a whole boot, the reference firmware once more with an X.509 identity.
 */
async function measureMemory(o: Options, r: Results, emu: EmulatorProcess, sdk: Sdk | undefined, x509: X509Fleet | undefined): Promise<void> {
	const memory: NonNullable<Results["memory"]> = r.memory = {apps: {}, appErrors: {}, esp32Project: esp32ProjectCreation()};
	if (!sdk) {
		memory.missing = r.xs.missing ?? "no simulator";
		return;
	}
	try {
		log("memory: instrumented build of the benchmark firmware");
		const asBuilt = await buildMemoryFirmware(sdk, emu, log);
		// --x509-only: the SAS figures too, at the same (connect-only) work, for comparison.
		const memoryMessages = o.x509Only ? 0 : MEMORY_MESSAGES;
		const boot = (fleet?: X509Fleet) => async () => (await runXsOnce({sdk, soPath: asBuilt.soPath, emu, messages: memoryMessages, window: 1, reconnects: 0, timeoutMs: 180_000, x509: fleet})).lines;
		memory.asBuilt = await memoryRun(o, boot());
		if (x509) memory.asBuiltX509 = await memoryRun(o, boot(x509));
	}
	catch (e) {
		memory.missing = `the instrumented run failed: ${(e as Error).message.split("\n")[0]}`;
	}
	for (const app of MEMORY_APPS) {
		if (o.x509Only && app.name !== "firmware") continue;
		try {
			log(`memory: ${app.label} as it ships, instrumented`);
			const build = await buildAppMemoryFirmware(sdk, emu, app, log);
			const run = (fleet?: X509Fleet) => () => runAppMemoryOnce({sdk, soPath: build.soPath, emu, app, ticks: APP_MEMORY_TICKS, timeoutMs: 180_000, x509: fleet});
			memory.apps[app.name] = await memoryRun(o, run());
			if (x509 && app.name === "firmware") memory.firmwareX509 = await memoryRun(o, run(x509));
		}
		catch (e) {
			memory.appErrors[app.name] = `the instrumented run failed: ${(e as Error).message.split("\n")[0]}`;
			log(`memory: ${app.label}: ${(e as Error).message}`);
		}
	}
}

async function attempt<T extends ClientFigures["runs"][number]>(into: ClientFigures, run: () => Promise<T>): Promise<void> {
	try {
		into.runs.push(await run());
	}
	catch (e) {
		const message = (e as Error).message;
		into.errors.push(message.split("\n")[0]);
		log(`a run failed: ${message}`);
	}
}

/** The memory goal: at least this much of each ESP32 default left (issue 10). */
const MEMORY_GOAL_LEFT = 20;
/** Memory runs per build; the table shows the largest figure of each kind. */
const MEMORY_RUNS = 2;
/** Steady state as the device sends: one message at a time (it sends one every intervalMs). */
const MEMORY_MESSAGES = 50;
/** The applications as they ship send every second (their shortest interval), for this many intervals. */
const APP_MEMORY_TICKS = 10;

/** Repeats one instrumented boot (its output lines) and keeps the largest figure of each kind. */
async function memoryRun(o: Options, boot: () => Promise<readonly string[]>): Promise<MemoryReport | undefined> {
	const reports: MemoryReport[] = [];
	for (let i = 0; i < (o.quick ? 1 : MEMORY_RUNS); i++)
		reports.push(parseMemory(await boot(), {chunkInitial: 4096, heapInitialSlots: 256, stackSlots: 4096}));
	return worstOf(reports);
}

function esp32ProjectCreation(): {chunkBytes?: number; heapSlots?: number; stackSlots?: number} | undefined {
	try {
		const c = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "hosts/esp32/manifest.json"), "utf8")).creation;
		return {chunkBytes: c?.chunk?.initial, heapSlots: c?.heap?.initial, stackSlots: c?.stack};
	}
	catch {
		return undefined;
	}
}

/* ------------------------------------------------------------------ the table */

function col(f: ClientFigures, pick: (r: ClientFigures["runs"][number]) => number | number[] | undefined): Summary | undefined {
	return summarize(f.runs.flatMap(r => {
		const v = pick(r);
		return v === undefined ? [] : Array.isArray(v) ? v : [v];
	}));
}

function render(r: Results): string {
	const o = r.options;
	const out: string[] = [];
	const why = (f: ClientFigures) => f.missing ? `not measured: ${f.missing}` : f.runs.length ? "" : `not measured: every run failed (${f.errors[0] ?? "?"})`;
	const cell = (f: ClientFigures, s: Summary | undefined, unit: string, digits = 0) => why(f) || formatSummary(s, unit, digits);
	const waitMs = r.emulator.retryAfterSeconds * 1000;
	type Row = [string, string, string, string, string, string];
	const rows: Row[] = [];
	type Pick = (x: ClientFigures["runs"][number]) => number | number[] | undefined;
	const sas = [r.xs, r.core, r.microsoft] as const;
	const x5 = [r.x509.xs, r.x509.core, r.x509.microsoft] as const;
	const timingOf = (figures: readonly [ClientFigures, ClientFigures, ClientFigures], label: string, pick: Pick, unit = "ms", digits = 0, ratios = true) => {
		const [fa, fb, fc] = figures;
		const [a, b, c] = [col(fa, pick), col(fb, pick), col(fc, pick)];
		rows.push([label, cell(fa, a, unit, digits), cell(fb, b, unit, digits), cell(fc, c, unit, digits),
			ratios && !why(fa) && !why(fc) ? ratio(a, c) : "–", ratios && !why(fb) && !why(fc) ? ratio(b, c) : "–"]);
	};
	const timing = (label: string, pick: Pick, unit = "ms", digits = 0, ratios = true) => timingOf(sas, label, pick, unit, digits, ratios);
	const connectRows = (figures: typeof sas | typeof x5, prefix: string) => {
		timingOf(figures, `${prefix}: start → hub CONNACK (DPS included)`, x => x.hubConnackMs);
		timingOf(figures, `${prefix}: start → ready (subscribed, twin read)`, x => x.readyMs);
		timingOf(figures, `${prefix}: start → ready, without the ${waitMs} ms retry-after wait`, x => x.readyMs === undefined ? undefined : x.readyMs - waitMs);
		timingOf(figures, "… of which DPS assigned (start → assignment)", x => x.assignedMs);
		rows.push(["… of which computing (XS: simulator CPU time, start → ready)", why(figures[0]) || formatSummary(col(figures[0], x => x.connectCpuMs), "ms"), "–", "–", "–", "–"]);
	};
	connectRows(sas, "Connect");
	const x509Label = "X.509 connect (group enrollment; RSA-2048 leaf + intermediate sent, no password)";
	connectRows(x5, x509Label);
	rows.push(["… of which the device's check of its certificate and key (src/x509.ts checkClientIdentity)",
		why(r.x509.xs) || formatSummary(col(r.x509.xs, x => x.identityCheckMs), "ms", 1), why(r.x509.core) || formatSummary(col(r.x509.core, x => x.identityCheckMs), "ms", 1), "–", "–", "–"]);
	// X.509 against SAS, per client: the medians' ratio of start → ready.
	const against = (x: ClientFigures, s: ClientFigures) => why(x) || why(s) || ratio(col(x, f => f.readyMs), col(s, f => f.readyMs));
	rows.push(["X.509 connect against SAS (start → ready, medians' ratio)", against(r.x509.xs, r.xs), against(r.x509.core, r.core), against(r.x509.microsoft, r.microsoft), "–", "–"]);
	const full = !o.x509Only;
	if (full) timing("Reconnect: drop → hub CONNACK (first drop of a run)", x => x.reconnects[0]?.toConnackMs);
	if (full) timing("Reconnect: … of which the client's own delay (backoff, first drop)", x => x.reconnects[0] === undefined ? undefined : x.reconnects[0].backoffMs ?? 0);
	if (full) timing("Reconnect: drop → CONNACK less that delay (handshake; every drop)", x => x.reconnects.map(c => c.toConnackMs - (c.backoffMs ?? 0)));
	const resumed = col(r.coreResumed, x => x.reconnects.map(c => c.toConnackMs - (c.backoffMs ?? 0)));
	const resumedCount = r.coreResumed.runs.reduce((n, x) => n + (x.resumed ?? 0), 0);
	const drops = r.coreResumed.runs.reduce((n, x) => n + x.reconnects.length, 0);
	if (full) rows.push(["Reconnect handshake with the TLS session resumed",
		"not possible here: XS resumes by session id only, the emulator's Node TLS server by ticket only (Azure IoT Hub resumes neither, see below)",
		(why(r.coreResumed) || formatSummary(resumed, "ms")) + ` (bench/resume-host.ts; ${resumedCount} of ${drops} resumed)`,
		"not offered by the SDK", "–", "–"]);
	if (full) timing(`Throughput: acknowledged QoS 1 telemetry (window ${o.window}, ${o.messages} messages)`, x => x.perSecond, "msg/s");

	// Size
	const s = r.size;
	if (full) rows.push(["Bytecode (.xsb) of the project's own modules (src/, hosts/)", s?.missing ? `not measured: ${s.missing}` : s ? `${kb(s.projectBytes)} in ${s.projectModules} modules (largest: ${s.largest.slice(0, 3).map(l => `${l.module} ${kb(l.bytes)}`).join(", ")})` : "not measured", "–", "–", "–", "–"]);
	if (full) rows.push(["Bytecode (.xsb) of the whole firmware build", s?.missing ? `not measured: ${s.missing}` : s ? `${kb(s.totalBytes)} in ${s.projectModules + s.sdkModules} modules (SDK ${kb(s.sdkBytes)}); simulator mc.so ${kb(s.soBytes ?? 0)}` : "not measured", "–", "–", "–", "–"]);

	// Incoming limits
	if (r.limits) for (const [label, figure] of limitsRows(r.limits)) rows.push([label, figure, "–", "–", "–", "–"]);

	// Fleet
	const f = r.fleet;
	if (f) {
		const g = (x: FleetResult["node"] | undefined) => x ? `${x.assigned}/${x.devices} assigned; all in ${x.allAssignedMs === undefined ? "– (not all)" : ms(x.allAssignedMs)}; p50 ${ms(x.p50Ms)}, p99 ${ms(x.p99Ms)}${x.errors.length ? `; errors: ${x.errors.join("; ")}` : ""}` : "–";
		rows.push([`Fleet: provisioning at once, DPS throttled at ${f.rate} registrations/s (429, retry-after ${f.retryAfter} s)`,
			f.sims ? g(f.sims) : `not measured: ${r.xs.missing ?? "no simulator instances asked for"}`, g(f.node), "–", "–", "–"]);
		const devices = f.node.devices + (f.sims?.devices ?? 0);
		rows.push(["Fleet: DPS requests the emulator counted (all devices)",
			"–", `${f.dpsRegisterRequests} register + ${f.dpsPollRequests} poll = ${((f.dpsRegisterRequests + f.dpsPollRequests) / devices).toFixed(2)} per device (fewest possible: 2); ${f.dpsConnects} connections; Node CPU ${f.nodeCpuSeconds} s over ${f.wallSeconds} s`, "–", "–", "–"]);
	}
	else if (o.fleet > 0) rows.push(["Fleet", "–", `not measured: ${r.fleetError ?? "?"}`, "–", "–", "–"]);

	// The emulator's page (its own emulator process; the devices are raw MQTT connections)
	const w = r.web;
	if (w) {
		rows.push([`Emulator page: ${w.devices} devices × ${w.rate} msg/s for ${w.seconds} s, page open in Chromium`, "–",
			`timer lag p50/p99/max ${w.lagMs.p50}/${w.lagMs.p99}/${w.lagMs.max} ms; ${w.longTasks.count} long tasks; select a device ${w.selectMs.p50} ms (max ${w.selectMs.max}); filter ${w.filterMs} ms; `
			+ `JS heap ${w.heapMb.start} → ${w.heapMb.end} MB; ${w.renderedRows} of ${w.devices} rows rendered; streams ${Math.round(w.streamBytesPerSecond / 1024)} KB/s; emulator RSS ${w.emulatorRssMb.start} → ${w.emulatorRssMb.end} MB`, "–", "–", "–"]);
	}
	else if (o.web > 0) rows.push(["Emulator page", "–", `not measured: ${r.webError ?? "?"}`, "–", "–", "–"]);

	out.push(`Measured ${r.startedAt} in ${r.seconds} s with \`npm run bench -- ${commandLine(o)}\`.`);
	out.push(`Machine: ${r.machine.cpu}, ${r.machine.memory}, ${r.machine.os}; Node ${r.machine.node}; Moddable SDK ${r.machine.moddable}; load average before the run ${r.machine.loadBefore || "?"}.`);
	out.push(`Emulator: its own process; DPS answers the registration 202 with retry-after ${r.emulator.retryAfterSeconds} s (the same for every client; all three honour it) and assigns on the first poll; hub host name ${r.emulator.hubName} (DPS: localhost). Medians over ${o.runs} run(s) (range, n); reconnect rows pool ${o.reconnects} drop(s) per run.`);
	if (r.microsoftVersions) out.push(`Microsoft's SDK: ${Object.entries(r.microsoftVersions).map(([k, v]) => `${k} ${v}`).join(", ")}.`);
	out.push("");
	out.push("| Measure | (a) firmware on the simulator (XS) | (b) core on the Node host | (c) Microsoft's Node SDK | (a)/(c) | (b)/(c) |");
	out.push("|---|---|---|---|---|---|");
	for (const row of rows) out.push(`| ${row.map(c => c.replace(/\|/g, "\\|")).join(" | ")} |`);
	const errors = [["firmware", r.xs], ["core", r.core], ["core, resumed", r.coreResumed], ["Microsoft", r.microsoft],
		["firmware, X.509", r.x509.xs], ["core, X.509", r.x509.core], ["Microsoft, X.509", r.x509.microsoft]] as const;
	for (const [name, fig] of errors) if (fig.errors.length) out.push(`\nFailed ${name} runs: ${fig.errors.length} (${[...new Set(fig.errors)].join("; ")})`);
	return out.join("\n");
}

function renderMemory(r: Results): string {
	const m = r.memory;
	const d = ESP32_SDK_DEFAULT;
	const rows: string[][] = [];
	const row = (label: string, p: PhaseMemory | undefined, missing: string | undefined) => {
		if (!p) {
			rows.push([label, `not measured: ${missing ?? "?"}`, "–", "–", "not measured"]);
			return;
		}
		const slots = Math.round(p.slotHeapBytes / SLOT_BYTES_64);
		const stack = Math.round(p.stackBytes / SLOT_BYTES_64);
		const shares = [slots / d.heapSlots, p.chunkHeapBytes / d.chunkBytes, stack / d.stackSlots];
		const pct = shares.map(x => Math.round(x * 100));
		// The goal is judged on the unrounded share: at most 80% of each default used.
		const short = ["heap", "chunks", "stack"].filter((_, i) => shares[i] > 1 - MEMORY_GOAL_LEFT / 100);
		rows.push([label,
			`${slots} slots = ${kb(slots * SLOT_BYTES_32)} ESP32 (${pct[0]}% of ${d.heapSlots})`,
			`${kb(p.chunkHeapBytes)} sim, ESP32 ≤ that (${pct[1]}% of ${kb(d.chunkBytes)})`,
			`${stack} slots = ${kb(stack * SLOT_BYTES_32)} ESP32 (${pct[2]}% of ${d.stackSlots})`,
			short.length ? `not met: ${short.map(k => `${k} ${100 - pct[["heap", "chunks", "stack"].indexOf(k)]}% left`).join(", ")}` : `met (${100 - Math.max(...pct)}% left at least)`]);
	};
	row("XS memory at boot (modules loaded), benchmark firmware", m?.asBuilt?.boot, m?.missing);
	row("XS peak memory, TLS + DPS + hub connect, benchmark firmware", m?.asBuilt?.connect, m?.missing);
	if (r.options.x509) row("XS peak memory, TLS + DPS + hub connect with X.509 (RSA-2048 leaf + intermediate from Preference blobs; the identity check included), benchmark firmware", m?.asBuiltX509?.connect, m?.missing ?? r.x509.missing);
	if (!r.options.x509Only) row(`XS peak memory, steady state sending telemetry (one at a time, ${MEMORY_MESSAGES} messages), benchmark firmware`, m?.asBuilt?.steady, m?.missing);
	for (const app of MEMORY_APPS) {
		if (r.options.x509Only && app.name !== "firmware") continue;
		const report = m?.apps[app.name];
		const missing = m?.appErrors[app.name] ?? m?.missing;
		// Rows for the whole run so far: phases end on the application's own events, which fall
		// between the once-a-second samples, and a grown heap never shrinks.
		row(`XS peak memory, ${app.label} as it ships, over a whole boot: Wi-Fi, clock, DPS, hub, twin read and reported properties, then ${APP_MEMORY_TICKS} s of telemetry (${APP_MEMORY_TICKS * app.messagesPerTick} messages)`,
			report && largestOf([report.boot, report.connect, report.steady]), missing);
		row(`… and then a writable property and a command from the service (${app.method.name})`,
			report && largestOf([report.boot, report.connect, report.steady, report.service]), missing);
	}
	if (r.options.x509) {
		const f = m?.firmwareX509;
		row("XS peak memory, the reference firmware as it ships, the same boot with X.509 (identity in Preference blobs, as commissioned), then the writable property and the command",
			f && largestOf([f.boot, f.connect, f.steady, f.service]), m?.appErrors.firmware ?? m?.missing ?? r.x509.missing);
	}
	const esp = m?.esp32Project;
	const out: string[] = [];
	out.push(`Measured ${r.startedAt} with \`npm run bench -- ${commandLine(r.options)}\`; machine: ${r.machine.cpu}, ${r.machine.memory}, ${r.machine.os}; Node ${r.machine.node}; Moddable SDK ${r.machine.moddable}; load average before the run ${r.machine.loadBefore || "?"}.`);
	out.push(`Against the SDK's ESP32 defaults: heap ${d.heapSlots} slots (${kb(d.heapSlots * SLOT_BYTES_32)}), chunks ${kb(d.chunkBytes)}, stack ${d.stackSlots} slots (${kb(d.stackSlots * SLOT_BYTES_32)}); goal: at least ${MEMORY_GOAL_LEFT}% of each left.` +
		(esp ? ` This project's hosts/esp32/manifest.json gives heap ${esp.heapSlots} slots, chunks ${kb(esp.chunkBytes ?? 0)}, stack ${esp.stackSlots} slots.` : ""));
	out.push("");
	out.push(`| XS memory (largest of the runs) | heap | chunks | stack | goal: ${MEMORY_GOAL_LEFT}% of each ESP32 default left |`);
	out.push("|---|---|---|---|---|");
	for (const cells of rows) out.push(`| ${cells.map(c => c.replace(/\|/g, "\\|")).join(" | ")} |`);
	return out.join("\n");
}

function kb(bytes: number): string {
	return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(1)} MB` : `${(bytes / 1024).toFixed(1)} KB`;
}

function ms(value: number | undefined): string {
	return value === undefined ? "–" : value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
}

function commandLine(o: Options): string {
	if (o.memoryOnly) return "--memory-only" + (o.quick ? " --quick" : "") + (o.x509 ? "" : " --no-x509");
	if (o.quick) return "--quick" + (o.sim ? "" : " --no-sim") + (o.microsoft ? "" : " --no-microsoft") + (o.x509Only ? " --x509-only" : o.x509 ? "" : " --no-x509") + (o.limits || o.x509Only ? "" : " --no-limits");
	if (o.x509Only) return `--x509-only --runs ${o.runs}` + (o.sim ? "" : " --no-sim") + (o.microsoft ? "" : " --no-microsoft");
	const parts = [`--runs ${o.runs}`, `--messages ${o.messages}`, `--window ${o.window}`, `--reconnects ${o.reconnects}`, `--fleet ${o.fleet}`, `--fleet-sims ${o.fleetSims}`, `--fleet-rate ${o.fleetRate}`, `--fleet-retry-after ${o.fleetRetryAfter}`];
	if (o.web) parts.push(`--web ${o.web}`);
	if (!o.sim) parts.push("--no-sim");
	if (!o.microsoft) parts.push("--no-microsoft");
	if (!o.x509) parts.push("--no-x509");
	if (!o.limits) parts.push("--no-limits");
	return parts.join(" ");
}

function updateSection(file: string, name: string, report: string): void {
	const text = fs.readFileSync(file, "utf8");
	const begin = `<!-- ${name}:begin -->`, end = `<!-- ${name}:end -->`;
	const a = text.indexOf(begin), b = text.indexOf(end);
	if (a < 0 || b < a) throw new Error(`${file} has no ${begin} … ${end} section to replace`);
	fs.writeFileSync(file, text.slice(0, a + begin.length) + "\n" + report + "\n" + text.slice(b));
	log(`wrote the ${name} table into ${file}`);
}

main().then(() => process.exit(0), e => {
	process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
	process.exit(1);
});
