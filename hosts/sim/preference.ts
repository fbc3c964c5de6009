/*
 * Preference on the simulator, in place of the SDK's Linux module (modules/files/preference/lin/
 * preference.js), with its API and its file: modpreferences.json under config file.root, a buffer
 * kept as {"buffer":"b0,b1,..."}, so that tools/sim-runner.ts writes it as before.
 *
 * Why: the SDK's module turns a stored buffer into an Array of one element per byte
 * (Uint8Array.from(text.split(","))), a 32-byte slot each on 64 bits, so reading a 900-byte
 * certificate needs one 28 KB chunk: more than is free in the ESP32-sized chunk heap the simulator
 * runs with (hosts/sim/manifest.json), and the VM aborts before the device can start. Here a buffer
 * is decoded once, byte by byte, when the file is read, kept as an ArrayBuffer, and written back in
 * small pieces. The ESP32 needs nothing of the kind: its NVS returns a blob as an ArrayBuffer.
 *
 * Preloaded (hosts/sim/manifest.json): it reads its file on first use, never when it loads, which on a
 * preloaded module would be on the build machine.
 */
import {File} from "file";
import config from "mc/config";

type Value = string | number | boolean | ArrayBuffer;
type Domains = Record<string, Record<string, Value>>;

const PATH = ((config as {file?: {root?: string}}).file?.root ?? "/tmp/") + "modpreferences.json";
// XS's ArrayBuffer.fromString (UTF-8 bytes of a string): called on ArrayBuffer, which it constructs.
const Buffers = ArrayBuffer as unknown as {fromString(text: string): ArrayBuffer};
const COMMA = 44, ZERO = 48;

/** "b0,b1,..." as bytes, without an intermediate array. */
function decode(text: string): ArrayBuffer {
	const chars = new Uint8Array(Buffers.fromString(text));
	let count = chars.length ? 1 : 0;
	for (let i = 0; i < chars.length; i++) if (chars[i] === COMMA) count++;
	const bytes = new Uint8Array(count);
	let at = 0, value = 0;
	for (let i = 0; i < chars.length; i++) {
		const c = chars[i];
		if (c === COMMA) {
			bytes[at++] = value;
			value = 0;
		}
		else value = value * 10 + c - ZERO;
	}
	if (count) bytes[at] = value;
	return bytes.buffer;
}

function load(): Domains {
	try {
		if (!File.exists(PATH)) return {};
		const file = new File(PATH);
		const text = file.read(String);
		file.close();
		const parsed: unknown = JSON.parse(text, (_key, value) =>
			value && typeof value === "object" && typeof (value as {buffer?: unknown}).buffer === "string" ? decode((value as {buffer: string}).buffer) : value);
		return parsed && typeof parsed === "object" ? parsed as Domains : {};
	}
	catch {
		return {}; // as the SDK's module: an unreadable file is an empty store
	}
}

/** Read on first use, not when the module loads: so that it can be preloaded (a preloaded module loads on the build machine). */
let loaded: Domains | undefined;
const store = (): Domains => loaded ??= load();

function save(): void {
	const cache = store();
	try {
		if (File.exists(PATH)) File.delete(PATH);
		const file = new File(PATH, true);
		file.write("{");
		Object.keys(cache).forEach((domain, i) => {
			file.write(`${i ? "," : ""}${JSON.stringify(domain)}:{`);
			const values = cache[domain];
			Object.keys(values).forEach((key, j) => {
				file.write(`${j ? "," : ""}${JSON.stringify(key)}:`);
				const value = values[key];
				if (!(value instanceof ArrayBuffer)) {
					file.write(JSON.stringify(value));
					return;
				}
				file.write("{\"buffer\":\"");
				const bytes = new Uint8Array(value);
				for (let at = 0; at < bytes.length; at += 64)
					file.write((at ? "," : "") + Array.prototype.join.call(bytes.subarray(at, at + 64), ","));
				file.write("\"}");
			});
			file.write("}");
		});
		file.write("}");
		file.close();
	}
	catch {
		// as the SDK's module: a failed write leaves the values in memory
	}
}

export default class Preference {
	static get(domain: string, key: string): Value | undefined {
		const value = store()[domain]?.[key];
		// A copy, as NVS gives: the caller may change it.
		return value instanceof ArrayBuffer ? value.slice(0) : value;
	}

	static set(domain: string, key: string, value: Value | ArrayBufferView): void {
		const stored = ArrayBuffer.isView(value)
			? new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice().buffer
			: value instanceof ArrayBuffer ? value.slice(0) : value;
		(store()[domain] ??= {})[key] = stored;
		save();
	}

	static delete(domain: string, key: string): void {
		const cache = store();
		const values = cache[domain];
		if (!values || values[key] === undefined) return;
		delete values[key];
		if (!Object.keys(values).length) delete cache[domain];
		save();
	}

	static keys(domain: string): string[] {
		const values = store()[domain];
		return values ? Object.keys(values) : [];
	}
}
Object.freeze(Preference.prototype);
