/*
 * The page stays bounded with a fleet: whatever the devices send, the server keeps WINDOW messages
 * per device for it, the live streams send each device's row at most once a flush and at most a
 * window of telemetry, a client that stops reading is not written to past MAX_BUFFERED and is
 * closed, and the page itself keeps a window and renders only the rows in view.
 */
import test from "ava";
import * as http from "node:http";
import type {MqttClient} from "mqtt";
import {startEmulator, type Emulator} from "../emulator/index.js";
import {newStats, Registry} from "../emulator/registry.js";
import {DEVICE_TICK_MS, FLEET_TICK_MS, Live, MAX_BUFFERED, type EventSink} from "../emulator/web/live.js";
import {Monitor, Ring, WINDOW} from "../emulator/web/monitor.js";
import type {DeviceMessage, FleetMessage} from "../emulator/web/protocol.js";
import {chromiumAvailable, launchChromium} from "../tools/browser.js";
import {connect, hubCredentials, uniqueId} from "./helpers/emulator-client.js";
import {eventually} from "./helpers/e2e.js";

const DEVICES = 60;
const MESSAGES = 2 * WINDOW + 50;

test("a ring keeps its capacity, oldest out first, and counts what it dropped", t => {
	const ring = new Ring<number>(3);
	for (let i = 1; i <= 10; i++) ring.push(i);
	t.is(ring.size, 3);
	t.deepEqual(ring.toArray(), [8, 9, 10]);
	t.is(ring.dropped, 7);
	ring.clear();
	t.deepEqual(ring.toArray(), []);
});

test("a client that does not read is not written to past MAX_BUFFERED, and is closed once it has stalled", async t => {
	const registry = new Registry();
	const monitor = new Monitor(registry, newStats());
	const live = new Live({monitor, registry, sections: () => ({}), twin: () => undefined, stallMs: 600});
	let written = 0;
	let ended = false;
	const closers: (() => void)[] = [];
	const sink: EventSink = {
		write(chunk) { written += chunk.length; return false; },
		get writableLength() { return MAX_BUFFERED + 1; },
		end() { ended = true; for (const c of closers) c(); },
		once(_event, listener) { closers.push(listener); return this; },
	};
	live.openFleet(sink);
	const preamble = written;
	await new Promise(r => setTimeout(r, FLEET_TICK_MS + 300));
	t.is(written, preamble, "nothing but the retry line while the client's buffer is full");
	await eventually(() => ended, 5000, "the stalled stream to be closed");
	t.deepEqual(live.stats().streams, [], "and forgotten");
	live.close();
});

interface Collected<T> {
	messages: T[];
	bytes: number;
	stop(): void;
}

function collect<T>(url: string): Collected<T> {
	const out: Collected<T> = {messages: [], bytes: 0, stop: () => req.destroy()};
	let buffer = "";
	const req = http.get(url, res => {
		res.setEncoding("utf8");
		res.on("data", (chunk: string) => {
			out.bytes += Buffer.byteLength(chunk);
			buffer += chunk;
			let end: number;
			while ((end = buffer.indexOf("\n\n")) >= 0) {
				const frame = buffer.slice(0, end);
				buffer = buffer.slice(end + 2);
				const data = frame.split("\n").filter(l => l.startsWith("data: ")).map(l => l.slice(6)).join("\n");
				if (data) out.messages.push(JSON.parse(data) as T);
			}
		});
	});
	req.on("error", () => {});
	return out;
}

let emulator: Emulator;
const clients: MqttClient[] = [];
test.before(async () => {
	emulator = await startEmulator({retryAfterSeconds: 1});
});
test.after.always(async () => {
	for (const c of clients) c.end(true);
	await emulator?.close();
});

test.serial(`${DEVICES} devices sending ${MESSAGES} messages each as fast as they can: the windows, the streams and the page stay bounded`, async t => {
	t.timeout(240_000);
	const ids: string[] = [];
	for (let i = 0; i < DEVICES; i++) {
		const deviceId = uniqueId(`fleet-${String(i).padStart(3, "0")}`);
		const {authentication} = emulator.addDevice({deviceId});
		ids.push(deviceId);
		clients.push(await connect(emulator, hubCredentials(emulator, deviceId, (authentication as {symmetricKey: string}).symmetricKey)));
	}
	const watched = ids[0];
	const fleet = collect<FleetMessage>(`${emulator.apiUrl}/ui/events`);
	const device = collect<DeviceMessage>(`${emulator.apiUrl}/ui/events/device/${encodeURIComponent(watched)}`);
	await eventually(() => fleet.messages.length > 0 && device.messages.length > 0, 10_000, "both streams to start");
	const started = Date.now();
	await Promise.all(clients.map(async (client, c) => {
		for (let n = 1; n <= MESSAGES; n++) {
			client.publish(`devices/${ids[c]}/messages/events/`, JSON.stringify({n, temperature: 20 + (n % 10), nested: {level: n % 3}}), {qos: 0});
			if (n % 50 === 0) await new Promise(r => setImmediate(r));
		}
	}));
	await eventually(() => emulator.stats().telemetry >= DEVICES * MESSAGES, 120_000, "every message to reach the hub");
	await new Promise(r => setTimeout(r, FLEET_TICK_MS + 500));
	const elapsed = Date.now() - started;

	const stats = JSON.parse(await new Promise<string>((resolve, reject) => http.get(`${emulator.apiUrl}/ui/api/stats`, res => {
		let s = "";
		res.on("data", c => { s += c; });
		res.on("end", () => resolve(s));
	}).on("error", reject)));
	t.is(stats.monitor.window, WINDOW);
	t.is(stats.monitor.largestWindow, WINDOW, "each device's window is full, and no larger");
	t.true(stats.monitor.records <= (DEVICES + 1) * WINDOW);
	for (const s of stats.live.streams) t.true(s.buffered <= MAX_BUFFERED, "a stream never buffers past its bound");

	const updates = device.messages.filter((m): m is Extract<DeviceMessage, {type: "update"}> => m.type === "update");
	t.true(updates.length <= elapsed / DEVICE_TICK_MS + 3, `${updates.length} device updates in ${elapsed} ms: at most one a flush`);
	for (const u of updates) t.true((u.telemetry?.length ?? 0) <= WINDOW, "an update carries at most a window");
	const last = updates.at(-1)!;
	t.is(last.summary.counts.telemetry, MESSAGES);
	const received = updates.reduce((n, u) => n + (u.telemetry?.length ?? 0) + (u.dropped ?? 0), 0);
	t.is(received, MESSAGES, "every message was sent or counted as skipped");

	const rows = fleet.messages.filter((m): m is Extract<FleetMessage, {type: "devices"}> => m.type === "devices");
	t.true(rows.length <= elapsed / FLEET_TICK_MS + 3, `${rows.length} fleet messages in ${elapsed} ms: at most one a second`);
	for (const m of rows) t.is(new Set(m.changed.map(d => d.deviceId)).size, m.changed.length, "a device's row at most once a message");
	t.true(fleet.bytes < DEVICES * MESSAGES * 40, `the fleet stream sent ${fleet.bytes} bytes for ${DEVICES * MESSAGES} messages`);
	fleet.stop();
	device.stop();

	const check = chromiumAvailable();
	if (!check.ok) {
		t.log(`the page half is skipped: ${check.reason}`);
		return;
	}
	const browser = await launchChromium();
	try {
		const page = await browser.newPage({viewport: {width: 1280, height: 800}});
		await page.goto(`${emulator.pageUrl}#devices/${encodeURIComponent(watched)}`);
		await page.getByTestId("telemetry-row").first().waitFor({timeout: 20_000});
		t.is(await page.getByTestId("telemetry-pane").getAttribute("data-window"), String(WINDOW), "the page keeps a window");
		t.true(await page.getByTestId("telemetry-row").count() <= 50, "and shows the newest of it");
		const rendered = await page.getByTestId("device-row").count();
		t.true(rendered > 0 && rendered < DEVICES, `${rendered} of ${DEVICES} rows are rendered: only those in view`);
		await page.getByTestId("device-list").evaluate(el => { el.scrollTop = el.scrollHeight; });
		await page.locator(`[data-testid=device-row][data-device-id="${ids.at(-1)}"]`).waitFor();
		// More messages to the watched device go into the same window.
		for (let n = 1; n <= 30; n++) clients[0].publish(`devices/${watched}/messages/events/`, JSON.stringify({n: MESSAGES + n}), {qos: 0});
		await page.getByTestId("telemetry-row").filter({hasText: `{"n":${MESSAGES + 30}}`}).waitFor({timeout: 10_000});
		t.is(await page.getByTestId("telemetry-pane").getAttribute("data-window"), String(WINDOW));
	}
	finally {
		await browser.close();
	}
});
