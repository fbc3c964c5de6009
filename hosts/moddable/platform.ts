/*
 * The DevicePlatform (src/device/app.ts) pieces common to the ESP32 and the simulator: events as
 * one JSON line each through trace (the serial console on the ESP32, stdout under mcsim, where
 * tools/sim-runner.ts reads them), and the pinned roots read from the firmware's data resources.
 */
import Resource from "Resource";
import type {DeviceEvent} from "../../src/device/app.js";

/** What differs between the ESP32 and the simulator (hosts/esp32/board.ts, hosts/sim/board.ts). */
export interface BoardSettings {
	ssid?: string;
	password?: string;
	/** Comma-separated SNTP servers, tried in turn. */
	sntp?: string;
	log?: (line: string) => void;
}

export interface Board {
	readonly name: string;
	connectNetwork?(): Promise<void>;
	syncClock?(): Promise<void>;
	reboot?(): void;
	/** Replaces Math.random for the host where that is not random enough. */
	random?(): number;
}

export function emit(event: DeviceEvent): void {
	trace(JSON.stringify(event) + "\n");
}

export function print(line: string): void {
	trace(line + "\n");
}

/**
 * The roots as DER, from data resources named in a comma-separated list (the build config `roots`).
 * A missing or empty resource is a build mistake: say which one, rather than connect with fewer roots.
 */
export function loadRoots(names: string): Uint8Array[] {
	const list = names.split(",").map(name => name.trim()).filter(name => name);
	if (!list.length) throw new Error("roots: no pinned root listed. The build config `roots` names the .der data resources to trust");
	return list.map(name => {
		if (!Resource.exists(name)) throw new Error(`roots: resource ${name} is not in the firmware. Add it to the manifest "data" section`);
		const bytes = new Uint8Array(new Resource(name).slice(0));
		if (bytes.length < 64 || bytes[0] !== 0x30) throw new Error(`roots: resource ${name} is not a DER certificate`);
		return bytes;
	});
}
