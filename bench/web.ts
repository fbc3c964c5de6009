/*
 * `npx tsx bench/web.ts [--devices N] [--seconds S] [--rate R]` (or `npm run bench -- --web N`):
 * the emulator's page with a fleet. N devices (raw MQTT connections in this process, hub
 * identities so no DPS step) each send R messages a second to the emulator (its own process)
 * while Chromium has the page open on one of them. Printed, not asserted: how late the page's
 * timers run (main-thread lag), its long tasks, how long selecting another device and filtering the
 * list take, the page's JS heap and DOM size at the start and the end, the bytes its streams were
 * sent, and the emulator's memory (RSS) and what it keeps for the page.
 */
import {Command, InvalidArgumentError} from "commander";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import mqtt, {type MqttClient} from "mqtt";
import {chromiumAvailable, launchChromium} from "../tools/browser.js";
import {quantile, sleep, startEmulatorProcess, type EmulatorProcess} from "./lib.js";

export interface WebBenchOptions {
	devices: number;
	seconds: number;
	/** Messages per second per device. */
	rate: number;
	log: (line: string) => void;
}

export interface WebBenchResult {
	devices: number;
	connected: number;
	seconds: number;
	rate: number;
	telemetryReceived: number;
	/** How late a 50 ms timer in the page ran: p50, p99, max (ms). */
	lagMs: {p50: number; p99: number; max: number};
	longTasks: {count: number; totalMs: number};
	/** Click on a row until its telemetry shows; median and max over the selections (ms). */
	selectMs: {p50: number; max: number};
	/** Typing a filter until the list shows it (ms). */
	filterMs: number;
	heapMb: {start: number; end: number};
	domNodes: {start: number; end: number};
	renderedRows: number;
	streamBytesPerSecond: number;
	emulatorRssMb: {start: number; end: number};
	keptRecords: number;
	window: number;
}

function sas(resource: string, key: string): string {
	const se = Math.floor(Date.now() / 1000) + 3600;
	const sr = encodeURIComponent(resource);
	const sig = crypto.createHmac("sha256", Buffer.from(key, "base64")).update(`${sr}\n${se}`).digest("base64");
	return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}`;
}

function rssMb(pid: number): number {
	try {
		const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
		return m ? Math.round(Number(m[1]) / 1024) : 0;
	}
	catch {
		return 0;
	}
}

async function api(emu: EmulatorProcess, method: string, p: string, body?: unknown): Promise<any> {
	const response = await fetch(emu.api + p, {method, headers: body === undefined ? undefined : {"content-type": "application/json"}, body: body === undefined ? undefined : JSON.stringify(body)});
	if (response.status >= 300) throw new Error(`${method} ${p}: ${response.status} ${await response.text()}`);
	const text = await response.text();
	return text ? JSON.parse(text) : undefined;
}

function connectDevice(emu: EmulatorProcess, deviceId: string, key: string): Promise<MqttClient> {
	return new Promise((resolve, reject) => {
		const client = mqtt.connect(`mqtts://localhost:${emu.port}`, {
			ca: emu.caPem, servername: "localhost", clientId: deviceId,
			username: `${emu.hubName}/${deviceId}/?api-version=2021-04-12`, password: sas(`${emu.hubName}/devices/${deviceId}`, key),
			protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 30_000, keepalive: 120,
		});
		client.once("connect", () => { client.on("error", () => {}); resolve(client); });
		client.once("error", e => { client.end(true); reject(e); });
	});
}

export async function runWebBench(o: WebBenchOptions): Promise<WebBenchResult> {
	const check = chromiumAvailable();
	if (!check.ok) throw new Error(check.reason);
	// The emulator's PKI cache, shared with the other benchmarks and the tests.
	const emu = await startEmulatorProcess({retryAfterSeconds: 1, polls: 0, hubName: "localhost", dataDir: path.join(os.tmpdir(), "moddable-azure-iot-emulator")});
	const clients: MqttClient[] = [];
	const timers: NodeJS.Timeout[] = [];
	const browser = await launchChromium();
	try {
		const rssStart = rssMb(emu.pid);
		o.log(`web: connecting ${o.devices} devices…`);
		const ids = Array.from({length: o.devices}, (_, i) => `page-bench-${String(i).padStart(5, "0")}`);
		for (let i = 0; i < ids.length; i += 50) {
			const batch = ids.slice(i, i + 50);
			clients.push(...await Promise.all(batch.map(async id => {
				const created = await api(emu, "POST", "/devices", {deviceId: id});
				return connectDevice(emu, id, created.authentication.symmetricKey);
			})));
		}
		o.log(`web: ${clients.length} connected; each sends ${o.rate} message(s)/s`);
		const period = 1000 / o.rate;
		clients.forEach((client, i) => {
			let n = 0;
			const send = () => client.publish(`devices/${ids[i]}/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8`, JSON.stringify({seq: ++n, temperature: 20 + Math.sin(n / 10) * 5, humidity: 40 + (n % 20), battery: {level: 100 - (n % 100) / 10}}), {qos: 0});
			// Spread over the period so the fleet does not send in one burst.
			timers.push(setTimeout(() => timers.push(setInterval(send, period)), (i / clients.length) * period));
		});
		await sleep(3000);

		const page = await browser.newPage({viewport: {width: 1360, height: 860}});
		const cdp = await page.context().newCDPSession(page);
		await cdp.send("Performance.enable");
		const metrics = async () => {
			const {metrics: m} = await cdp.send("Performance.getMetrics");
			const get = (name: string) => m.find(x => x.name === name)?.value ?? 0;
			return {heapMb: Math.round(get("JSHeapUsedSize") / 1024 / 1024 * 10) / 10, nodes: get("Nodes")};
		};
		await page.goto(`${emu.api}/#devices/${ids[0]}`);
		await page.getByTestId("telemetry-row").first().waitFor({timeout: 60_000});
		await page.evaluate(() => {
			const w = globalThis as unknown as {benchLags: number[]; benchLong: {count: number; total: number}};
			w.benchLags = [];
			w.benchLong = {count: 0, total: 0};
			let last = performance.now();
			setInterval(() => {
				const now = performance.now();
				w.benchLags.push(Math.max(0, now - last - 50));
				last = now;
			}, 50);
			try {
				new PerformanceObserver(list => {
					for (const e of list.getEntries()) { w.benchLong.count++; w.benchLong.total += e.duration; }
				}).observe({type: "longtask" as never, buffered: false});
			}
			catch {
				// no long task timing in this browser
			}
		});
		const start = await metrics();
		const statsStart = await api(emu, "GET", "/ui/api/stats");
		const telemetryStart = (await emu.stats()).telemetry;
		const began = Date.now();

		const selects: number[] = [];
		let filterMs = 0;
		const steps = Math.max(3, Math.floor(o.seconds / 5));
		for (let s = 0; s < steps; s++) {
			await sleep(o.seconds * 1000 / (steps + 1));
			const target = ids[Math.floor((s + 1) * ids.length / (steps + 1))];
			const t0 = Date.now();
			await page.goto(`${emu.api}/#devices/${target}`, {waitUntil: "commit"}).catch(() => {});
			await page.locator(`[data-testid=device-detail][data-device-id="${target}"] [data-testid=telemetry-row]`).first().waitFor({timeout: 30_000});
			selects.push(Date.now() - t0);
			if (s === 0) {
				const f0 = Date.now();
				await page.getByTestId("device-filter").fill(ids.at(-1)!);
				await page.locator(`[data-testid=device-row][data-device-id="${ids.at(-1)}"]`).waitFor({timeout: 30_000});
				filterMs = Date.now() - f0;
				await page.getByTestId("device-filter").fill("");
			}
		}
		await sleep(o.seconds * 1000 / (steps + 1));
		const elapsed = (Date.now() - began) / 1000;
		const end = await metrics();
		const page2 = await page.evaluate(() => {
			const w = globalThis as unknown as {benchLags: number[]; benchLong: {count: number; total: number}};
			return {lags: w.benchLags, long: w.benchLong, rows: (globalThis as unknown as {document: {querySelectorAll(s: string): {length: number}}}).document.querySelectorAll("[data-testid=device-row]").length};
		});
		const statsEnd = await api(emu, "GET", "/ui/api/stats");
		const bytes = (s: {live: {streams: {bytes: number}[]}}) => s.live.streams.reduce((n, x) => n + x.bytes, 0);
		const lags = [...page2.lags].sort((a, b) => a - b);
		const sortedSelects = [...selects].sort((a, b) => a - b);
		return {
			devices: o.devices, connected: clients.length, seconds: Math.round(elapsed), rate: o.rate,
			telemetryReceived: (await emu.stats()).telemetry - telemetryStart,
			lagMs: {p50: Math.round(quantile(lags, 0.5)), p99: Math.round(quantile(lags, 0.99)), max: Math.round(lags.at(-1) ?? 0)},
			longTasks: {count: page2.long.count, totalMs: Math.round(page2.long.total)},
			selectMs: {p50: Math.round(quantile(sortedSelects, 0.5)), max: sortedSelects.at(-1) ?? 0},
			filterMs,
			heapMb: {start: start.heapMb, end: end.heapMb},
			domNodes: {start: start.nodes, end: end.nodes},
			renderedRows: page2.rows,
			// Streams reopened on a selection count from zero: the figure is a lower bound then.
			streamBytesPerSecond: Math.round(Math.max(0, bytes(statsEnd) - (statsStart.live.streams.length === statsEnd.live.streams.length ? bytes(statsStart) : 0)) / elapsed),
			emulatorRssMb: {start: rssStart, end: rssMb(emu.pid)},
			keptRecords: statsEnd.monitor.records,
			window: statsEnd.monitor.window,
		};
	}
	finally {
		for (const t of timers) clearInterval(t);
		for (const c of clients) c.end(true);
		await browser.close();
		await emu.stop();
	}
}

export function formatWebBench(r: WebBenchResult): string {
	return [
		`| Emulator page: ${r.devices} devices × ${r.rate} msg/s for ${r.seconds} s, the page open (Chromium) | figure |`,
		"|---|---|",
		`| telemetry the emulator received | ${r.telemetryReceived} (${Math.round(r.telemetryReceived / r.seconds)}/s) |`,
		`| page timer lag (50 ms timer): p50 / p99 / max | ${r.lagMs.p50} / ${r.lagMs.p99} / ${r.lagMs.max} ms |`,
		`| page long tasks (> 50 ms) | ${r.longTasks.count}, ${r.longTasks.totalMs} ms in all |`,
		`| select another device until its telemetry shows: p50 / max | ${r.selectMs.p50} / ${r.selectMs.max} ms |`,
		`| filter the list to one device | ${r.filterMs} ms |`,
		`| page JS heap: start → end | ${r.heapMb.start} → ${r.heapMb.end} MB |`,
		`| page DOM nodes: start → end (device rows rendered at the end) | ${r.domNodes.start} → ${r.domNodes.end} (${r.renderedRows} of ${r.devices}) |`,
		`| live stream bytes to the page | ${Math.round(r.streamBytesPerSecond / 1024)} KB/s |`,
		`| emulator RSS: start → end | ${r.emulatorRssMb.start} → ${r.emulatorRssMb.end} MB |`,
		`| telemetry kept for the page (window ${r.window} per device) | ${r.keptRecords} messages |`,
	].join("\n");
}

function count(value: string): number {
	const n = Number(value);
	if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("a positive number");
	return n;
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) {
	const o = new Command()
		.name("bench/web.ts")
		.option("--devices <n>", "devices sending at once", count, 1000)
		.option("--seconds <s>", "how long the page is watched", count, 30)
		.option("--rate <r>", "messages per second per device", count, 1)
		.parse()
		.opts<{devices: number; seconds: number; rate: number}>();
	runWebBench({...o, log: line => process.stderr.write(`bench: ${line}\n`)}).then(r => {
		process.stdout.write(formatWebBench(r) + "\n");
		process.exit(0);
	}, (e: Error) => {
		process.stderr.write(`bench/web.ts: ${e.stack ?? e.message}\n`);
		process.exit(1);
	});
}
