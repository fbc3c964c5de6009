/*
 * npx tsx bench/adu-update.ts [--runs N] [--update BENCHMARKS.md]
 *
 * Device Update on the simulator, measured: (1) the RS256 check of Microsoft's known-answer update
 * signature in XS (test/fixtures/adu-xs: two RSA-3072 verifications with the SDK's SHA-256;
 * simulator CPU time, Time.ticks over 5 checks); (2) a whole update of the firmware as it ships,
 * instrumented (bench/fixtures/manifest-product-memory.json: small heaps that grow in small steps,
 * as the other memory rows), from the deployment to the restart: the wall time of the signature
 * check and decision (update.offered → update.accepted), the download's throughput over plain HTTP
 * from the emulator on the same machine (update.accepted → the last update.download), the hash read
 * back and the install (→ update.rebooting), and the XS peaks over those phases against the ESP32's
 * creation sizes; (3) the same update in the firmware built with the SDK's default ESP32 creation,
 * fixed (bench/fixtures/manifest-product-esp32-default.json: 2048 slots, 32 KB of chunks, 384 stack
 * slots, nothing grows, XS aborts when it runs out): whether it completes is the plain answer to
 * "does it fit". The image is a release simulator build of the firmware (about 2.6 MB).
 * Prints a markdown table; --update replaces the part of FILE between <!-- bench-adu:begin --> and
 * <!-- bench-adu:end --> (appended as a section when absent). Needs the Moddable SDK (says so, exit 2).
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {startEmulator, type Emulator} from "../emulator/index.js";
import {REPO_ROOT, buildFirmware, runFirmware, simulatorAvailable, type Build, type DeviceEvent, type Sdk} from "../tools/sim-runner.js";
import {ESP32_SDK_DEFAULT, SLOT_BYTES_32, SLOT_BYTES_64, largestOf, parseMemory, type PhaseMemory} from "./memory.js";

const BUILD_ROOT = path.join(REPO_ROOT, "build/bench/adu");
const PRODUCT_MEMORY_MANIFEST = path.join(REPO_ROOT, "bench/fixtures/manifest-product-memory.json");
const SDK_DEFAULT_MANIFEST = path.join(REPO_ROOT, "bench/fixtures/manifest-product-esp32-default.json");
const PROJECT_ESP32 = {heapSlots: 6144, chunkBytes: 49152, stackSlots: 1024};
const MANUFACTURER = "Contoso";
const MODEL = "BenchGadget";

function arg(name: string): string | undefined {
	const i = process.argv.indexOf(name);
	return i > 0 ? process.argv[i + 1] : undefined;
}

const runs = Number(arg("--runs") ?? 2);
const updateFile = arg("--update");
const log = (line: string) => process.stderr.write(`bench-adu: ${line}\n`);

type Phase = "verify" | "download" | "hash";
const PHASES: readonly Phase[] = ["verify", "download", "hash"];

interface UpdateRun {
	verifyMs: number;
	downloadBytes: number;
	downloadMs: number;
	hashInstallMs: number;
	memory: PhaseMemory | undefined;
	phases: Partial<Record<Phase, PhaseMemory>>;
	/** The lowest "Chunk used" sample of the download: what stays live across its collections. */
	downloadChunkLow: number;
}

/**
 * The instruments lines by update phase (bench/memory.ts's readings, with the phases of an update):
 * verify from update.offered, download from update.accepted, hash (and install) from the last
 * update.download, to update.rebooting. A line a second: a short phase may have none.
 */
function phaseMemory(lines: readonly string[]): {phases: Partial<Record<Phase, PhaseMemory>>; downloadChunkLow: number} {
	let keys: string[] | undefined;
	let phase: Phase | undefined;
	let downloadChunkLow = Infinity;
	const out: Partial<Record<Phase, PhaseMemory>> = {};
	for (const line of lines) {
		const k = line.indexOf("instruments key: ");
		if (k >= 0) {
			keys = line.slice(k + 17).split(",").map(x => x.trim());
			continue;
		}
		const i = line.indexOf("instruments: ");
		if (i >= 0 && keys && phase) {
			const n = line.slice(i + 13).split(",").map(Number);
			const v: Record<string, number> = {};
			keys.forEach((key, j) => { v[key] = n[j]; });
			const p = out[phase] ??= {slotHeapBytes: 0, chunkHeapBytes: 0, chunkGrownBytes: 0, stackBytes: 0, slotUsedBytes: 0, chunkUsedBytes: 0, garbageCollections: 0, samples: 0};
			p.slotHeapBytes = Math.max(p.slotHeapBytes, v["Slot available"] ?? 0);
			p.chunkGrownBytes = Math.max(p.chunkGrownBytes, v["Chunk available"] ?? 0);
			p.stackBytes = Math.max(p.stackBytes, v["Stack used"] ?? 0);
			p.slotUsedBytes = Math.max(p.slotUsedBytes, v["Slot used"] ?? 0);
			p.chunkUsedBytes = Math.max(p.chunkUsedBytes, v["Chunk used"] ?? 0);
			p.garbageCollections += v["Garbage collections"] ?? 0;
			p.samples++;
			p.chunkHeapBytes = Math.min(p.chunkGrownBytes, p.chunkUsedBytes);
			if (phase === "download" && v["Chunk used"] !== undefined) downloadChunkLow = Math.min(downloadChunkLow, v["Chunk used"]);
			continue;
		}
		if (line.includes('"event":"update.offered"')) phase = "verify";
		else if (line.includes('"event":"update.accepted"')) phase = "download";
		else if (line.includes('"event":"update.download"')) {
			const e = JSON.parse(line.slice(line.indexOf("{\"event\""))) as DeviceEvent;
			if (e.bytes === e.total) phase = "hash";
		}
		else if (line.includes('"event":"update.rebooting"')) phase = undefined;
	}
	return {phases: out, downloadChunkLow};
}

async function katVerifyMs(sdk: Sdk): Promise<number | undefined> {
	const build = await buildFirmware({sdk, buildDir: path.join(BUILD_ROOT, "adu-xs"), manifest: path.join(REPO_ROOT, "test/fixtures/adu-xs/manifest.json")});
	const run = runFirmware({soPath: build.soPath, sdk});
	try {
		const bench = await run.waitFor("bench", {timeoutMs: 120_000});
		return Number(bench.ms);
	}
	finally {
		await run.stop();
	}
}

function settings(emulator: Emulator, version: string): Record<string, string | number> {
	return {
		dpsHost: emulator.host, idScope: emulator.idScope, registrationId: "set-by-preference", symmetricKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		intervalMs: 60_000, firmwareVersion: version, aduManufacturer: MANUFACTURER, aduModel: MODEL, aduRootKey: JSON.stringify(emulator.aduRootKey),
	};
}

async function oneUpdate(sdk: Sdk, emulator: Emulator, instrumented: Build, image: Build, n: number): Promise<UpdateRun> {
	const id = `bench-adu-${process.pid}-${n}`;
	const {symmetricKey} = emulator.addEnrollment({registrationId: id});
	const lines: string[] = [];
	const at = new Map<string, number>();
	let lastDownload = 0;
	let downloadBytes = 0;
	const run = runFirmware({
		sdk, soPath: instrumented.soPath, fresh: true,
		preferences: {registrationId: id, symmetricKey, dpsPort: emulator.port, hubPort: emulator.port},
		onLine: line => {
			lines.push(line);
			const marker = (phase: string) => lines.push(JSON.stringify({event: "bench.phaseEnd", phase}));
			const m = /\{"event":"([^"]+)"/.exec(line);
			if (!m) return;
			if (!at.has(m[1])) at.set(m[1], Date.now());
			if (m[1] === "dps.registering" && !lines.some(l => l.includes('"phase":"boot"'))) marker("boot");
			else if (m[1] === "update.offered") marker("connect");
			else if (m[1] === "update.rebooting") marker("steady");
			else if (m[1] === "update.download") {
				lastDownload = Date.now();
				downloadBytes = Number((JSON.parse(line.slice(line.indexOf("{\"event\""))) as DeviceEvent).bytes);
			}
		},
	});
	try {
		await run.waitFor("hub.connected", {timeoutMs: 120_000});
		await new Promise(r => setTimeout(r, 2000)); // the boot report and the twin read
		const update = emulator.importUpdate({provider: MANUFACTURER, name: MODEL, version: `1.1.${n}`, file: image.soPath, compatibility: {manufacturer: MANUFACTURER, model: MODEL}});
		emulator.deploy({updateId: update.updateId, deviceIds: [id]});
		await run.waitFor("update.rebooting", {timeoutMs: 600_000});
	}
	finally {
		await run.stop();
	}
	if (process.env.BENCH_ADU_LINES) fs.writeFileSync(`${process.env.BENCH_ADU_LINES}.${n}`, lines.join("\n") + "\n");
	const t = (name: string) => at.get(name) ?? NaN;
	const report = parseMemory(lines, {chunkInitial: 4096, heapInitialSlots: 256, stackSlots: 4096});
	return {
		verifyMs: t("update.accepted") - t("update.offered"),
		downloadBytes,
		downloadMs: lastDownload - t("update.accepted"),
		hashInstallMs: t("update.rebooting") - lastDownload,
		memory: report.steady,
		...phaseMemory(lines),
	};
}

/** One update in the fixed SDK-default creation: "fits" when it reaches update.rebooting, else where and how it stopped. */
async function fixedCreationRun(sdk: Sdk, emulator: Emulator, build: Build, image: Build, n: number): Promise<{fits: boolean; detail: string}> {
	const id = `bench-adu-fixed-${process.pid}-${n}`;
	const {symmetricKey} = emulator.addEnrollment({registrationId: id});
	let lastEvent = "the start";
	let slotPeak = 0;
	let keys: string[] = [];
	const run = runFirmware({
		sdk, soPath: build.soPath, fresh: true,
		preferences: {registrationId: id, symmetricKey, dpsPort: emulator.port, hubPort: emulator.port},
		onLine: line => {
			const m = /\{"event":"([^"]+)"/.exec(line);
			if (m && m[1] !== "update.download") lastEvent = m[1];
			if (line.includes("instruments key: ")) keys = line.slice(line.indexOf("instruments key: ") + 17).split(",").map(k => k.trim());
			const at = line.indexOf("instruments: ");
			if (at >= 0) slotPeak = Math.max(slotPeak, Number(line.slice(at + 13).split(",")[keys.indexOf("Slot used")]) || 0);
		},
	});
	try {
		await run.waitFor("hub.connected", {timeoutMs: 120_000});
		await new Promise(r => setTimeout(r, 2000));
		const update = emulator.importUpdate({provider: MANUFACTURER, name: MODEL, version: `1.2.${n}`, file: image.soPath, compatibility: {manufacturer: MANUFACTURER, model: MODEL}});
		emulator.deploy({updateId: update.updateId, deviceIds: [id]});
		await run.waitFor("update.rebooting", {timeoutMs: 600_000});
		return {fits: true, detail: `yes: the whole update ran to update.rebooting without running out (largest "Slot used" sample ${Math.round(slotPeak / SLOT_BYTES_64)} slots, garbage included)`};
	}
	catch (e) {
		const why = run.failure ?? (e as Error).message;
		return {fits: false, detail: `no: ${why.replace(/\s+/g, " ").slice(0, 120)}, after ${lastEvent}`};
	}
	finally {
		await run.stop();
	}
}

function median(values: number[]): number {
	const v = values.filter(Number.isFinite).sort((a, b) => a - b);
	return v.length ? v[Math.floor(v.length / 2)] : NaN;
}

function range(values: number[], unit: string, digits = 0): string {
	const v = values.filter(Number.isFinite);
	return `${median(v).toFixed(digits)} ${unit} (${Math.min(...v).toFixed(digits)}–${Math.max(...v).toFixed(digits)}, n=${v.length})`;
}

function memoryCell(p: PhaseMemory | undefined): string {
	if (!p) return "not measured (no instruments lines)";
	const slots = Math.round(p.slotHeapBytes / SLOT_BYTES_64);
	const stack = Math.round(p.stackBytes / SLOT_BYTES_64);
	const kb = (b: number) => `${(b / 1024).toFixed(1)} KB`;
	return `slot heap ${slots} slots = ${kb(p.slotHeapBytes)} sim, ${kb(slots * SLOT_BYTES_32)} ESP32 (${Math.round(100 * slots / ESP32_SDK_DEFAULT.heapSlots)}% of ${ESP32_SDK_DEFAULT.heapSlots}, ${Math.round(100 * slots / PROJECT_ESP32.heapSlots)}% of this project's ${PROJECT_ESP32.heapSlots}); `
		+ `chunk heap ${kb(p.chunkHeapBytes)} sim (ESP32 ≤ that) (${Math.round(100 * p.chunkHeapBytes / ESP32_SDK_DEFAULT.chunkBytes)}% of ${ESP32_SDK_DEFAULT.chunkBytes}, ${Math.round(100 * p.chunkHeapBytes / PROJECT_ESP32.chunkBytes)}% of ${PROJECT_ESP32.chunkBytes}); `
		+ `stack ${stack} slots (${Math.round(100 * stack / ESP32_SDK_DEFAULT.stackSlots)}% of ${ESP32_SDK_DEFAULT.stackSlots})`
		+ (slots > ESP32_SDK_DEFAULT.heapSlots || p.chunkHeapBytes > ESP32_SDK_DEFAULT.chunkBytes || stack > ESP32_SDK_DEFAULT.stackSlots ? "; over the SDK default" : "; within the SDK default");
}

async function main(): Promise<number> {
	const sim = simulatorAvailable();
	if (!sim.ok) {
		log(`not measured: ${sim.reason}`);
		return 2;
	}
	const started = Date.now();
	const load = os.loadavg().map(l => l.toFixed(2)).join(" ");
	const emulator = await startEmulator({dataDir: path.join(BUILD_ROOT, "emulator"), retryAfterSeconds: 1});
	try {
		log("building the known-answer check, the instrumented firmware 1.0.0 and the image 1.1.0");
		const verifyXs = await katVerifyMs(sim.sdk);
		const instrumented = await buildFirmware({sdk: sim.sdk, manifest: PRODUCT_MEMORY_MANIFEST, variant: "instrument", buildDir: path.join(BUILD_ROOT, "firmware-memory"), roots: [emulator.caDer], settings: settings(emulator, "1.0.0")});
		const image = await buildFirmware({sdk: sim.sdk, buildDir: path.join(BUILD_ROOT, "image"), roots: [emulator.caDer], settings: settings(emulator, "1.1.0")});
		const results: UpdateRun[] = [];
		for (let n = 0; n < runs; n++) {
			log(`update run ${n + 1} of ${runs}`);
			results.push(await oneUpdate(sim.sdk, emulator, instrumented, image, n));
		}
		log("the same update in the SDK's default ESP32 creation, fixed");
		const fixedBuild = await buildFirmware({sdk: sim.sdk, manifest: SDK_DEFAULT_MANIFEST, variant: "instrument", buildDir: path.join(BUILD_ROOT, "firmware-sdk-default"), roots: [emulator.caDer], settings: settings(emulator, "1.0.0")});
		const fixed = await fixedCreationRun(sim.sdk, emulator, fixedBuild, image, 0);
		// When the slot heap is what runs out, the same fixed build with only the heap raised to what the
		// growing build reached tells whether the chunk heap and the stack of the SDK default hold the update.
		const grownSlots = Math.max(...results.map(r => r.memory ? Math.ceil(r.memory.slotHeapBytes / SLOT_BYTES_64 / 64) * 64 : 0));
		let raised: {fits: boolean; detail: string} | undefined;
		if (!fixed.fits && grownSlots > ESP32_SDK_DEFAULT.heapSlots) {
			log(`again with the heap raised to ${grownSlots} slots, chunk and stack as the SDK default`);
			const dir = path.join(BUILD_ROOT, `firmware-sdk-default-heap${grownSlots}`);
			fs.mkdirSync(dir, {recursive: true});
			const manifest = path.join(dir, "raised.json");
			const fixture = JSON.parse(fs.readFileSync(SDK_DEFAULT_MANIFEST, "utf8")) as {include: string[]; creation: {heap: {initial: number}}};
			fixture.include = [path.join(REPO_ROOT, "manifest.json"), "$(MODULES)/base/instrumentation/manifest.json"];
			fixture.creation.heap.initial = grownSlots;
			fs.writeFileSync(manifest, JSON.stringify(fixture, null, "\t"));
			const raisedBuild = await buildFirmware({sdk: sim.sdk, manifest, variant: "instrument", buildDir: path.join(dir, "build"), roots: [emulator.caDer], settings: settings(emulator, "1.0.0")});
			raised = await fixedCreationRun(sim.sdk, emulator, raisedBuild, image, 1);
			raised.detail = `heap ${grownSlots} slots: ${raised.detail}`;
		}
		const size = fs.statSync(image.soPath).size;
		const rows = [
			"| Measure (Device Update, firmware on the simulator) | Figure |",
			"|---|---|",
			`| RS256 check of Microsoft's known-answer signature (2 × RSA-3072, SDK SHA-256), XS, simulator CPU time | ${verifyXs === undefined ? "not measured" : `${verifyXs.toFixed(0)} ms per check (mean of 5)`} |`,
			`| Deployment received → accepted (signature check and decision, the emulator's RSA-3072 chain), wall time, instrumented build | ${range(results.map(r => r.verifyMs), "ms")} |`,
			`| Download throughput, plain HTTP from the emulator on the same machine, into the image file (${(size / 1048576).toFixed(1)} MB), instrumented build; the simulator's socket reads 1 KB every 20 ms at most (modules/network/socket/lin/modSocket.c), so 50 KB/s is its ceiling, not the ESP32's | ${range(results.map(r => r.downloadBytes / 1024 / (r.downloadMs / 1000)), "KB/s")} |`,
			`| Hash read back (SHA-256 of the image as stored, 32 KB a turn) and install | ${range(results.map(r => r.hashInstallMs), "ms")} |`,
			`| XS peak memory from the deployment to the restart (verify, download, hash, install), the firmware as it ships | ${memoryCell(largestOf(results.map(r => r.memory)))} |`,
			...PHASES.filter(ph => results.some(r => r.phases[ph])).map(ph => `| … of which the samples taken ${ph === "verify" ? "during the signature check and decision" : ph === "download" ? "during the download (the first one follows the signature check: the heaps grew there)" : "during the hash read back and the install"} | ${memoryCell(largestOf(results.map(r => r.phases[ph])))} |`),
			`| … chunk heap in use after the download's collections (its lowest sample: what stays live while it streams) | ${range(results.map(r => r.downloadChunkLow / 1024), "KB", 1)} |`,
			`| **Fits the SDK's default ESP32 creation?** The same firmware and update built with it, fixed (heap 2048 slots, chunk 32 KB, stack 384 slots; XS aborts when any runs out; the simulator's chunks are if anything larger than the ESP32's) | ${fixed.detail} |`,
			...(raised ? [`| … the same, fixed, with only the slot heap raised to what the growing build reached (chunk 32 KB and stack 384 slots as the SDK default) | ${raised.detail} |`] : []),
		];
		const text = [
			`Measured ${new Date().toISOString()} in ${Math.round((Date.now() - started) / 1000)} s with \`npx tsx bench/adu-update.ts --runs ${runs}\`; load average before the run ${load}.`,
			"",
			...rows,
		].join("\n");
		console.log(text);
		if (updateFile) {
			const file = path.resolve(updateFile);
			let doc = fs.readFileSync(file, "utf8");
			const begin = "<!-- bench-adu:begin -->", end = "<!-- bench-adu:end -->";
			const block = `${begin}\n${text}\n${end}`;
			if (doc.includes(begin) && doc.includes(end)) doc = doc.slice(0, doc.indexOf(begin)) + block + doc.slice(doc.indexOf(end) + end.length);
			else doc = doc.replace("\n## How it is measured", `\n## Device Update\n\n${block}\n\n## How it is measured`);
			fs.writeFileSync(file, doc);
			log(`updated ${file}`);
		}
		return 0;
	}
	finally {
		await emulator.close();
	}
}

main().then(code => process.exit(code), e => {
	log((e as Error).stack ?? String(e));
	process.exit(1);
});
