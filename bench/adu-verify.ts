/*
 * npx tsx bench/adu-verify.ts [--runs N]
 *
 * Time to check Microsoft's known-answer update signature (test/fixtures/adu/kat.json: two RS256
 * verifications with RSA-3072 keys, SHA-256 from node:crypto) with src/adu/jws.ts under Node.
 * Prints the median and range over the runs; the XS figure on the ESP32 comes from the firmware.
 */
import {createHash} from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import {performance} from "node:perf_hooks";
import {fileURLToPath} from "node:url";
import type {CreateSha256} from "../src/adu/hash.js";
import {verifyManifestSignature} from "../src/adu/jws.js";
import {ADU_ROOT_KEYS} from "../src/adu/root-keys.js";

const flag = process.argv.indexOf("--runs");
const runs = flag > 0 ? Number(process.argv[flag + 1]) : 200;
if (!Number.isInteger(runs) || runs < 1) throw new Error("--runs: a whole number of 1 or more");

const kat = JSON.parse(fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), "../test/fixtures/adu/kat.json"), "utf8")) as {validManifest: string; validJws: string};
const sha256: CreateSha256 = () => {
	const h = createHash("sha256");
	return {update(bytes) { h.update(bytes); }, digest() { return new Uint8Array(h.digest()); }};
};

const times: number[] = [];
for (let i = 0; i < runs + 5; i++) {
	const start = performance.now();
	const r = verifyManifestSignature(kat.validManifest, kat.validJws, ADU_ROOT_KEYS, sha256);
	const ms = performance.now() - start;
	if (!r.ok) throw new Error(`the known answer did not verify: ${r.message}`);
	if (i >= 5) times.push(ms); // the first runs warm up the JIT
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
console.log(`ADU manifest signature check (KAT, RSA-3072 x2), Node ${process.version}: median ${median.toFixed(2)} ms, range ${times[0].toFixed(2)}–${times[times.length - 1].toFixed(2)} ms over ${runs} runs`);
