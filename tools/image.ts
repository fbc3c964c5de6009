/*
 * npm run image -- --version V --out FILE [--app DIR] [--config device.json] [--target sim|esp32] [--board esp32/nodemcu]
 *                  [--emulator http://127.0.0.1:PORT] [--provider P] [--name N] [--manufacturer M] [--model M]
 *                  [--installed-criteria C] [--azure]
 *
 * Builds an update image of an application (default the reference firmware) whose firmwareVersion
 * (and so its Device Update version, src/device/update.ts) is V:
 * - --target sim (default): the simulator build, an mc.so that tools/sim-runner.ts boots after the
 *   firmware installed it (runUpdatableFirmware; npm run sim uses it);
 * - --target esp32: the application binary (xs_esp32.bin) for the ESP32's OTA partition. It needs
 *   ESP-IDF; without it the platform-independent half of the build is checked (npm run build:esp32 --
 *   --check) and the tool says what it could not do.
 * The settings of --config go into the image as build values (identity included, as npm run sim and
 * npm run build:esp32 do); leave --config out for a fleet image whose identity is in each device's
 * Preference. Then:
 * - --emulator: imports FILE into the emulator's Device Update (POST /updates) and prints the update
 *   id, and how to deploy it;
 * - --azure: prints the az CLI steps to import it into a Device Update account (update init v5).
 */
import {Command} from "commander";
import {spawnSync} from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import {resolveApp} from "./app.js";
import {firmwareSettings, loadDeviceFile, type DeviceFile} from "./device-config.js";
import {REPO_ROOT, BuildError, SdkMissingError, buildFirmware, findSdk} from "./sim-runner.js";

interface Options {
	version: string;
	out: string;
	app?: string;
	config?: string;
	target: "sim" | "esp32";
	board: string;
	emulator?: string;
	provider?: string;
	name?: string;
	manufacturer?: string;
	model?: string;
	installedCriteria?: string;
	azure?: boolean;
}

const VERSION = /^\d{1,10}(\.\d{1,10}){1,3}$/;

function fail(message: string, code = 2): never {
	console.error(`image: ${message}`);
	process.exit(code);
}

async function buildSim(o: Options, device: DeviceFile | undefined, appManifest: string, appName: string): Promise<string> {
	let sdk;
	try {
		sdk = findSdk({simulator: false});
	}
	catch (e) {
		if (e instanceof SdkMissingError) fail(e.message);
		throw e;
	}
	const buildDir = path.join(REPO_ROOT, "build/image", appName, `sim-${o.version}`);
	console.error(`image: building ${appName} ${o.version} for the simulator in ${buildDir}`);
	try {
		const build = await buildFirmware({
			sdk, buildDir, manifest: appManifest,
			settings: {...(device ? firmwareSettings(device) : {}), firmwareVersion: o.version},
			...(device ? {roots: device.roots} : {}),
		});
		return build.soPath;
	}
	catch (e) {
		fail(e instanceof BuildError ? e.message : (e as Error).message, 1);
	}
}

function buildEsp32(o: Options, device: DeviceFile | undefined, appDir: string, appName: string): string {
	const tool = path.join(REPO_ROOT, "tools/esp32.ts");
	const run = (args: string[]) => spawnSync(process.execPath, ["--import", "tsx", tool, ...args], {cwd: REPO_ROOT, stdio: "inherit"});
	if (!process.env.IDF_PATH || !o.config) {
		console.error(`image: ${!o.config ? "--config device.json is needed for an ESP32 image (wifi.ssid, at least)" : "ESP-IDF is missing (IDF_PATH is not set)"}: the application binary cannot be built here. Checking what can be checked without it:`);
		const r = run(["build", "--check", "--app", appDir, "--board", o.board]);
		fail(`${r.status === 0 ? "the XS half of the ESP32 build is fine" : "the ESP32 build check failed"}; no image was written. Install ESP-IDF v6.0 (see npm run build:esp32) and run this again with --config`, r.status === 0 ? 2 : 1);
	}
	// The version goes in through a copy of device.json: firmwareVersion is a build-only setting.
	const buildDir = path.join(REPO_ROOT, "build/image", appName, `${o.board.replace(/\//g, "-")}-${o.version}`);
	fs.mkdirSync(buildDir, {recursive: true});
	const config = path.join(buildDir, "device.json");
	const json = {...device!.json, firmwareVersion: o.version, tls: {roots: device!.rootPaths}};
	fs.writeFileSync(config, JSON.stringify(json, (_k, v) => v instanceof Uint8Array ? undefined : v, "\t"), {mode: 0o600});
	const r = run(["build", "--config", config, "--app", appDir, "--board", o.board, "--build-dir", buildDir]);
	if (r.status !== 0) fail("the ESP32 build failed", 1);
	const bin = findFile(path.join(buildDir, "bin"), "xs_esp32.bin");
	if (!bin) fail(`the ESP32 build wrote no xs_esp32.bin under ${path.join(buildDir, "bin")}`, 1);
	return bin;
}

function findFile(dir: string, name: string): string | undefined {
	if (!fs.existsSync(dir)) return undefined;
	for (const entry of fs.readdirSync(dir, {withFileTypes: true, recursive: true}))
		if (entry.isFile() && entry.name === name) return path.join(entry.parentPath, entry.name);
	return undefined;
}

async function importIntoEmulator(api: string, request: Record<string, unknown>): Promise<void> {
	const base = api.replace(/\/+$/, "");
	let response: Response;
	try {
		response = await fetch(`${base}/updates`, {method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(request)});
	}
	catch (e) {
		fail(`cannot reach the emulator's service API at ${base} (${(e as Error).message}): start it with npm run emulator and give the URL it prints as "api"`, 1);
	}
	const text = await response.text();
	if (response.status !== 201) fail(`the emulator refused the import (${response.status}): ${text}`, 1);
	const imported = JSON.parse(text) as {updateId: Record<string, string>; fileUrls: Record<string, string>};
	console.log(JSON.stringify({event: "image.imported", updateId: imported.updateId, fileUrls: imported.fileUrls}));
	console.error(`image: imported. Deploy it: curl -s -X POST ${base}/deployments -H 'content-type: application/json' -d '${JSON.stringify({updateId: imported.updateId, deviceIds: ["<device id>"]})}'`);
}

function azureSteps(file: string, id: {provider: string; name: string; version: string}, compat: {manufacturer: string; model: string}, criteria: string): void {
	const base = path.basename(file);
	const lines = [
		"# Device Update for IoT Hub (an ADU account and instance linked to the hub; the device reports the deviceUpdate component):",
		`az iot du update init v5 --update-provider ${id.provider} --update-name ${id.name} --update-version ${id.version} \\`,
		`  --compat manufacturer=${compat.manufacturer} model=${compat.model} \\`,
		`  --step handler=microsoft/swupdate:1 properties='{"installedCriteria":"${criteria}"}' \\`,
		`  --file path=${file} > ${base}.importmanifest.json`,
		"# upload the image and the import manifest to a storage container, then:",
		`az iot du update import --account <adu-account> --instance <adu-instance> \\`,
		`  --url <SAS URL of ${base}.importmanifest.json> --file filename=${base} url=<SAS URL of ${base}>`,
		"# group the devices (twin tag ADUGroup), deploy, and watch:",
		`az iot hub device-twin update --hub-name <hub> --device-id <device id> --tags '{"ADUGroup":"<group>"}'`,
		`az iot du device deployment create --account <adu-account> --instance <adu-instance> --group-id <group> --deployment-id <id> \\`,
		`  --update-provider ${id.provider} --update-name ${id.name} --update-version ${id.version}`,
		`az iot du device deployment show --account <adu-account> --instance <adu-instance> --group-id <group> --deployment-id <id> --status`,
	];
	console.log(lines.join("\n"));
}

async function main(): Promise<void> {
	const program = new Command()
		.name("npm run image --")
		.description("Build a Device Update image of an application and import it into the emulator (or print the az CLI steps)")
		.requiredOption("--version <v>", "the image's firmwareVersion and update version: 2 to 4 dot-separated numbers, e.g. 1.1.0")
		.requiredOption("--out <file>", "where to write the image")
		.option("--app <dir>", "the application (default: the reference firmware)")
		.option("--config <file>", "device settings built into the image (see device.example.json)")
		.option("--target <target>", "sim (the simulator build) or esp32 (the application binary)", "sim")
		.option("--board <platform>", "ESP32 board for --target esp32", "esp32/nodemcu")
		.option("--emulator <url>", "import the image into the emulator whose service API is at this URL")
		.option("--provider <p>", "update provider (default: the config's update.provider, else its manufacturer)")
		.option("--name <n>", "update name (default: the config's update.name, else its model)")
		.option("--manufacturer <m>", "compatibility: the devices' manufacturer (default: the config's update.manufacturer)")
		.option("--model <m>", "compatibility: the devices' model (default: the config's update.model)")
		.option("--installed-criteria <c>", "what a device running this image reports as installed (default: the version)")
		.option("--azure", "print the az CLI steps to import and deploy it in Azure", false)
		.showHelpAfterError();
	program.parse();
	const o = program.opts<Options>();
	if (!VERSION.test(o.version)) fail(`--version ${o.version}: give 2 to 4 dot-separated numbers, as Device Update versions are (e.g. 1.1.0)`);
	if (o.target !== "sim" && o.target !== "esp32") fail(`--target ${o.target}: give sim or esp32`);
	let app;
	try {
		app = resolveApp(o.app);
	}
	catch (e) {
		fail((e as Error).message);
	}
	let device: DeviceFile | undefined;
	if (o.config) {
		try {
			device = loadDeviceFile(o.config);
		}
		catch (e) {
			fail((e as Error).message);
		}
	}
	const built = o.target === "sim" ? await buildSim(o, device, app.manifest, app.name) : buildEsp32(o, device, app.dir, app.name);
	const out = path.resolve(o.out);
	fs.mkdirSync(path.dirname(out), {recursive: true});
	fs.copyFileSync(built, out);
	const data = fs.readFileSync(out);
	console.log(JSON.stringify({event: "image.built", target: o.target, version: o.version, file: out, sizeInBytes: data.length, sha256: crypto.createHash("sha256").update(data).digest("base64")}));

	const s = device?.settings;
	const manufacturer = o.manufacturer ?? s?.aduManufacturer;
	const model = o.model ?? s?.aduModel;
	const provider = o.provider ?? s?.aduProvider ?? manufacturer;
	const name = o.name ?? s?.aduName ?? model;
	if (!o.emulator && !o.azure) return;
	if (!manufacturer || !model || !provider || !name) fail("to import it, give --manufacturer and --model (or update.manufacturer and update.model in --config), as the devices report them");
	const criteria = o.installedCriteria ?? o.version;
	if (o.emulator) await importIntoEmulator(o.emulator, {provider, name, version: o.version, file: out, compatibility: {manufacturer, model}, installedCriteria: criteria});
	if (o.azure) azureSteps(out, {provider, name, version: o.version}, {manufacturer, model}, criteria);
}

main().catch(e => fail((e as Error).stack ?? String(e), 1));
