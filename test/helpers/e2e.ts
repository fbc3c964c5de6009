/*
 * Shared set-up for tests that run the core through the Node host against the emulator.
 */
import {startEmulator, type Emulator, type EmulatorOptions} from "../../emulator/index.js";
import {createNodeHost} from "../../hosts/node/host.js";
import {createNodePlatform} from "../../hosts/node/platform.js";
import type {HostAdapter} from "../../src/host.js";
import type {DeviceEvent} from "../../src/device.js";
import type {SettingName} from "../../src/settings.js";

export interface Rig {
	emulator: Emulator;
	host: HostAdapter;
	roots: Uint8Array[];
}

export async function startRig(options: EmulatorOptions = {}): Promise<Rig> {
	const emulator = await startEmulator({retryAfterSeconds: 1, ...options});
	return {emulator, host: createNodeHost(), roots: [emulator.caDer]};
}

let counter = 0;
/** A registration id unique within the run, so tests sharing an emulator never collide. */
export function uniqueId(prefix: string): string {
	return `${prefix}-${process.pid}-${++counter}`;
}

/** Collects device events and lets a test wait for one. */
export class EventLog {
	readonly events: DeviceEvent[] = [];
	#waiters: {match(e: DeviceEvent): boolean; resolve(e: DeviceEvent): void}[] = [];

	readonly emit = (event: DeviceEvent) => {
		this.events.push(event);
		for (const w of [...this.#waiters]) {
			if (w.match(event)) {
				this.#waiters.splice(this.#waiters.indexOf(w), 1);
				w.resolve(event);
			}
		}
	};

	/** Resolves with the first event (already seen or future) of that name matching `where`. */
	waitFor(name: string, where: (e: DeviceEvent) => boolean = () => true, timeoutMs = 30_000): Promise<DeviceEvent> {
		const match = (e: DeviceEvent) => e.event === name && where(e);
		const seen = this.events.find(match);
		if (seen) return Promise.resolve(seen);
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => reject(new Error(`no ${name} event within ${timeoutMs} ms; saw: ${this.events.map(e => e.event).join(", ")}`)), timeoutMs);
			this.#waiters.push({match, resolve: e => { clearTimeout(timer); resolve(e); }});
		});
	}

	count(name: string): number {
		return this.events.filter(e => e.event === name).length;
	}
}

export function nodePlatform(rig: Rig, log: EventLog, storageFile?: string, lines: string[] = [], settings: Partial<Record<SettingName, unknown>> = {}) {
	return createNodePlatform({roots: rig.roots, emit: log.emit, print: line => lines.push(line), storageFile, settings});
}

/** Polls until `check` returns a value that is not undefined/false. */
export async function eventually<T>(check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000, what = "condition"): Promise<T> {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const value = await check();
		if (value !== undefined && value !== false) return value as T;
		if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
		await new Promise(r => setTimeout(r, 50));
	}
}
