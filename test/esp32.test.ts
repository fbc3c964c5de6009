/*
 * What can be checked of the ESP32 build without ESP-IDF or a board: the manifest resolves for an
 * ESP32 target and every module goes through tsc (strict), xsc and the XS linker; and the tool
 * says what is missing instead of failing obscurely. C compilation, linking and the device itself
 * need ESP-IDF and hardware.
 */
import test from "ava";
import {spawnSync} from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {REPO_ROOT, findSdk} from "../tools/sim-runner.js";

let sdkMissing: string | undefined;
try {
	findSdk({simulator: false});
}
catch (e) {
	sdkMissing = (e as Error).message;
}

function esp32Tool(args: string[], env: NodeJS.ProcessEnv = process.env) {
	return spawnSync(process.execPath, ["--import", "tsx", path.join(REPO_ROOT, "tools/esp32.ts"), ...args], {cwd: REPO_ROOT, env, encoding: "utf8", timeout: 170_000});
}

if (sdkMissing) {
	console.log(`esp32.test.ts: skipped. ${sdkMissing}`);
	test.skip("the ESP32 build check", () => {});
}
else {
	test("the firmware's modules compile and link (XS) for esp32/nodemcu", t => {
		t.timeout(180_000);
		const buildDir = fs.mkdtempSync(path.join(os.tmpdir(), "esp32-check-"));
		try {
			const r = esp32Tool(["build", "--check", "--board", "esp32/nodemcu", "--build-dir", buildDir]);
			t.is(r.status, 0, r.stderr.slice(-3000));
			t.regex(r.stderr, /esp32\/nodemcu: manifest, TypeScript \(strict\), xsc, the XS link/);
			const modules = path.join(buildDir, "tmp/esp32/nodemcu/release/app/modules");
			for (const m of ["main.xsb", "reference.xsb", "azure-iot/device.xsb", "azure-iot/board.xsb", "azure-iot/esp32/network.xsb", "azure-iot/esp32/system.xsb", "azure-iot/moddable/host.xsb", "wifi.xsb", "sntp.xsb"])
				t.true(fs.existsSync(path.join(modules, m)), m);
			// What is preloaded stays in flash only if it cannot change: the XS linker warns of module state and unfrozen tables.
			const ours = r.stderr.split("\n").filter(l => /### warning/.test(l) && /azure-iot|reference|main/.test(l));
			t.deepEqual(ours, [], "no warning of the linker about the library's preloaded modules");
			t.false(fs.existsSync(path.join(modules, "setup/network.xsb")), "the SDK's setup/network (no timeout) is left out");
			const resources = fs.readdirSync(path.join(buildDir, "tmp/esp32/nodemcu/release/app/resources")).sort();
			t.deepEqual(resources, ["ca.ski", "digicert-global-root-g2.der", "microsoft-rsa-root-2017.der"]);
		}
		finally {
			fs.rmSync(buildDir, {recursive: true, force: true});
		}
	});

	// The examples are applications of their own; on the ESP32 their sensors are the real ones (esp32/*.ts, pins/i2c).
	const examples: Record<string, string[]> = {
		"thermostat": ["main.xsb", "sensor.xsb", "simulated-sensor.xsb", "pins/i2c.xsb", "azure-iot/device.xsb"],
		"temperature-controller": ["main.xsb", "thermostat.xsb", "hardware.xsb", "simulated-hardware.xsb", "pins/i2c.xsb", "azure-iot/device.xsb"],
		"minimal": ["main.xsb", "azure-iot/device.xsb", "azure-iot/esp32/network.xsb"],
	};
	for (const [name, expected] of Object.entries(examples)) {
		test(`examples/${name} compiles and links (XS) for esp32/nodemcu, with no linker warning about its modules or the library's`, t => {
			t.timeout(180_000);
			const buildDir = fs.mkdtempSync(path.join(os.tmpdir(), `esp32-check-${name}-`));
			try {
				const r = esp32Tool(["build", "--check", "--app", `examples/${name}`, "--board", "esp32/nodemcu", "--build-dir", buildDir]);
				t.is(r.status, 0, r.stderr.slice(-3000));
				const modules = path.join(buildDir, "tmp/esp32/nodemcu/release/app/modules");
				for (const m of expected) t.true(fs.existsSync(path.join(modules, m)), m);
				const ours = r.stderr.split("\n").filter(l => /### warning/.test(l) && /azure-iot|main|sensor|hardware|thermostat/.test(l));
				t.deepEqual(ours, [], "no warning of the linker about the application's or the library's preloaded modules");
			}
			finally {
				fs.rmSync(buildDir, {recursive: true, force: true});
			}
		});
	}

	test("without ESP-IDF the build says what is missing and exits 2", t => {
		const env = {...process.env};
		delete env.IDF_PATH;
		const r = esp32Tool(["build", "--config", path.join(REPO_ROOT, "device.example.json")], env);
		t.is(r.status, 2);
		t.regex(r.stderr, /ESP-IDF is missing: IDF_PATH is not set/);
		t.regex(r.stderr, /git clone -b v6\.0/);
	});
}
