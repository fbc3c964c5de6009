/*
 * The page's live updates as server-sent events, batched so that a fleet cannot flood a browser:
 * a device stream (the watched device's new telemetry, twin and row) is flushed at most every
 * DEVICE_TICK_MS, the fleet stream (changed rows, each at most once, and the admin sections) every
 * FLEET_TICK_MS. What waits between flushes is coalesced (a row is a flag, telemetry a ring of
 * WINDOW), and a client that does not read is not written to past MAX_BUFFERED: its changes keep
 * coalescing and it is closed after STALL_MS (EventSource reconnects and gets a fresh snapshot).
 */
import type {Registry, TelemetryRecord} from "../registry.js";
import {type Monitor, type MonitorWatcher, Ring, WINDOW} from "./monitor.js";
import type {DeviceSummary, FleetFigures} from "./protocol.js";

export const DEVICE_TICK_MS = 250;
export const FLEET_TICK_MS = 1000;
export const MAX_BUFFERED = 1024 * 1024;
export const STALL_MS = 30_000;
const PING_MS = 15_000;
const PRUNE_MS = 10_000;

/** The part of http.ServerResponse a stream writes to. */
export interface EventSink {
	write(chunk: string): boolean;
	readonly writableLength: number;
	end(): void;
	once(event: "close", listener: () => void): unknown;
}

/** The admin sections of the page (enrollments, faults, updates, deployments), as JSON values. */
export type SectionSource = () => Record<string, unknown>;


abstract class Stream {
	readonly sink: EventSink;
	closed = false;
	stalledSince?: number;
	/** Events written and their bytes (for the stats). */
	sent = 0;
	bytes = 0;
	#onClose: () => void;
	readonly #stallMs: number;

	constructor(sink: EventSink, onClose: () => void, stallMs: number) {
		this.sink = sink;
		this.#onClose = onClose;
		this.#stallMs = stallMs;
		sink.once("close", () => this.close());
		this.#raw("retry: 2000\n\n");
	}

	#raw(text: string): void {
		this.bytes += Buffer.byteLength(text);
		this.sink.write(text);
	}

	/** Whether the client has read enough to be written to; closes one stalled too long. */
	writable(now: number): boolean {
		if (this.closed) return false;
		if (this.sink.writableLength <= MAX_BUFFERED) {
			this.stalledSince = undefined;
			return true;
		}
		this.stalledSince ??= now;
		if (now - this.stalledSince > this.#stallMs) this.close();
		return false;
	}

	send(message: unknown): void {
		this.sent++;
		this.#raw(`data: ${JSON.stringify(message)}\n\n`);
	}

	ping(): void {
		if (!this.closed && this.sink.writableLength <= MAX_BUFFERED) this.#raw(": ping\n\n");
	}

	close(): void {
		if (this.closed) return;
		this.closed = true;
		this.#onClose();
		try {
			this.sink.end();
		}
		catch {
			// already gone
		}
	}

	abstract flush(now: number): void;
}

class FleetStream extends Stream implements MonitorWatcher {
	readonly #live: Live;
	readonly #dirty = new Set<string>();
	#known = new Set<string>();
	#sectionVersions = new Map<string, number>();
	#started = false;

	constructor(live: Live, sink: EventSink, onClose: () => void) {
		super(sink, onClose, live.stallMs);
		this.#live = live;
	}

	changed(deviceId: string): void {
		this.#dirty.add(deviceId);
	}

	flush(now: number): void {
		if (!this.writable(now)) return;
		const live = this.#live;
		const registry = live.registry;
		if (!this.#started) {
			this.#started = true;
			this.#dirty.clear();
			const devices = [...registry.devices.values()].map(d => live.monitor.summary(d));
			this.#known = new Set(devices.map(d => d.deviceId));
			const sections = live.sections();
			for (const [name, {version}] of sections) this.#sectionVersions.set(name, version);
			this.send({type: "hello", fleet: live.fleet(), devices, sections: Object.fromEntries([...sections].map(([k, v]) => [k, v.value]))});
			return;
		}
		const changed: DeviceSummary[] = [];
		for (const device of registry.devices.values()) {
			if (!this.#known.has(device.deviceId)) {
				this.#known.add(device.deviceId);
				changed.push(live.monitor.summary(device));
			}
			else if (this.#dirty.has(device.deviceId)) changed.push(live.monitor.summary(device));
		}
		this.#dirty.clear();
		const removed: string[] = [];
		if (this.#known.size > registry.devices.size) {
			for (const id of this.#known) if (!registry.devices.has(id)) removed.push(id);
			for (const id of removed) this.#known.delete(id);
		}
		const sections: Record<string, unknown> = {};
		let anySection = false;
		for (const [name, {version, value}] of live.sections()) {
			if (this.#sectionVersions.get(name) === version) continue;
			this.#sectionVersions.set(name, version);
			sections[name] = value;
			anySection = true;
		}
		this.send({type: "devices", fleet: live.fleet(), changed, removed, ...(anySection ? {sections} : {})});
	}
}

class DeviceStream extends Stream implements MonitorWatcher {
	readonly #live: Live;
	readonly deviceId: string;
	readonly #pending = new Ring<TelemetryRecord>(WINDOW);
	#rowChanged = false;
	#twinChanged = false;
	#started = false;
	#present = false;

	constructor(live: Live, deviceId: string, sink: EventSink, onClose: () => void) {
		super(sink, onClose, live.stallMs);
		this.#live = live;
		this.deviceId = deviceId;
	}

	changed(): void {
		this.#rowChanged = true;
	}

	telemetry(_deviceId: string, record: TelemetryRecord): void {
		this.#pending.push(record);
	}

	twin(): void {
		this.#twinChanged = true;
	}

	flush(now: number): void {
		if (!this.writable(now)) return;
		const live = this.#live;
		const device = live.registry.devices.get(this.deviceId);
		if (!device) {
			if (this.#present || !this.#started) this.send({type: "missing", deviceId: this.deviceId});
			this.#started = true;
			this.#present = false;
			this.#pending.clear();
			return;
		}
		if (!this.#started || !this.#present) {
			this.#started = true;
			this.#present = true;
			this.#pending.clear();
			this.#rowChanged = this.#twinChanged = false;
			this.send({type: "snapshot", summary: live.monitor.summary(device), telemetry: live.monitor.window(this.deviceId), twin: live.twin(this.deviceId)});
			return;
		}
		if (!this.#rowChanged && !this.#twinChanged && !this.#pending.size) return;
		const dropped = this.#pending.dropped;
		const telemetry = this.#pending.toArray().map(r => live.monitor.web(r));
		this.#pending.clear();
		const message = {
			type: "update",
			summary: live.monitor.summary(device),
			...(telemetry.length ? {telemetry} : {}),
			...(dropped ? {dropped} : {}),
			...(this.#twinChanged ? {twin: live.twin(this.deviceId)} : {}),
		};
		this.#rowChanged = this.#twinChanged = false;
		this.send(message);
	}
}

export interface LiveOptions {
	monitor: Monitor;
	registry: Registry;
	sections: SectionSource;
	twin(deviceId: string): unknown;
	/** How long a client may not read before it is closed; default STALL_MS. */
	stallMs?: number;
}

/** Every open stream and the one timer that flushes them (running only while a stream is open). */
export class Live {
	readonly monitor: Monitor;
	readonly registry: Registry;
	readonly #sectionSource: SectionSource;
	readonly twin: (deviceId: string) => unknown;
	readonly stallMs: number;
	readonly #streams = new Set<Stream>();
	#timer?: NodeJS.Timeout;
	#tick = 0;
	#lastPing = 0;
	#lastPrune = 0;
	#sections = new Map<string, {version: number; json: string; value: unknown}>();
	#sectionsAt = -Infinity;
	#rate = {at: Date.now(), count: 0, perSecond: 0};

	constructor(options: LiveOptions) {
		this.monitor = options.monitor;
		this.registry = options.registry;
		this.#sectionSource = options.sections;
		this.twin = options.twin;
		this.stallMs = options.stallMs ?? STALL_MS;
	}

	/** The fleet: every device's row and the admin sections. */
	openFleet(sink: EventSink): void {
		let unwatch = () => {};
		const stream = new FleetStream(this, sink, () => this.#closed(stream, unwatch));
		unwatch = this.monitor.watch(stream);
		this.#opened(stream);
	}

	/** One device: its telemetry window, then each new message, its twin and its row. */
	openDevice(deviceId: string, sink: EventSink): void {
		let unwatch = () => {};
		const stream = new DeviceStream(this, deviceId, sink, () => this.#closed(stream, unwatch));
		unwatch = this.monitor.watch(stream, deviceId);
		this.#opened(stream);
	}

	#opened(stream: Stream): void {
		this.#streams.add(stream);
		// The first flush (the snapshot) goes out at once rather than at the next tick.
		setImmediate(() => stream.flush(Date.now()));
		this.#timer ??= setInterval(() => this.#run(), DEVICE_TICK_MS);
	}

	#closed(stream: Stream, unwatch: () => void): void {
		unwatch();
		this.#streams.delete(stream);
		if (!this.#streams.size && this.#timer) {
			clearInterval(this.#timer);
			this.#timer = undefined;
		}
	}

	#run(): void {
		const now = Date.now();
		this.#tick++;
		const fleetTick = this.#tick % Math.round(FLEET_TICK_MS / DEVICE_TICK_MS) === 0;
		for (const stream of [...this.#streams]) {
			if (stream instanceof DeviceStream || fleetTick) stream.flush(now);
		}
		if (now - this.#lastPing > PING_MS) {
			this.#lastPing = now;
			for (const stream of this.#streams) stream.ping();
		}
		if (now - this.#lastPrune > PRUNE_MS) {
			this.#lastPrune = now;
			this.monitor.prune();
		}
	}

	/** The sections with a version that changes when their JSON does (computed at most once a tick of the fleet). */
	sections(): Map<string, {version: number; value: unknown}> {
		const now = Date.now();
		if (now - this.#sectionsAt >= FLEET_TICK_MS / 2) {
			this.#sectionsAt = now;
			for (const [name, value] of Object.entries(this.#sectionSource())) {
				const json = JSON.stringify(value);
				const old = this.#sections.get(name);
				if (old?.json === json) continue;
				this.#sections.set(name, {version: (old?.version ?? 0) + 1, json, value});
			}
		}
		return this.#sections;
	}

	fleet(): FleetFigures {
		const now = Date.now();
		const rate = this.#rate;
		if (now - rate.at >= FLEET_TICK_MS / 2) {
			rate.perSecond = Math.round((this.monitor.telemetryCount - rate.count) * 1000 / (now - rate.at) * 10) / 10;
			rate.at = now;
			rate.count = this.monitor.telemetryCount;
		}
		let connected = 0;
		for (const d of this.registry.devices.values()) if (d.session && !d.session.closed) connected++;
		return {devices: this.registry.devices.size, connected, telemetryPerSecond: rate.perSecond};
	}

	stats(): {streams: {kind: "fleet" | "device"; deviceId?: string; buffered: number; sent: number; bytes: number}[]; maxBuffered: number} {
		return {
			streams: [...this.#streams].map(s => ({
				kind: s instanceof DeviceStream ? "device" as const : "fleet" as const,
				...(s instanceof DeviceStream ? {deviceId: s.deviceId} : {}),
				buffered: s.sink.writableLength, sent: s.sent, bytes: s.bytes,
			})),
			maxBuffered: MAX_BUFFERED,
		};
	}

	close(): void {
		for (const stream of [...this.#streams]) stream.close();
	}
}
