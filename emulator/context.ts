/*
 * State shared by the DPS and hub halves of the emulator.
 */
import * as crypto from "node:crypto";
import type {FaultSet} from "./faults.js";
import type {Registry, Stats} from "./registry.js";

export interface Settings {
	idScope: string;
	hubName: string;
	retryAfterSeconds: number;
	pollsBeforeAssigned: number;
}

export interface Context {
	settings: Settings;
	registry: Registry;
	faults: FaultSet;
	stats: Stats;
	log: (line: string) => void;
}

/** Azure's error body shape: `{"errorCode","trackingId","message","timestampUtc"}`. */
export function errorBody(errorCode: number, message: string): string {
	return JSON.stringify({errorCode, trackingId: crypto.randomUUID(), message, timestampUtc: new Date().toISOString()});
}

/** An etag in the form DPS uses (base64 of a quoted id). */
export function newEtag(): string {
	return Buffer.from(JSON.stringify(crypto.randomUUID())).toString("base64");
}

/** Cuts a JSON text short so that it no longer parses. */
export function truncateJson(text: string): string {
	return text.slice(0, Math.max(1, Math.floor(text.length / 2)));
}
