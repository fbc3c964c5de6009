/*
 * The Device Update core (src/adu) built with mcconfig and run in XS on the Moddable simulator,
 * with the SDK's SHA-256 (test/fixtures/adu-xs). The simulator has the ESP32's heap, chunk and
 * stack sizes (hosts/sim/manifest.json). The verification time it prints is the simulator's, for
 * information only. Skipped, saying why, where the SDK, xvfb-run or dbus-run-session is missing.
 */
import test from "ava";
import * as path from "node:path";
import {REPO_ROOT, buildFirmware, runFirmware, simulatorAvailable} from "../tools/sim-runner.js";
import {loadCSdkPayloads} from "./helpers/adu.js";

const sim = simulatorAvailable();
const NAMES = ["katValid", "katNative", "katInvalidManifest", "katWrongSha", "unknownRootKey", "deepHeader", "agentPayloads", "stateMachine", "verifyTime"];

if (!sim.ok) {
	console.log(`adu-xs.test.ts: skipped. ${sim.reason}`);
	test.skip("Device Update core in XS on the simulator", () => {});
}
else {
	test("XS: the KAT signature verifies with the SDK's Digest, refusals are right, payload bytes and one deployment match Node's", async t => {
		t.timeout(180_000);
		const build = await buildFirmware({
			sdk: sim.sdk,
			buildDir: path.join(REPO_ROOT, "build/sim-test/adu-xs"),
			manifest: path.join(REPO_ROOT, "test/fixtures/adu-xs/manifest.json"),
		});
		const run = runFirmware({soPath: build.soPath, sdk: sim.sdk});
		let failure: string | undefined;
		try {
			await run.waitFor("test.done", {timeoutMs: 60_000}).catch(e => t.log(e.message));
			failure = run.failure; // before stop(), which ends the simulator on purpose
		}
		finally {
			await run.stop();
		}
		t.is(failure, undefined, run.lines.slice(-20).join("\n"));
		const results = run.events.filter(e => e.event === "test");
		for (const name of NAMES) t.true(results.some(r => r.name === name), `${name} reported`);
		for (const r of results) {
			const info = run.events.find(e => e.event === "test.info" && e.name === r.name);
			t.true(r.pass, `${String(r.name)}${info ? `: ${String(info.message)}` : ""}`);
		}
		const c = loadCSdkPayloads();
		for (const name of ["expected_agent_state_payload", "expected_agent_state_long_payload", "send_response_valid_payload"])
			t.is(run.events.find(e => e.event === "payload" && e.name === name)?.payload, c[name], `${name} from XS, byte for byte`);
		const bench = run.events.find(e => e.event === "bench");
		if (bench) t.log(`KAT verification in XS on the simulator: ${String(bench.ms)} ms`);
	});
}
