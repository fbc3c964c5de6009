/*
 * What the emulator's page shows of each device, kept small: the last WINDOW telemetry messages
 * (a ring, whatever the device sends), when it was last heard from, and who is watching it. Fed by
 * the hub's events (emulator/hub.ts onEvent); the live streams (./live.ts) read from it.
 */
import type {HubEvent} from "../hub.js";
import type {HubDevice, Registry, Stats, TelemetryRecord} from "../registry.js";
import {registrationKey} from "../registry.js";
import type {DeviceSummary, EnrollmentKind, WebRecord} from "./protocol.js";

export type {DeviceSummary, EnrollmentKind, WebRecord};

/** Telemetry messages kept per device for the page (server side; the page keeps as many). */
export const WINDOW = 200;
/** Characters of a message body the page is sent; the rest is cut and counted. */
export const BODY_SHOWN = 2048;
/** Numeric fields charted per message at most. */
export const MAX_FIELDS = 16;
const FIELD_DEPTH = 3;
const PARSE_LIMIT = 64 * 1024;

/** A fixed-capacity ring: pushing past capacity drops the oldest. */
export class Ring<T> {
	readonly capacity: number;
	#items: T[] = [];
	#start = 0;
	#dropped = 0;

	constructor(capacity: number) {
		this.capacity = capacity;
	}

	push(item: T): void {
		if (this.#items.length < this.capacity) {
			this.#items.push(item);
			return;
		}
		this.#items[this.#start] = item;
		this.#start = (this.#start + 1) % this.capacity;
		this.#dropped++;
	}

	get size(): number {
		return this.#items.length;
	}

	/** How many were pushed out since the last clear(). */
	get dropped(): number {
		return this.#dropped;
	}

	toArray(): T[] {
		return [...this.#items.slice(this.#start), ...this.#items.slice(0, this.#start)];
	}

	clear(): void {
		this.#items = [];
		this.#start = 0;
		this.#dropped = 0;
	}
}

/** What the live streams are told. */
export interface MonitorWatcher {
	/** The device's row changed. */
	changed(deviceId: string): void;
	/** Only for the watchers of that device: a telemetry message, or its twin changed. */
	telemetry?(deviceId: string, record: TelemetryRecord): void;
	twin?(deviceId: string): void;
}

interface Track {
	window: Ring<TelemetryRecord>;
	lastActivity?: number;
}

function numericFields(body: string): Record<string, number> {
	const fields: Record<string, number> = {};
	if (body.length > PARSE_LIMIT || !/^\s*\{/.test(body)) return fields;
	let value: unknown;
	try {
		value = JSON.parse(body);
	}
	catch {
		return fields;
	}
	let count = 0;
	const walk = (v: unknown, prefix: string, depth: number) => {
		if (typeof v !== "object" || v === null || Array.isArray(v)) return;
		for (const [k, x] of Object.entries(v)) {
			if (count >= MAX_FIELDS) return;
			const name = prefix ? `${prefix}.${k}` : k;
			if (typeof x === "number" && Number.isFinite(x)) {
				fields[name] = x;
				count++;
			}
			else if (depth < FIELD_DEPTH) walk(x, name, depth + 1);
		}
	};
	walk(value, "", 1);
	return fields;
}

export class Monitor {
	readonly #registry: Registry;
	readonly #stats: Stats;
	readonly #tracks = new Map<string, Track>();
	readonly #watchers = new Set<MonitorWatcher>();
	readonly #deviceWatchers = new Map<string, Set<MonitorWatcher>>();
	readonly #converted = new WeakMap<TelemetryRecord, WebRecord>();
	/** Telemetry messages seen, all devices (for the rate the page shows). */
	telemetryCount = 0;

	constructor(registry: Registry, stats: Stats) {
		this.#registry = registry;
		this.#stats = stats;
	}

	#track(deviceId: string): Track {
		let track = this.#tracks.get(deviceId);
		if (!track) {
			track = {window: new Ring(WINDOW)};
			this.#tracks.set(deviceId, track);
		}
		return track;
	}

	observe(event: HubEvent): void {
		const track = this.#track(event.deviceId);
		const watchers = this.#deviceWatchers.get(event.deviceId);
		if (event.type === "telemetry") {
			track.window.push(event.record);
			track.lastActivity = Date.now();
			this.telemetryCount++;
			if (watchers) for (const w of watchers) w.telemetry?.(event.deviceId, event.record);
		}
		else {
			if (event.fromDevice) track.lastActivity = Date.now();
			if (watchers && (event.type === "reported" || event.type === "desired" || event.type === "connected")) for (const w of watchers) w.twin?.(event.deviceId);
		}
		for (const w of this.#watchers) w.changed(event.deviceId);
		if (watchers) for (const w of watchers) if (!this.#watchers.has(w)) w.changed(event.deviceId);
	}

	/** Watches every device's row; `deviceId`: only that device's rows, telemetry and twin. */
	watch(watcher: MonitorWatcher, deviceId?: string): () => void {
		if (deviceId === undefined) {
			this.#watchers.add(watcher);
			return () => this.#watchers.delete(watcher);
		}
		let set = this.#deviceWatchers.get(deviceId);
		if (!set) {
			set = new Set();
			this.#deviceWatchers.set(deviceId, set);
		}
		set.add(watcher);
		return () => {
			set.delete(watcher);
			if (!set.size) this.#deviceWatchers.delete(deviceId);
		};
	}

	web(record: TelemetryRecord): WebRecord {
		let web = this.#converted.get(record);
		if (!web) {
			const cut = record.body.length > BODY_SHOWN;
			web = {
				time: record.time,
				body: cut ? record.body.slice(0, BODY_SHOWN) : record.body,
				...(cut ? {bodyLength: record.body.length} : {}),
				properties: record.properties,
				systemProperties: record.systemProperties,
				fields: numericFields(record.body),
			};
			this.#converted.set(record, web);
		}
		return web;
	}

	/** The device's window, oldest first. */
	window(deviceId: string): WebRecord[] {
		return (this.#tracks.get(deviceId)?.window.toArray() ?? []).map(r => this.web(r));
	}

	summary(device: HubDevice): DeviceSummary {
		const record = this.#registry.registrations.get(registrationKey(device.registrationId));
		const enrollment: EnrollmentKind = !record ? {kind: "hub"}
			: record.enrollment.kind === "group" ? {kind: "group", groupId: record.enrollment.groupId} : {kind: "individual"};
		const s = this.#stats.devices[device.deviceId];
		const lastActivity = this.#tracks.get(device.deviceId)?.lastActivity;
		return {
			deviceId: device.deviceId,
			registrationId: device.registrationId,
			connected: !!device.session && !device.session.closed,
			...(device.modelId !== undefined ? {modelId: device.modelId} : {}),
			authentication: device.authentication.type,
			enrollment,
			registeredAt: device.registeredAt,
			...(lastActivity !== undefined ? {lastActivity: new Date(lastActivity).toISOString()} : {}),
			connectCount: device.connectCount,
			c2dQueue: device.c2d.length,
			counts: {
				telemetry: s?.telemetry ?? 0, twinGets: s?.twinGets ?? 0, twinPatches: s?.twinPatches ?? 0,
				c2dDelivered: s?.c2dDelivered ?? 0, c2dCompleted: s?.c2dCompleted ?? 0, methodCalls: s?.methodCalls ?? 0,
			},
		};
	}

	/** Forgets the devices no longer registered (their windows with them). */
	prune(): void {
		for (const id of this.#tracks.keys()) if (!this.#registry.devices.has(id)) this.#tracks.delete(id);
	}

	/** How much is kept: for the boundedness test and the benchmark. */
	sizes(): {devices: number; records: number; largestWindow: number; window: number} {
		let records = 0, largest = 0;
		for (const t of this.#tracks.values()) {
			records += t.window.size;
			largest = Math.max(largest, t.window.size);
		}
		return {devices: this.#tracks.size, records, largestWindow: largest, window: WINDOW};
	}
}
