/*
 * `npm run bench -- --quick` runs end to end and prints the table: the benchmark's parts work.
 * No figure is asserted (they depend on the machine); only that every row is there and that what
 * could not be measured says why. The simulator variant is skipped, saying why, without the
 * Moddable SDK.
 */
import test from "ava";
import {spawn} from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {REPO_ROOT, simulatorAvailable} from "../tools/sim-runner.js";

function bench(args: string[], timeoutMs: number): Promise<{code: number | null; stdout: string; stderr: string}> {
	return new Promise((resolve, reject) => {
		const child = spawn(process.execPath, ["--import", "tsx", path.join(REPO_ROOT, "bench/run.ts"), ...args], {
			cwd: REPO_ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"],
		});
		let stdout = "", stderr = "";
		child.stdout!.on("data", (d: Buffer) => { stdout += d.toString(); });
		child.stderr!.on("data", (d: Buffer) => { stderr += d.toString(); });
		const timer = setTimeout(() => {
			try { process.kill(-child.pid!, "SIGKILL"); } catch {}
			reject(new Error(`npm run bench -- ${args.join(" ")} did not finish within ${timeoutMs / 1000} s\n${stderr.slice(-3000)}`));
		}, timeoutMs);
		child.on("error", e => { clearTimeout(timer); reject(e); });
		child.on("close", code => { clearTimeout(timer); resolve({code, stdout, stderr}); });
	});
}

const ROWS = [
	"Connect: start → hub CONNACK", "Connect: start → ready", "Reconnect: drop → hub CONNACK", "TLS session resumed",
	"Throughput: acknowledged QoS 1 telemetry", "XS peak memory, TLS + DPS + hub connect", "Bytecode (.xsb) of the project's own modules",
	"Bytecode (.xsb) of the whole firmware build", "Fleet: provisioning at once", "Fleet: DPS requests", "X.509 connect (group enrollment", "X.509 connect against SAS",
];

test.serial("bench --quick --no-sim: the Node host and Microsoft's SDK measured, the firmware rows say why not", async t => {
	t.timeout(300_000);
	const {code, stdout, stderr} = await bench(["--quick", "--no-sim"], 280_000);
	t.is(code, 0, stderr.slice(-3000));
	t.true(stdout.includes("| Measure | (a) firmware on the simulator (XS) | (b) core on the Node host | (c) Microsoft's Node SDK |"), stdout);
	for (const row of ROWS) t.true(stdout.includes(row), `row "${row}" is in the table`);
	t.regex(stdout, /not measured: --no-sim was given/);
	t.regex(stdout, /Connect: start → hub CONNACK \(DPS included\) \| not measured[^|]*\| \d+ ms/, "the core's connect time is measured");
	t.regex(stdout, /Machine: /);
});

test.serial("bench --memory-only --no-sim --update: only the memory table, written between its own markers", async t => {
	t.timeout(180_000);
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-smoke-"));
	const file = path.join(dir, "B.md");
	const before = "a\n<!-- bench:begin -->\nkept\n<!-- bench:end -->\nb\n<!-- bench-memory:begin -->\nold\n<!-- bench-memory:end -->\nc\n";
	fs.writeFileSync(file, before);
	try {
		const {code, stdout, stderr} = await bench(["--memory-only", "--no-sim", "--update", file], 170_000);
		t.is(code, 0, stderr.slice(-3000));
		t.false(stdout.includes("| Measure |"), "no main table");
		t.regex(stdout, /\| XS memory \(largest of the runs\) \| heap \| chunks \| stack \| goal: 20% of each ESP32 default left \|/);
		for (const app of ["the reference firmware (firmware/main)", "examples/thermostat", "examples/temperature-controller"])
			t.true(stdout.includes(`XS peak memory, ${app} as it ships`), app);
		t.regex(stdout, /not measured: --no-sim was given/);
		const after = fs.readFileSync(file, "utf8");
		t.true(after.startsWith("a\n<!-- bench:begin -->\nkept\n<!-- bench:end -->\nb\n<!-- bench-memory:begin -->\n"), after);
		t.true(after.endsWith("<!-- bench-memory:end -->\nc\n"), after);
		t.false(after.includes("old"));
		t.true(after.includes(stdout.trim()));
	}
	finally {
		fs.rmSync(dir, {recursive: true, force: true});
	}
});

const sim = simulatorAvailable();
if (!sim.ok) {
	console.log(`bench-smoke.test.ts: the simulator variant is skipped. ${sim.reason}`);
	test.skip("bench --quick with the simulator", () => {});
}
else {
	test.serial("bench --quick with the simulator: the firmware rows are measured too", async t => {
		t.timeout(900_000);
		const {code, stdout, stderr} = await bench(["--quick"], 880_000);
		t.is(code, 0, stderr.slice(-3000));
		for (const row of ROWS) t.true(stdout.includes(row), `row "${row}" is in the table`);
		t.regex(stdout, /Connect: start → hub CONNACK \(DPS included\) \| \d+ ms/, "the firmware's connect time is measured");
		t.regex(stdout, /XS peak memory, TLS \+ DPS \+ hub connect, benchmark firmware \| \d+ slots/);
		for (const app of ["the reference firmware \\(firmware\\/main\\)", "examples\\/thermostat", "examples\\/temperature-controller"])
			t.regex(stdout, new RegExp(`XS peak memory, ${app} as it ships[^|]*\\| \\d+ slots[^\\n]*\\| (met|not met)`), app);
		t.regex(stdout, /Bytecode \(\.xsb\) of the project's own modules \(src\/, hosts\/\) \| [\d.]+ KB/);
	});
}
