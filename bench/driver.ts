/*
 * Follows one scenario run (bench/fixtures/scenario.ts, in XS or Node) from its events: collects
 * the figures and makes the drops it waits for. A drop is made on the emulator (all connections
 * closed at once, as a broken link or a hub failover would) and timed on the wall clock, which
 * the simulator shares with this process.
 */
import type {BenchEvent} from "./fixtures/scenario.js";
import {sleep, type EmulatorProcess} from "./lib.js";

export interface Reconnect {
	/** Drop to the hub's CONNACK. */
	toConnackMs: number;
	/** Drop to connected and subscribed again. */
	toReadyMs: number;
	/** The delay the client chose before reconnecting (its backoff), if it says. */
	backoffMs?: number;
}

export interface RunResult {
	/** Start to DPS assignment (TLS, CONNECT, register, the retry-after wait, poll). */
	assignedMs?: number;
	/** Start to the hub's CONNACK. */
	hubConnackMs?: number;
	/** Start to subscribed with the twin read. */
	readyMs?: number;
	/** X.509: the device's check of its certificate and key before it registers (src/x509.ts). */
	identityCheckMs?: number;
	perSecond?: number;
	reconnects: Reconnect[];
	dpsRequests?: {register: number; poll: number; connects: number};
	memory: BenchEvent[];
}

/** Idle time before each drop, so that the drop meets a quiet connection (twin read and acks done). */
const SETTLE_MS = 300;

export class Driver {
	readonly result: RunResult = {reconnects: [], memory: []};
	readonly done: Promise<RunResult>;
	#resolve!: (r: RunResult) => void;
	#reject!: (e: Error) => void;
	#emu: EmulatorProcess;
	#dropAt = 0;

	constructor(emu: EmulatorProcess) {
		this.#emu = emu;
		this.done = new Promise((resolve, reject) => {
			this.#resolve = resolve;
			this.#reject = reject;
		});
		this.done.catch(() => {});
	}

	readonly onEvent = (e: BenchEvent): void => {
		const r = this.result;
		switch (e.event) {
		case "bench.assigned":
			r.dpsRequests = e.requests as RunResult["dpsRequests"];
			break;
		case "bench.connected":
			r.assignedMs = e.assignedMs as number;
			r.hubConnackMs = e.hubConnackMs as number;
			r.readyMs = e.readyMs as number;
			r.identityCheckMs = e.identityCheckMs as number | undefined;
			break;
		case "bench.throughput":
			r.perSecond = e.perSecond as number;
			break;
		case "bench.memory":
			r.memory.push(e);
			break;
		case "bench.idle":
			void this.#drop();
			break;
		case "bench.reconnected":
			r.reconnects.push({
				toConnackMs: (e.connackWall as number) - this.#dropAt,
				toReadyMs: (e.wall as number) - this.#dropAt,
				backoffMs: e.backoffMs as number | undefined,
			});
			break;
		case "bench.done":
			this.#resolve(r);
			break;
		case "bench.error":
			this.#reject(new Error(String(e.message)));
			break;
		}
	};

	async #drop(): Promise<void> {
		try {
			await sleep(SETTLE_MS);
			this.#dropAt = Date.now();
			await this.#emu.drop();
		}
		catch (e) {
			this.#reject(e as Error);
		}
	}
}
