/*
 * XS memory from the instrumented benchmark firmware (bench/fixtures/manifest-memory.json, built
 * with mcconfig -i). Its heaps start small and grow in small steps, and XS collects garbage before
 * it grows one, so the size a heap has grown to is the most that was live at once, to within a
 * step: that is the figure a device's fixed creation sizes must hold. mcsim prints the instruments
 * once a second ("Chunk available" is the chunk heap's size, "Slot available" the slot heap's,
 * "Stack used" the deepest stack since the previous line); the firmware also prints its own
 * reading at the end of each phase (bench.memory). Phases are told apart by where the lines fall
 * between the firmware's bench.phaseEnd events.
 *
 * Slots are 32 bytes on the 64-bit simulator and 16 on the 32-bit ESP32; counts of slots (heap and
 * stack) are the same on both. Chunks hold strings and buffers (the same size on both) and some
 * arrays of slots and pointers (half the size on 32 bits), so the simulator's chunk figure is an
 * upper bound for the ESP32's.
 */

export const SLOT_BYTES_64 = 32;
export const SLOT_BYTES_32 = 16;

export interface PhaseMemory {
	/** Slot heap grown to (bytes on the simulator). */
	slotHeapBytes: number;
	/**
	 * Chunk heap needed (bytes on the simulator): the smaller of what it grew to and the most it held
	 * at once. Both are upper bounds of the live peak: the heap grows in separate blocks, and a large
	 * chunk (a 16 KB TLS record) that fits in no block's free space adds a block even when the total
	 * free space would do; "used" counts garbage not yet collected.
	 */
	chunkHeapBytes: number;
	/** The chunk heap's grown size alone. */
	chunkGrownBytes: number;
	/** Deepest stack seen (bytes on the simulator). */
	stackBytes: number;
	/** Largest "used" readings (live and not yet collected). */
	slotUsedBytes: number;
	chunkUsedBytes: number;
	garbageCollections: number;
	samples: number;
}

export interface MemoryReport {
	/** Modules loaded, nothing connected yet. */
	boot?: PhaseMemory;
	/** TLS + DPS + hub connect. */
	connect?: PhaseMemory;
	/** Sending telemetry. */
	steady?: PhaseMemory;
	/** The applications as they ship: then a writable property and a command from the service. */
	service?: PhaseMemory;
	/** The creation sizes the memory build started from. */
	creation: {chunkInitial: number; heapInitialSlots: number; stackSlots: number};
}

/** Reads the instruments lines and phase events of one run of the memory build. */
export function parseMemory(lines: readonly string[], creation: MemoryReport["creation"]): MemoryReport {
	let keys: string[] | undefined;
	type Phase = "boot" | "connect" | "steady" | "service";
	const order: Phase[] = ["boot", "connect", "steady", "service"];
	let phase: Phase | undefined = "boot";
	const phases: Record<Phase, PhaseMemory | undefined> = {boot: undefined, connect: undefined, steady: undefined, service: undefined};
	const take = (values: Record<string, number>) => {
		if (!phase) return;
		const p = phases[phase] ??= {slotHeapBytes: 0, chunkHeapBytes: 0, chunkGrownBytes: 0, stackBytes: 0, slotUsedBytes: 0, chunkUsedBytes: 0, garbageCollections: 0, samples: 0};
		const max = (k: keyof PhaseMemory, v: number | undefined) => {
			if (v !== undefined && Number.isFinite(v)) p[k] = Math.max(p[k], v);
		};
		max("slotHeapBytes", values["Slot available"]);
		max("chunkGrownBytes", values["Chunk available"]);
		max("stackBytes", values["Stack used"]);
		max("slotUsedBytes", values["Slot used"]);
		max("chunkUsedBytes", values["Chunk used"]);
		if (values["Garbage collections"] !== undefined) p.garbageCollections += values["Garbage collections"];
		p.samples++;
	};
	for (const line of lines) {
		const keyAt = line.indexOf("instruments key: ");
		if (keyAt >= 0) {
			keys = line.slice(keyAt + "instruments key: ".length).split(",").map(k => k.trim());
			continue;
		}
		const at = line.indexOf("instruments: ");
		if (at >= 0 && keys) {
			const numbers = line.slice(at + "instruments: ".length).split(",").map(Number);
			const values: Record<string, number> = {};
			keys.forEach((k, i) => { values[k] = numbers[i]; });
			take(values);
			continue;
		}
		const json = line.indexOf("{\"event\"");
		if (json < 0) continue;
		let e: {event: string; phase?: string; slotUsed?: number; chunkUsed?: number; stackPeak?: number};
		try {
			e = JSON.parse(line.slice(json));
		}
		catch {
			continue;
		}
		if (e.event === "bench.memory" && phase) {
			// The firmware's own reading: the stack since the last line, and the heaps in use right now.
			const p = phases[phase];
			if (p) {
				if (e.stackPeak !== undefined) p.stackBytes = Math.max(p.stackBytes, e.stackPeak);
				if (e.slotUsed !== undefined) p.slotUsedBytes = Math.max(p.slotUsedBytes, e.slotUsed);
				if (e.chunkUsed !== undefined) p.chunkUsedBytes = Math.max(p.chunkUsedBytes, e.chunkUsed);
			}
		}
		else if (e.event === "bench.phaseEnd") phase = order[order.indexOf(e.phase as Phase) + 1];
	}
	for (const p of Object.values(phases)) if (p) p.chunkHeapBytes = Math.min(p.chunkGrownBytes, p.chunkUsedBytes);
	return {boot: phases.boot, connect: phases.connect, steady: phases.steady, service: phases.service, creation};
}

/** The larger figure of each kind over several runs: a peak is what a creation size must hold. */
export function worstOf(reports: MemoryReport[]): MemoryReport | undefined {
	if (!reports.length) return undefined;
	return {
		boot: largestOf(reports.map(r => r.boot)), connect: largestOf(reports.map(r => r.connect)), steady: largestOf(reports.map(r => r.steady)),
		service: largestOf(reports.map(r => r.service)), creation: reports[0].creation,
	};
}

/** The largest figure of each kind among these phases (or runs). */
export function largestOf(phases: readonly (PhaseMemory | undefined)[]): PhaseMemory | undefined {
	const list = phases.filter((p): p is PhaseMemory => !!p);
	if (!list.length) return undefined;
	const out = {...list[0]};
	for (const p of list.slice(1))
		for (const k of Object.keys(out) as (keyof PhaseMemory)[]) out[k] = Math.max(out[k], p[k]);
	return out;
}

/** The ESP32's creation sizes: the SDK's defaults (tools/mcconfig.js filterCreation) and this project's (hosts/esp32/manifest.json). */
export interface Esp32Creation {
	name: string;
	chunkBytes: number;
	heapSlots: number;
	stackSlots: number;
}

export const ESP32_SDK_DEFAULT: Esp32Creation = {name: "ESP32 SDK default", chunkBytes: 32768, heapSlots: 2048, stackSlots: 384};
