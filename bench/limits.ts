/*
 * How large a message the ESP32-sized firmware takes, and what a burst leaves behind: the figures
 * src/limits.ts's DEFAULT_LIMITS come from (docs/reliability.md, "A hostile hub").
 *
 * The reference firmware (bench/fixtures/manifest-limits.json: test/fixtures/hostile-sim with the
 * ESP32's fixed creation sizes, instrumented) is built with every limit at what IoT Hub itself
 * allows, so that nothing is refused and each message is really taken: then the emulator sends
 * cloud-to-device messages, method payloads and desired patches of growing sizes (its hostile sends,
 * POST /faults), one at a time, until one makes the VM run out of memory or the largest IoT Hub
 * sends has passed. A size counts as taken when the application got it and telemetry was
 * acknowledged after it. Then, in a fresh boot, a burst: 100 desired patches in a second and a
 * method every 100 ms for 3 s, with the heap in use (after a garbage collection) before and after.
 *
 * Run alone: `npx tsx bench/limits.ts [--quick]` (its own emulator; a few minutes, one simulator at
 * a time); `npm run bench` has the same rows. Figures are printed, never asserted.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {fileURLToPath} from "node:url";
import {buildFirmware, runFirmware, simulatorAvailable, type DeviceEvent, type FirmwareRun, type Sdk} from "../tools/sim-runner.js";
import {DEFAULT_LIMITS} from "../src/limits.js";
import {REPO_ROOT, bounded, newRegistrationId, sleep, startEmulatorProcess, type EmulatorProcess} from "./lib.js";

export const LIMITS_MANIFEST = path.join(REPO_ROOT, "bench/fixtures/manifest-limits.json");

export type ProbeKind = "c2d" | "method" | "desired";

/** The sizes tried, smallest first, up to what IoT Hub sends (64 KB, 128 KB, a 32 KB desired section). */
const SIZES: Record<ProbeKind, number[]> = {
	c2d: [2048, 4096, 8192, 12288, 16384, 18432, 20480, 24576, 32768, 49152, 65536],
	method: [2048, 4096, 8192, 12288, 16384, 18432, 20480, 24576, 32768, 49152, 65536, 98304, 131072],
	desired: [2048, 4096, 8192, 12288, 16384, 18432, 20480, 24576, 28672, 32000],
};
/** --quick: one size each, and one that aborts (so that the reboot after it is exercised too). */
const QUICK_SIZES: Record<ProbeKind, number[]> = {c2d: [8192, 65536], method: [8192], desired: [8192]};

export interface Probe {
	bytes: number;
	taken: boolean;
	/** Why not: the abort line, or what did not come. */
	failure?: string;
}

export interface KindResult {
	kind: ProbeKind;
	probes: Probe[];
	/** The largest size taken, and the smallest that was not (undefined: all were taken). */
	largestTaken?: number;
	firstFailed?: number;
}

export interface HeapReading {
	slotUsed: number;
	chunkUsed: number;
}

export interface LimitsResult {
	missing?: string;
	kinds?: KindResult[];
	/** The creation sizes the firmware ran with (hosts/sim/manifest.json, = hosts/esp32's). */
	creation?: {chunkBytes: number; heapSlots: number; stackSlots: number};
	/** Heap in use at rest (after a collection), before the probes. */
	idle?: HeapReading;
	burst?: {before?: HeapReading; after?: HeapReading; peak?: HeapReading; desired: number; desiredDelivered: number; methods: number; methodsAnswered: number; reconnects: number; failure?: string};
	seconds?: number;
}

const HEAP_EVERY_MS = 1000;

function simCreation(): LimitsResult["creation"] {
	const c = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "hosts/sim/manifest.json"), "utf8")).creation;
	return {chunkBytes: c.chunk.initial, heapSlots: c.heap.initial, stackSlots: c.stack};
}

function median(values: number[]): number {
	const s = [...values].sort((a, b) => a - b);
	return s[Math.floor(s.length / 2)];
}

/** The median of the last `n` heap readings from index `from` of the run's events (up to `to`). */
function heapAt(run: FirmwareRun, from: number, to = run.events.length, n = 3): HeapReading | undefined {
	const readings = run.events.slice(from, to).filter(e => e.event === "test.heap" && typeof e.chunkUsed === "number").slice(-n);
	if (!readings.length) return undefined;
	return {slotUsed: median(readings.map(e => Number(e.slotUsed))), chunkUsed: median(readings.map(e => Number(e.chunkUsed)))};
}

class Device {
	run!: FirmwareRun;
	readonly runDir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-limits-"));
	boots = 0;

	constructor(readonly o: {sdk: Sdk; soPath: string; emu: EmulatorProcess; registrationId: string; symmetricKey: string}) {}

	/** Boots (the first time factory-fresh, then with its storage: the cached assignment) and waits for telemetry. */
	async boot(): Promise<void> {
		this.run = runFirmware({
			sdk: this.o.sdk, soPath: this.o.soPath, runDir: this.runDir, fresh: this.boots === 0,
			preferences: this.boots === 0 ? {registrationId: this.o.registrationId, symmetricKey: this.o.symmetricKey, testHeapMs: HEAP_EVERY_MS} : undefined,
			onLine: process.env.BENCH_LIMITS_TRACE ? line => process.stderr.write(`sim ${this.boots}: ${line}\n`) : undefined,
		});
		this.boots++;
		await this.run.waitFor("telemetry.acked", {timeoutMs: 90_000});
		await this.run.waitFor("test.heap", {timeoutMs: 10_000, since: this.run.events.length});
	}

	async stop(): Promise<void> {
		await this.run?.stop();
	}

	/** Resolves once `n` more telemetry messages were acknowledged. */
	async telemetry(n: number, timeoutMs = 20_000): Promise<void> {
		const seen = this.run.events.filter(e => e.event === "telemetry.acked").length;
		await this.run.waitFor(() => this.run.events.filter(e => e.event === "telemetry.acked").length >= seen + n, {timeoutMs});
	}

	cleanup(): void {
		fs.rmSync(this.runDir, {recursive: true, force: true});
	}
}

/** Sends one message of `bytes` of this kind; resolves once the application got it and telemetry went on. */
async function probe(device: Device, emu: EmulatorProcess, kind: ProbeKind, bytes: number): Promise<Probe> {
	const run = device.run;
	const since = run.events.length;
	const deviceId = device.o.registrationId;
	try {
		if (kind === "c2d") {
			await emu.addFault({kind: "send.c2d", deviceId, bytes});
			await run.waitFor((e: DeviceEvent) => e.event === "c2d.received" && e.size === bytes, {since, timeoutMs: 30_000});
		}
		else if (kind === "method") {
			await emu.addFault({kind: "send.method", deviceId, bytes, timeoutSeconds: 30});
			await run.waitFor("method.invoked", {since, timeoutMs: 30_000});
		}
		else {
			const {sent} = await emu.addFault({kind: "send.desired", deviceId, bytes});
			const version = (await emu.sent()).find(s => s.id === sent?.id)?.versions?.[0];
			await run.waitFor((e: DeviceEvent) => e.event === "twin.desired" && e.version === version, {since, timeoutMs: 30_000});
		}
		await device.telemetry(2);
		return {bytes, taken: true};
	}
	catch (e) {
		return {bytes, taken: false, failure: run.failure ?? (e as Error).message.split("\n")[0]};
	}
}

export async function runLimits(o: {sdk: Sdk; emu: EmulatorProcess; quick?: boolean; log: (line: string) => void}): Promise<LimitsResult> {
	const started = Date.now();
	const {sdk, emu, log} = o;
	const build = await buildFirmware({
		sdk, manifest: LIMITS_MANIFEST, variant: "instrument", buildDir: path.join(REPO_ROOT, "build/bench/limits"), roots: [emu.caDer],
		// Every limit at what IoT Hub sends: the firmware takes everything, so what it can hold shows.
		settings: {dpsHost: emu.host, dpsPort: emu.port, idScope: emu.idScope, hubPort: emu.port, intervalMs: 1000, maxMessageBytes: 65536, maxMethodBytes: 131072, maxTwinBytes: 65536},
	});
	log(`limits: firmware built in ${build.seconds.toFixed(1)} s`);
	const registrationId = newRegistrationId("bench-limits");
	const symmetricKey = await emu.addEnrollment(registrationId);
	const device = new Device({sdk, soPath: build.soPath, emu, registrationId, symmetricKey});
	const result: LimitsResult = {creation: simCreation(), kinds: []};
	try {
		await device.boot();
		result.idle = heapAt(device.run, 0);
		for (const kind of ["c2d", "method", "desired"] as ProbeKind[]) {
			const k: KindResult = {kind, probes: []};
			result.kinds!.push(k);
			for (const bytes of (o.quick ? QUICK_SIZES : SIZES)[kind]) {
				const p = await probe(device, emu, kind, bytes);
				k.probes.push(p);
				log(`limits: ${kind} of ${bytes} bytes: ${p.taken ? "taken" : `not taken (${p.failure})`}`);
				if (p.taken) {
					k.largestTaken = bytes;
					continue;
				}
				k.firstFailed = bytes;
				// What made it abort would come again at every boot (a message not completed is delivered
				// again, a twin this large is read again): remove it before the device comes back.
				if (kind === "desired") await emu.patchDesired(registrationId, {hostile: null});
				if (kind === "c2d") await emu.purgeC2d(registrationId);
				await device.stop();
				await device.boot();
				break;
			}
		}
		await emu.patchDesired(registrationId, {hostile: null});
		result.burst = await burst(device, emu, registrationId, log);
	}
	catch (e) {
		result.missing = `the run failed: ${(e as Error).message.split("\n")[0]}`;
	}
	finally {
		await device.stop();
		device.cleanup();
	}
	result.seconds = Math.round((Date.now() - started) / 1000);
	return result;
}

/** A fresh boot, then 100 desired patches in 1 s and a method every 100 ms for 3 s; the heap before and after. */
async function burst(device: Device, emu: EmulatorProcess, deviceId: string, log: (line: string) => void): Promise<NonNullable<LimitsResult["burst"]>> {
	await device.stop();
	await device.boot();
	const run = device.run;
	const connectionsBefore = (await emu.connections(deviceId)).length;
	// A few readings at rest first.
	await sleep(4 * HEAP_EVERY_MS);
	const start = run.events.length;
	const before = heapAt(run, 0, start);
	const desired = await emu.addFault({kind: "send.desired", deviceId, repeat: 100, everyMs: 10});
	const methods = await emu.addFault({kind: "send.method", deviceId, repeat: 30, everyMs: 100, timeoutSeconds: 30});
	const out: NonNullable<LimitsResult["burst"]> = {before, desired: 100, desiredDelivered: 0, methods: 30, methodsAnswered: 0, reconnects: 0};
	try {
		await bounded("the burst", 60_000, (async () => {
			for (;;) {
				const sent = await emu.sent();
				const d = sent.find(s => s.id === desired.sent?.id), m = sent.find(s => s.id === methods.sent?.id);
				if (d?.done && m?.done) {
					const last = d.versions?.at(-1);
					await run.waitFor((e: DeviceEvent) => e.event === "twin.desired" && e.version === last, {since: start, timeoutMs: 30_000});
					out.methodsAnswered = (m.results ?? []).filter(r => "status" in r).length;
					return;
				}
				await sleep(200);
			}
		})());
		out.desiredDelivered = run.events.slice(start).filter(e => e.event === "twin.desired").length;
		// Once it has passed: the replies and acknowledgements out, a few readings at rest.
		await device.telemetry(2);
		const rest = run.events.length;
		await sleep(4 * HEAP_EVERY_MS);
		out.after = heapAt(run, rest);
		const during = run.events.slice(start, rest).filter(e => e.event === "test.heap");
		if (during.length) out.peak = {slotUsed: Math.max(...during.map(e => Number(e.slotUsed))), chunkUsed: Math.max(...during.map(e => Number(e.chunkUsed)))};
	}
	catch (e) {
		out.failure = run.failure ?? (e as Error).message.split("\n")[0];
	}
	out.reconnects = (await emu.connections(deviceId)).length - connectionsBefore;
	log(`limits: burst: heap before ${JSON.stringify(out.before)}, after ${JSON.stringify(out.after)}${out.failure ? `; ${out.failure}` : ""}`);
	return out;
}

/* ------------------------------------------------------------------ rows */

const kb = (bytes: number) => `${(bytes / 1024).toFixed(bytes % 1024 ? 1 : 0)} KB`;
const heap = (h: HeapReading | undefined, c: LimitsResult["creation"]) =>
	h ? `slots ${Math.round(h.slotUsed / 32)} of ${c?.heapSlots}, chunks ${kb(h.chunkUsed)} of ${kb(c?.chunkBytes ?? 0)}` : "not measured";

/** Rows for the benchmark table: [measure, figure]. */
export function limitsRows(r: LimitsResult | undefined): [string, string][] {
	if (!r || r.missing || !r.kinds) return [["Incoming limits (bench/limits.ts)", `not measured: ${r?.missing ?? "?"}`]];
	const c = r.creation;
	const rows: [string, string][] = [];
	const names: Record<ProbeKind, string> = {c2d: "cloud-to-device message", method: "direct-method payload", desired: "desired-properties patch"};
	const setting: Record<ProbeKind, keyof typeof DEFAULT_LIMITS> = {c2d: "maxMessageBytes", method: "maxMethodBytes", desired: "maxTwinBytes"};
	for (const k of r.kinds) {
		const largest = k.largestTaken === undefined ? "none of the sizes tried" : kb(k.largestTaken);
		const hubMost = SIZES[k.kind][SIZES[k.kind].length - 1];
		const failed = k.firstFailed !== undefined ? `${kb(k.firstFailed)} was not (${k.probes.find(p => !p.taken)?.failure})`
			: k.largestTaken === hubMost ? "every size up to what IoT Hub sends was taken" : "no larger size tried (--quick)";
		rows.push([`Largest ${names[k.kind]} the ESP32-sized firmware takes (chunk heap ${kb(c?.chunkBytes ?? 0)}, ${c?.heapSlots} slots, fixed)`,
			`${largest}; ${failed}; default ${setting[k.kind]} ${kb(DEFAULT_LIMITS[setting[k.kind]])}`]);
	}
	rows.push(["Heap in use at rest, connected (after a collection; simulator bytes)", heap(r.idle, c)]);
	const b = r.burst;
	if (b) {
		rows.push(["Burst: 100 desired patches in 1 s and a method every 100 ms for 3 s",
			`${b.desiredDelivered}/${b.desired} patches delivered, ${b.methodsAnswered}/${b.methods} methods answered, ${b.reconnects} reconnects${b.failure ? `; ${b.failure}` : ""}`]);
		rows.push(["Burst: heap in use before → after it has passed (after a collection)", `${heap(b.before, c)} → ${heap(b.after, c)}; largest reading during: ${heap(b.peak, c)}`]);
	}
	return rows;
}

async function main(): Promise<void> {
	const quick = process.argv.includes("--quick");
	const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
	const sim = simulatorAvailable();
	if (!sim.ok) {
		process.stdout.write(`| Incoming limits | not measured: ${sim.reason.split("\n")[0]} |\n`);
		return;
	}
	const emu = await startEmulatorProcess({retryAfterSeconds: 1, polls: 0, hubName: "127.0.0.1", dataDir: path.join(REPO_ROOT, "build/bench/emulator")});
	try {
		const r = await runLimits({sdk: sim.sdk, emu, quick, log});
		process.stdout.write(`Measured ${new Date().toISOString()} in ${r.seconds} s with \`npx tsx bench/limits.ts${quick ? " --quick" : ""}\`.\n\n| Measure | Firmware on the simulator (XS) |\n|---|---|\n`);
		for (const [a, b] of limitsRows(r)) process.stdout.write(`| ${a} | ${b.replace(/\|/g, "\\|")} |\n`);
		if (process.argv.includes("--json")) process.stdout.write("\n" + JSON.stringify(r, null, "\t") + "\n");
	}
	finally {
		await emu.stop();
	}
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
	main().then(() => process.exit(0), e => {
		process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
		process.exit(1);
	});
}
