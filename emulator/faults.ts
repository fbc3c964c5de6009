/*
 * Injected faults: the failures a device meets on the real service, on demand. Those of kind
 * `send.*` are not armed but sent at once: what a hostile hub sends (emulator/hostile.ts).
 */
import {HOSTILE_KINDS, type HostileFault, type HostileKind, validateHostile} from "./hostile.js";

export type DpsOperation = "register" | "poll";

interface FaultBase {
	/** How many times the fault fires; unlimited when omitted. */
	count?: number;
	registrationId?: string;
	deviceId?: string;
}

export type Fault = FaultBase & (
	| {kind: "dps.status"; on: DpsOperation; status: number; retryAfter?: number}
	| {kind: "dps.malformed"; on: DpsOperation}
	| {kind: "dps.delay"; on: DpsOperation; ms: number}
	| {kind: "dps.drop"; on: DpsOperation}
	| {kind: "dps.failed"}
	/** Answer register requests beyond `perSecond` in any 1 s window with 429 and retry-after (DPS's registration quota). */
	| {kind: "dps.throttle"; perSecond: number; retryAfter?: number}
	| {kind: "connack"; target: "hub" | "dps"; returnCode: 3 | 4 | 5}
	| {kind: "dropEvery"; ms: number}
	| {kind: "down"; ms: number}
	| {kind: "tokenLifetime"; seconds: number}
	| {kind: "twin.malformed"}
	| {kind: "twin.status"; status: number}
	| {kind: "throttle"}
	| {kind: "noPuback"; ms?: number}
	/** Device Update file downloads (emulator/adu/files.ts); `fileId` narrows them to one file. */
	| {kind: "download.drop"; afterBytes: number; fileId?: string}
	| {kind: "download.corrupt"; offset: number; fileId?: string}
	| {kind: "download.slow"; bytesPerSecond: number; fileId?: string}
);

export type FaultKind = Fault["kind"];

/** What POST /faults takes: a fault to arm, or a hostile send. */
export type AnyFault = Fault | HostileFault;

export function isHostile(fault: AnyFault): fault is HostileFault {
	return HOSTILE_KINDS.includes(fault.kind as HostileKind);
}

type Of<K extends FaultKind> = Extract<Fault, {kind: K}>;

const KINDS: readonly FaultKind[] = ["dps.status", "dps.malformed", "dps.delay", "dps.drop", "dps.failed", "dps.throttle", "connack", "dropEvery", "down", "tokenLifetime", "twin.malformed", "twin.status", "throttle", "noPuback", "download.drop", "download.corrupt", "download.slow"];

function fail(message: string): never {
	throw new Error(`Invalid fault: ${message}`);
}

function nonNegative(value: unknown, name: string, optional = false): void {
	if (value === undefined && optional) return;
	if (typeof value !== "number" || !Number.isFinite(value) || value < 0) fail(`"${name}" must be a non-negative number`);
}

function integerAtLeast(value: unknown, name: string, min: number): void {
	if (typeof value !== "number" || !Number.isInteger(value) || value < min) fail(`"${name}" must be an integer of at least ${min}`);
}

/** Checks a fault given as JSON (HTTP API) or by code; throws with a message naming the field. */
export function validateFault(input: unknown): AnyFault {
	if (typeof input !== "object" || input === null || Array.isArray(input)) fail("expected a JSON object with a \"kind\"");
	const f = input as Record<string, unknown>;
	if (HOSTILE_KINDS.includes(f.kind as HostileKind)) return validateHostile(f);
	if (!KINDS.includes(f.kind as FaultKind)) fail(`unknown kind ${JSON.stringify(f.kind)}; kinds: ${[...KINDS, ...HOSTILE_KINDS].join(", ")}`);
	nonNegative(f.count, "count", true);
	if (f.registrationId !== undefined && typeof f.registrationId !== "string") fail("\"registrationId\" must be a string");
	if (f.deviceId !== undefined && typeof f.deviceId !== "string") fail("\"deviceId\" must be a string");
	const needOn = () => {
		if (f.on !== "register" && f.on !== "poll") fail(`"${String(f.kind)}" needs "on": "register" or "poll"`);
	};
	switch (f.kind) {
	case "dps.status":
		needOn();
		if (typeof f.status !== "number" || !Number.isInteger(f.status) || f.status < 100 || f.status > 599) fail("\"status\" must be an HTTP status code");
		nonNegative(f.retryAfter, "retryAfter", true);
		break;
	case "dps.malformed": case "dps.drop":
		needOn();
		break;
	case "dps.delay":
		needOn();
		nonNegative(f.ms, "ms");
		break;
	case "dps.throttle":
		if (typeof f.perSecond !== "number" || !Number.isInteger(f.perSecond) || f.perSecond < 1) fail("\"perSecond\" must be an integer of at least 1");
		nonNegative(f.retryAfter, "retryAfter", true);
		break;
	case "connack":
		if (f.target !== "hub" && f.target !== "dps") fail("\"target\" must be \"hub\" or \"dps\"");
		if (f.returnCode !== 3 && f.returnCode !== 4 && f.returnCode !== 5) fail("\"returnCode\" must be 3, 4 or 5");
		break;
	case "dropEvery": case "down":
		nonNegative(f.ms, "ms");
		break;
	case "tokenLifetime":
		nonNegative(f.seconds, "seconds");
		break;
	case "twin.status":
		if (typeof f.status !== "number" || !Number.isInteger(f.status) || f.status < 400 || f.status > 599) fail("\"status\" must be an HTTP error status (4xx/5xx)");
		break;
	case "noPuback":
		nonNegative(f.ms, "ms", true);
		break;
	case "download.drop": case "download.corrupt": case "download.slow":
		if (f.kind === "download.drop") integerAtLeast(f.afterBytes, "afterBytes", 0);
		else if (f.kind === "download.corrupt") integerAtLeast(f.offset, "offset", 0);
		else integerAtLeast(f.bytesPerSecond, "bytesPerSecond", 1);
		if (f.fileId !== undefined && typeof f.fileId !== "string") fail("\"fileId\" must be a string");
		break;
	default:
		break;
	}
	return {...f} as unknown as Fault;
}

interface Entry {
	id: number;
	fault: Fault;
	remaining: number;
	addedAt: number;
}

/** An active fault with the id that switches it off, and the firings it has left (null: unlimited). */
export interface FaultEntry {
	id: number;
	fault: Fault;
	remaining: number | null;
	addedAt: string;
}

export interface FaultTarget {
	registrationId?: string;
	deviceId?: string;
}

export class FaultSet {
	#entries: Entry[] = [];
	#nextId = 1;
	#onChange: () => void;

	constructor(onChange: () => void = () => {}) {
		this.#onChange = onChange;
	}

	add(fault: Fault): number {
		const id = this.#nextId++;
		this.#entries.push({id, fault, remaining: fault.count ?? Infinity, addedAt: Date.now()});
		this.#onChange();
		return id;
	}

	clear(): void {
		this.#entries = [];
		this.#onChange();
	}

	#matches(entry: Entry, target: FaultTarget): boolean {
		const f = entry.fault;
		if (f.registrationId !== undefined && f.registrationId !== target.registrationId) return false;
		if (f.deviceId !== undefined && f.deviceId !== target.deviceId) return false;
		return entry.remaining > 0;
	}

	/** Finds an active fault of `kind` passing `accept`, consuming one of its firings. */
	take<K extends FaultKind>(kind: K, target: FaultTarget = {}, accept: (f: Of<K>) => boolean = () => true): Of<K> | undefined {
		for (const entry of this.#entries) {
			if (entry.fault.kind !== kind || !this.#matches(entry, target) || !accept(entry.fault as Of<K>)) continue;
			entry.remaining--;
			if (entry.remaining <= 0) {
				this.#entries = this.#entries.filter(e => e !== entry);
				this.#onChange();
			}
			return entry.fault as Of<K>;
		}
		return undefined;
	}

	/** Whether a fault is active, without consuming it. */
	peek<K extends FaultKind>(kind: K, target: FaultTarget = {}, accept: (f: Of<K>) => boolean = () => true): Of<K> | undefined {
		const entry = this.#entries.find(e => e.fault.kind === kind && this.#matches(e, target) && accept(e.fault as Of<K>));
		return entry?.fault as Of<K> | undefined;
	}

	list(): Fault[] {
		return this.#entries.map(e => ({...e.fault}));
	}

	entries(): FaultEntry[] {
		return this.#entries.map(e => ({id: e.id, fault: {...e.fault}, remaining: Number.isFinite(e.remaining) ? e.remaining : null, addedAt: new Date(e.addedAt).toISOString()}));
	}

	/** Switches one fault off by its id; false when there is none (it fired its count, or was cleared). */
	removeId(id: number): boolean {
		const before = this.#entries.length;
		this.#entries = this.#entries.filter(e => e.id !== id);
		if (this.#entries.length === before) return false;
		this.#onChange();
		return true;
	}

	remove(fault: Fault): void {
		const before = this.#entries.length;
		this.#entries = this.#entries.filter(e => e.fault !== fault);
		if (this.#entries.length !== before) this.#onChange();
	}
}
