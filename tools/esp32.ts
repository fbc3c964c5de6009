/*
 * npm run build:esp32 -- --config device.json [--board esp32/nodemcu] [--build-dir D]
 * npm run flash -- --config device.json [--board esp32/nodemcu] [--port /dev/ttyUSB0] [--build-dir D]
 * npm run build:esp32 -- --check [--board esp32/nodemcu]
 *
 * Wraps mcconfig for the ESP32: a manifest generated in the build directory includes the firmware's
 * manifest.json and adds the device settings (and the roots of device.json, when they are not the
 * production ones already in the image), so the key never appears on a command line.
 *
 * --check needs no ESP-IDF and no device.json: it runs the platform-independent half of an ESP32
 * build (manifest resolution for the board, every TypeScript module through tsc in strict mode,
 * xsc, the XS linker with its preloading, the resources) and stops before the C compiler. What
 * it cannot check: the C parts (including hosts/esp32/restart.c), linking, flash size, the device.
 *
 * Exit 2 when something is missing (the SDK, ESP-IDF, device.json fields); the message says what.
 */
import {Command} from "commander";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {resolveApp, type App} from "./app.js";
import {firmwareSettings, loadDeviceFile} from "./device-config.js";
import {REPO_ROOT, SdkMissingError, findSdk, runTool, sdkEnv, writeBuildManifest, type FirmwareSettings, type Sdk} from "./sim-runner.js";

const DEFAULT_BOARD = "esp32/nodemcu";
const IDF_HELP = "Install ESP-IDF v6.0 as the Moddable SDK's ESP32 guide says (documentation/devices/esp32.md, Linux section): git clone -b v6.0 --recursive https://github.com/espressif/esp-idf.git $HOME/esp32/esp-idf && $HOME/esp32/esp-idf/install.sh, then export IDF_PATH=$HOME/esp32/esp-idf (and `source $IDF_PATH/export.sh` in each shell).";

interface Options {
	config?: string;
	app?: string;
	board: string;
	buildDir?: string;
	port?: string;
	check?: boolean;
}

function fail(message: string, code = 2): never {
	console.error(`esp32: ${message}`);
	process.exit(code);
}

function sdkOrExit(): Sdk {
	try {
		return findSdk({simulator: false});
	}
	catch (e) {
		if (e instanceof SdkMissingError) fail(e.message);
		throw e;
	}
}

function checkIdf(): void {
	const idf = process.env.IDF_PATH;
	if (!idf) fail(`ESP-IDF is missing: IDF_PATH is not set.\n${IDF_HELP}`);
	if (!fs.existsSync(path.join(idf, "export.sh")) || !fs.existsSync(path.join(idf, "tools/idf.py")))
		fail(`ESP-IDF is missing: IDF_PATH=${idf} holds no ESP-IDF (no export.sh or tools/idf.py).\n${IDF_HELP}`);
}

function appOrExit(dir: string | undefined): App {
	try {
		return resolveApp(dir);
	}
	catch (e) {
		fail((e as Error).message);
	}
}

function boardDirName(board: string): string {
	return board.replace(/[^A-Za-z0-9_-]+/g, "-");
}

function settingsFrom(file: string): {settings: FirmwareSettings; roots?: Uint8Array[]} {
	let device;
	try {
		device = loadDeviceFile(file);
	}
	catch (e) {
		fail(`${file}: ${(e as Error).message}`);
	}
	if (!device.settings.ssid) fail(`${file}: wifi.ssid: missing. The ESP32 joins this network; give {"wifi": {"ssid": "...", "password": "..."}}`);
	// The production roots are in the image already; other roots (a test CA) are added as data.
	const production = ["digicert-global-root-g2.der", "microsoft-rsa-root-2017.der"].map(f => fs.readFileSync(path.join(REPO_ROOT, "certs", f)));
	const onlyProduction = device.roots.every(r => production.some(p => Buffer.from(r).equals(p)));
	return {
		settings: firmwareSettings(device),
		roots: onlyProduction ? undefined : device.roots,
	};
}

async function mcconfig(sdk: Sdk, args: string[], cwd: string, env: Record<string, string> = {}): Promise<number> {
	// The arguments never hold a setting: they live in the generated manifest.
	console.error(`esp32: mcconfig ${args.join(" ")}`);
	const {code} = await runTool(sdk.mcconfig, args, {cwd, env: sdkEnv(sdk, env), onOutput: line => console.error(line)});
	return code;
}

function checkBoard(board: string): void {
	if (board !== "esp32" && !board.startsWith("esp32/"))
		fail(`--board ${board}: give esp32 or esp32/<target> (a directory of $MODDABLE/build/devices/esp32/targets, e.g. esp32/nodemcu); for the simulator use npm run sim`);
}

async function build(o: Options, deploy: boolean): Promise<number> {
	checkBoard(o.board);
	const sdk = sdkOrExit();
	if (!o.config) fail("--config device.json is required (see device.example.json)");
	checkIdf();
	const {settings, roots} = settingsFrom(o.config);
	const app = appOrExit(o.app);
	const buildDir = path.resolve(o.buildDir ?? path.join(REPO_ROOT, "build/esp32", app.name, boardDirName(o.board)));
	const manifest = writeBuildManifest(buildDir, {settings, roots, manifest: app.manifest});
	const env: Record<string, string> = o.port ? {UPLOAD_PORT: o.port} : {};
	const code = await mcconfig(sdk, ["-m", "-p", o.board, "-t", deploy ? "deploy" : "build", "-o", buildDir, manifest], path.dirname(manifest), env);
	if (code !== 0) return 1;
	console.error(deploy ? "esp32: flashed" : `esp32: built in ${buildDir}; flash with npm run flash -- --config ${o.config} --board ${o.board}${o.port ? ` --port ${o.port}` : ""}`);
	return 0;
}

/** The platform-independent half of an ESP32 build; see the header. */
async function check(o: Options): Promise<number> {
	checkBoard(o.board);
	const sdk = sdkOrExit();
	const app = appOrExit(o.app);
	const buildDir = path.resolve(o.buildDir ?? path.join(REPO_ROOT, "build/esp32-check", app.name, boardDirName(o.board)));
	// Placeholders good enough for the compilers; nothing here is flashed.
	const manifest = writeBuildManifest(buildDir, {manifest: app.manifest, settings: {idScope: "0ne00000000", registrationId: "check", symmetricKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", ssid: "check"}});
	// mcconfig insists on IDF_PATH and sources its export.sh; a stub lets it write the makefile.
	const fakeIdf = fs.mkdtempSync(path.join(os.tmpdir(), "esp32-check-idf-"));
	try {
		fs.writeFileSync(path.join(fakeIdf, "export.sh"), "echo 'esp32 --check: stub ESP-IDF, stopping after the makefile' >&2\nfalse\n");
		fs.writeFileSync(path.join(fakeIdf, "sdkconfig.h"), "");
		const env = {IDF_PATH: fakeIdf};
		await runTool(sdk.mcconfig, ["-m", "-p", o.board, "-t", "build", "-o", buildDir, manifest], {cwd: path.dirname(manifest), env: sdkEnv(sdk, env)});
		const makefile = findMakefile(path.join(buildDir, "tmp", ...o.board.split("/")));
		if (!makefile) fail(`mcconfig wrote no makefile for ${o.board}: the manifest does not resolve for this board`, 1);
		const tmpDir = /^TMP_DIR = (.*)$/m.exec(fs.readFileSync(makefile, "utf8"))?.[1];
		if (!tmpDir) fail(`no TMP_DIR in ${makefile}`, 1);
		const {code, output} = await runTool("make", ["-f", makefile, "IDF_VERSION=v6.0", `SDKCONFIG_H=${path.join(fakeIdf, "sdkconfig.h")}`, path.join(tmpDir, "mc.xs.c"), path.join(tmpDir, "mc.resources.c")], {
			cwd: path.dirname(manifest), env: sdkEnv(sdk, env), onOutput: line => console.error(line),
		});
		if (code !== 0) {
			console.error(`esp32: the ${o.board} build failed before the C compiler:\n${output.slice(-30).join("\n")}`);
			return 1;
		}
		const modules = output.filter(l => /^# (tsc|xsc) /.test(l)).length;
		console.error(`esp32: ${o.board}: manifest, TypeScript (strict), xsc, the XS link with preloading and the resources are fine (${modules} compile steps; C, linking and flashing need ESP-IDF)`);
		return 0;
	}
	finally {
		fs.rmSync(fakeIdf, {recursive: true, force: true});
	}
}

function findMakefile(dir: string): string | undefined {
	if (!fs.existsSync(dir)) return undefined;
	for (const entry of fs.readdirSync(dir, {withFileTypes: true, recursive: true})) {
		if (entry.isFile() && entry.name === "makefile") return path.join(entry.parentPath, entry.name);
	}
	return undefined;
}

const program = new Command().name("tools/esp32.ts").description("Build and flash the firmware for the ESP32 with mcconfig");
const common = (c: Command) => c
	.option("--config <file>", "device settings (see device.example.json); wifi.ssid is required on the ESP32")
	.option("--app <dir>", "the application to build (default: the reference firmware)")
	.option("--board <platform>", "mcconfig platform: esp32 or esp32/<target>", DEFAULT_BOARD)
	.option("--build-dir <dir>", "build directory (default build/esp32/<board>)");
common(program.command("build").description("build the firmware image"))
	.option("--check", "no ESP-IDF needed: compile the TypeScript/JavaScript half of the ESP32 build only")
	.action(async (o: Options) => process.exit(o.check ? await check(o) : await build(o, false)));
common(program.command("flash").description("build and flash (mcconfig -t deploy)"))
	.option("--port <device>", "serial port (UPLOAD_PORT), e.g. /dev/ttyUSB0")
	.action(async (o: Options) => process.exit(await build(o, true)));

program.parseAsync().catch(e => fail((e as Error).stack ?? String(e), 1));
