/*
 * The simulator (mcsim on Linux, macOS, Windows) as a board: it uses the computer's network and
 * clock, which are already up, so there is no Wi-Fi to join and no SNTP; it cannot restart itself
 * (a Device Update restart is done by tools/sim-runner.ts, on the sim.restart event of ./images).
 *
 * Randomness: in the simulator XS's Math.random and the TLS generator (rng) both come from C
 * rand(), never seeded, so every boot would repeat the same message ids, request ids, backoff
 * jitter and TLS client randoms. Both are re-seeded here from the clock: different per boot, which
 * is what a simulator needs (not secret). The ESP32 does not do this: there both use esp_random().
 */
import RNG from "rng";
import Time from "time";
import type {Board} from "azure-iot/platform";
import {createImageStore} from "azure-iot/sim/images";

export function createBoard(): Board {
	const seed = new DataView(new ArrayBuffer(16));
	seed.setFloat64(0, Date.now());
	seed.setFloat64(8, Time.ticks + Math.random());
	RNG.init(seed.buffer);
	return Object.freeze({
		name: "simulator",
		random: () => new DataView(RNG.get(4)).getUint32(0) / 4294967296,
		images: () => createImageStore(),
	});
}
