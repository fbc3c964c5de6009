/*
 * `npm run soak -- [--minutes N] [--interval-ms M] [--down-seconds S]`
 *
 * Runs one device (the same src/device code as the firmware, on the Node host) for N minutes against
 * the emulator, started as its own process (`npm run emulator`) and driven through its HTTP API
 * like a user would, with a repeating schedule of faults switched on, then prints the accounting:
 * telemetry handed over, refused (queue full), acknowledged, received, duplicates, lost;
 * reconnects, re-provisionings, DPS requests; and the device process's peak memory. The device
 * starts from a cached assignment (a reboot), so every DPS request counted is a re-provisioning.
 *
 * Not a test: it takes minutes and its figures are for docs/reliability.md. Exit code 1 if a message
 * was lost or one acknowledged was never received.
 */
import {spawn, type ChildProcess} from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import {fileURLToPath} from "node:url";
import {Command, InvalidArgumentError} from "commander";
import {startReference} from "../firmware/reference.js";
import type {DeviceEvent} from "../src/device.js";
import {ProvisioningClient} from "../src/dps.js";
import {createNodeHost, readRoots} from "../hosts/node/host.js";
import {createNodePlatform} from "../hosts/node/platform.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function positive(value: string): number {
	const n = Number(value);
	if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError("expected a positive number.");
	return n;
}

const options = new Command()
	.name("soak")
	.description("Run a device against the emulator with faults on, then print the telemetry and connection accounting")
	.option("--minutes <n>", "how long faults are injected", positive, 10)
	.option("--interval-ms <n>", "telemetry interval (the device's minimum is 1000)", positive, 1000)
	.option("--down-seconds <n>", "how long the hub is down in each cycle", positive, 60)
	.option("--drain-seconds <n>", "after the faults stop, how long to wait for the queue to drain", positive, 180)
	.option("--verbose", "print every device event")
	.parse()
	.opts<{minutes: number; intervalMs: number; downSeconds: number; drainSeconds: number; verbose?: boolean}>();

const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s`;
const say = (line: string) => process.stdout.write(`[${elapsed()}] ${line}\n`);

/* ------------------------------------------------------------------ the emulator, as its own process */

interface Ready {host: string; port: number; idScope: string; caDer: string; api: string}

const emulatorCounts = {refused: 0, serverClosed: 0, tokenExpired: 0};
let emulatorProcess: ChildProcess | undefined;

async function startEmulatorProcess(dataDir: string): Promise<Ready> {
	const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "emulator/cli.ts"), "--port", "0", "--api-port", "0", "--retry-after", "1", "--data-dir", dataDir], {
		cwd: ROOT, stdio: ["ignore", "pipe", "pipe"],
	});
	emulatorProcess = child;
	readline.createInterface({input: child.stderr!}).on("line", line => {
		if (/CONNACK [1-5]/.test(line)) emulatorCounts.refused++;
		if (/closing the connection/.test(line)) emulatorCounts.serverClosed++;
		if (/SAS token expired/.test(line)) emulatorCounts.tokenExpired++;
	});
	return new Promise((resolve, reject) => {
		const lines = readline.createInterface({input: child.stdout!});
		lines.once("line", line => resolve(JSON.parse(line) as Ready));
		child.once("exit", code => reject(new Error(`the emulator exited (code ${code}) before it was ready`)));
	});
}

let apiUrl = "";
async function api<T = unknown>(method: string, route: string, body?: unknown): Promise<T> {
	const res = await fetch(apiUrl + route, {method, headers: {"content-type": "application/json"}, body: body === undefined ? undefined : JSON.stringify(body)});
	const text = await res.text();
	if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
	return (text ? JSON.parse(text) : undefined) as T;
}

/* ------------------------------------------------------------------ the fault schedule */

interface Phase {
	at: number;
	what: string;
	/** Remove every fault first (the emulator clears all at once). Faults with a count stay until used up otherwise. */
	clear?: boolean;
	faults: object[];
	/** Drop the live connection so that connect-time faults apply at once. */
	drop?: boolean;
}

/** One cycle; it repeats for as long as the soak runs. Times in seconds from the cycle's start. */
function cycle(downSeconds: number): {length: number; phases: Phase[]} {
	const d = downSeconds;
	const phases: Phase[] = [
		{at: 0, what: "no faults", clear: true, faults: []},
		{at: 20, what: "connections dropped every 5 s", faults: [{kind: "dropEvery", ms: 5000}], drop: true},
		{at: 80, what: "no faults", clear: true, faults: []},
		{at: 95, what: "throttling: the hub closes on the next 3 publishes", faults: [{kind: "throttle", count: 3}]},
		{at: 115, what: "CONNACK 3 (server unavailable) on the next 3 connects", faults: [{kind: "connack", target: "hub", returnCode: 3, count: 3}], drop: true},
		{at: 140, what: "tokens cut at 8 s (the hub closes as if they expired)", faults: [{kind: "tokenLifetime", seconds: 8}], drop: true},
		{at: 180, what: "PUBACKs withheld (x6) and drops every 4 s: duplicates", clear: true, faults: [{kind: "noPuback", ms: 30_000, count: 6}, {kind: "dropEvery", ms: 4000}], drop: true},
		{at: 215, what: `the hub down for ${d} s`, clear: true, faults: [{kind: "down", ms: d * 1000}]},
		{at: 220 + d, what: "a second connection takes over (the emulator drops all)", faults: [], drop: true},
		{at: 235 + d, what: "CONNACK 5 on the next connect (device moved), DPS 429 x2 (retry-after 2) and a dropped poll", clear: true,
			faults: [{kind: "connack", target: "hub", returnCode: 5, count: 1}, {kind: "dps.status", on: "register", status: 429, retryAfter: 2, count: 2}, {kind: "dps.drop", on: "poll", count: 1}], drop: true},
		{at: 275 + d, what: "twin replies truncated x2", faults: [{kind: "twin.malformed", count: 2}], drop: true},
	];
	return {length: 300 + d, phases};
}

/* ------------------------------------------------------------------ accounting */

const counts = {
	sent: 0, acked: 0, refused: 0, connected: 0, reconnects: 0, disconnects: 0, registering: 0, assigned: 0, dpsFailed: 0,
	dpsRetrying: 0, errors: new Map<string, number>(),
};
const sentAt = new Map<number, number>();
/** Time with a hub connection, and the longest stretch without one (after the first connect). */
const online = {since: undefined as number | undefined, totalMs: 0, offlineSince: undefined as number | undefined, longestOffline: 0};
const ackedSeqs = new Set<number>();
const refusedTimes: number[] = [];
let lastSeq = 0;

function onEvent(e: DeviceEvent): void {
	if (options.verbose) say(JSON.stringify(e));
	switch (e.event) {
	case "telemetry.sent": counts.sent++; lastSeq = Number(e.seq); sentAt.set(lastSeq, Date.now()); break;
	case "telemetry.acked": counts.acked++; ackedSeqs.add(Number(e.seq)); break;
	case "hub.connected":
		counts.connected++;
		if (e.reconnect) counts.reconnects++;
		if (online.since === undefined) online.since = Date.now();
		if (online.offlineSince !== undefined) online.longestOffline = Math.max(online.longestOffline, Date.now() - online.offlineSince);
		online.offlineSince = undefined;
		break;
	case "hub.disconnected":
		counts.disconnects++;
		if (online.since !== undefined) online.totalMs += Date.now() - online.since;
		online.since = undefined;
		online.offlineSince ??= Date.now();
		break;
	case "dps.registering": counts.registering++; break;
	case "dps.assigned": counts.assigned++; break;
	case "dps.failed": counts.dpsFailed++; break;
	case "dps.retrying": counts.dpsRetrying++; break;
	case "error": {
		const code = String(e.code);
		counts.errors.set(code, (counts.errors.get(code) ?? 0) + 1);
		if (code === "queue.full") {
			counts.refused++;
			refusedTimes.push(Date.now());
		}
		break;
	}
	}
}

const memory = {peakRss: 0, peakHeap: 0, startHeap: 0};
function sampleMemory(): void {
	const m = process.memoryUsage();
	memory.peakRss = Math.max(memory.peakRss, m.rss);
	memory.peakHeap = Math.max(memory.peakHeap, m.heapUsed);
}

interface Record {properties: {seq?: string}; systemProperties: {"$.mid"?: string}}

/* ------------------------------------------------------------------ the run */

async function main(): Promise<number> {
	const work = fs.mkdtempSync(path.join(os.tmpdir(), "azure-soak-"));
	const stop = async () => {
		emulatorProcess?.kill("SIGTERM");
		fs.rmSync(work, {recursive: true, force: true});
	};
	process.once("SIGINT", () => void stop().finally(() => process.exit(130)));
	try {
		const ready = await startEmulatorProcess(path.join(work, "emulator"));
		apiUrl = ready.api;
		const roots = readRoots(ready.caDer);
		const registrationId = `soak-${process.pid}`;
		const {symmetricKey} = await api<{symmetricKey: string}>("POST", "/enrollments", {registrationId});
		// A device that was provisioned before: it boots from its cached assignment.
		const result = await new ProvisioningClient({adapter: createNodeHost(), roots, endpoint: ready.host, port: ready.port, idScope: ready.idScope, registrationId, symmetricKey}).register();
		const deviceId = result.deviceId!;
		const storageFile = path.join(work, "prefs.json");
		fs.writeFileSync(storageFile, JSON.stringify({"dps.hub": result.assignedHub, "dps.device": deviceId, "dps.regid": `${ready.idScope}/${registrationId}@${ready.host}`}));
		const dpsBefore = (await api<{devices: {[id: string]: {dpsRegisterRequests: number; dpsPollRequests: number; dpsConnects: number}}}>("GET", "/stats")).devices[registrationId];

		const {length, phases} = cycle(options.downSeconds);
		say(`soak: ${options.minutes} min of faults, telemetry every ${options.intervalMs} ms, fault cycle of ${length} s:`);
		for (const p of phases) say(`  +${String(p.at).padStart(4)} s  ${p.what}`);

		memory.startHeap = process.memoryUsage().heapUsed;
		const sampler = setInterval(sampleMemory, 1000);
		const deviceStarted = Date.now();
		const device = startReference(createNodePlatform({
			roots, emit: onEvent, print: () => {}, storageFile,
			settings: {dpsHost: ready.host, dpsPort: ready.port, idScope: ready.idScope, registrationId, symmetricKey, hubPort: ready.port, intervalMs: options.intervalMs},
		}));

		const end = Date.now() + options.minutes * 60_000;
		let next = 0;
		let cycleStart = Date.now();
		let minute = 0;
		while (Date.now() < end) {
			if (Date.now() - cycleStart >= length * 1000) {
				cycleStart += length * 1000;
				next = 0;
			}
			const phase = phases[next];
			if (phase && Date.now() - cycleStart >= phase.at * 1000) {
				next++;
				if (phase.clear) await api("DELETE", "/faults");
				for (const f of phase.faults) await api("POST", "/faults", f);
				if (phase.drop) await api("POST", "/faults/drop");
				say(`fault: ${phase.what}`);
			}
			const m = Math.floor((Date.now() - started) / 60_000);
			if (m > minute) {
				minute = m;
				say(`progress: sent ${counts.sent}, acked ${counts.acked}, refused ${counts.refused}, reconnects ${counts.reconnects}, re-provisionings ${counts.registering}`);
			}
			await sleep(250);
		}

		// Faults off; every message handed over until now must now be acknowledged or have been refused.
		await api("DELETE", "/faults");
		const faultsEnd = Date.now();
		const connectedMs = online.totalMs + (online.since !== undefined ? faultsEnd - online.since : 0);
		const runMs = faultsEnd - deviceStarted;
		const cutoff = lastSeq;
		const cutoffAt = Date.now();
		say(`faults off at seq ${cutoff}; waiting up to ${options.drainSeconds} s for the queue to drain`);
		const refusedBeforeCutoff = () => refusedTimes.filter(t => t <= cutoffAt).length;
		const drainEnd = Date.now() + options.drainSeconds * 1000;
		let received: Record[] = [];
		for (;;) {
			received = await api<Record[]>("GET", `/devices/${encodeURIComponent(deviceId)}/telemetry`);
			const seqs = new Set(received.map(r => Number(r.properties.seq)).filter(s => s <= cutoff));
			if (seqs.size + refusedBeforeCutoff() >= cutoff || Date.now() > drainEnd) break;
			await sleep(2000);
		}
		clearInterval(sampler);
		sampleMemory();
		device.close();
		const stats = await api<{hubConnects: number; devices: {[id: string]: {dpsRegisterRequests: number; dpsPollRequests: number; dpsConnects: number; hubConnects: number; telemetry: number}}}>("GET", "/stats");

		const inWindow = received.filter(r => Number(r.properties.seq) <= cutoff);
		const uniqueSeqs = new Set(inWindow.map(r => Number(r.properties.seq)));
		const byMid = new Map<string, number>();
		for (const r of inWindow) byMid.set(r.systemProperties["$.mid"] ?? "", (byMid.get(r.systemProperties["$.mid"] ?? "") ?? 0) + 1);
		const duplicates = inWindow.length - byMid.size;
		const refused = refusedBeforeCutoff();
		const missing = cutoff - uniqueSeqs.size;
		const lost = Math.max(0, missing - refused);
		const ackedNotReceived = [...ackedSeqs].filter(s => s <= cutoff && !uniqueSeqs.has(s)).length;
		const dev = stats.devices[registrationId];
		const mb = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MB`;
		const rows: [string, string | number][] = [
			["minutes with faults", options.minutes],
			["telemetry handed over (seq 1..cutoff)", cutoff],
			["  refused at once, queue full (app told)", refused],
			["  accepted", cutoff - refused],
			["acknowledged (PUBACK, telemetry.acked)", [...ackedSeqs].filter(s => s <= cutoff).length],
			["received by the emulator (distinct)", uniqueSeqs.size],
			["received in all (with duplicates)", inWindow.length],
			["duplicates (same $.mid received again)", duplicates],
			["lost (accepted, never received)", lost],
			["acknowledged but not received", ackedNotReceived],
			["hub connections (emulator)", dev.hubConnects],
			["time connected while faults ran", `${Math.round(100 * connectedMs / runMs)} %`],
			["longest time without a connection", `${Math.round(Math.max(online.longestOffline, online.offlineSince !== undefined ? faultsEnd - online.offlineSince : 0) / 1000)} s`],
			["reconnects (device)", counts.reconnects],
			["disconnects reported (device)", counts.disconnects],
			["refused CONNACKs (emulator)", emulatorCounts.refused],
			["connections the emulator closed", emulatorCounts.serverClosed],
			["closed for an expired token", emulatorCounts.tokenExpired],
			["re-provisionings (dps.registering)", counts.registering],
			["DPS register requests", dev.dpsRegisterRequests - (dpsBefore?.dpsRegisterRequests ?? 0)],
			["DPS poll requests", dev.dpsPollRequests - (dpsBefore?.dpsPollRequests ?? 0)],
			["DPS connections", dev.dpsConnects - (dpsBefore?.dpsConnects ?? 0)],
			["errors reported (by code)", [...counts.errors].map(([k, v]) => `${k} ${v}`).join(", ") || "none"],
			["peak RSS of the device process", mb(memory.peakRss)],
			["peak JS heap used", mb(memory.peakHeap)],
			["JS heap used at start / end", `${mb(memory.startHeap)} / ${mb(process.memoryUsage().heapUsed)}`],
		];
		process.stdout.write("\nsoak results\n");
		for (const [name, value] of rows) process.stdout.write(`  ${name.padEnd(44)} ${value}\n`);
		process.stdout.write(JSON.stringify({soak: Object.fromEntries(rows)}) + "\n");
		return lost || ackedNotReceived ? 1 : 0;
	}
	finally {
		await stop();
	}
}

process.exitCode = await main();
