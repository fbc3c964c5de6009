/*
 * `npm run screenshot [-- --out FILE]`: the emulator's page with a device running, as the README
 * shows it (docs/emulator-page.png). Starts an emulator, runs the reference firmware's application
 * on the Node host against it for a while (so that its charts have points), opens the page in
 * Chromium on that device and saves the picture.
 */
import {Command} from "commander";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {startEmulator} from "../emulator/index.js";
import {startReference} from "../firmware/reference.js";
import {createNodePlatform} from "../hosts/node/platform.js";
import {launchChromium, chromiumAvailable} from "./browser.js";
import {REPO_ROOT} from "./sim-runner.js";

const options = new Command()
	.name("screenshot")
	.option("--out <file>", "where the PNG goes", path.join(REPO_ROOT, "docs/emulator-page.png"))
	.option("--seconds <n>", "how long the device runs before the picture", Number, 20)
	.parse()
	.opts<{out: string; seconds: number}>();

const browserCheck = chromiumAvailable();
if (!browserCheck.ok) {
	console.error(`screenshot: ${browserCheck.reason}`);
	process.exit(2);
}

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "azure-screenshot-"));
const emulator = await startEmulator({retryAfterSeconds: 1, modelsDir: path.join(REPO_ROOT, "test/fixtures/models")});
const registrationId = "thermostat-kitchen";
emulator.addEnrollmentGroup({groupId: "fleet-a"});
const run = (id: string) => {
	const {symmetricKey} = emulator.addEnrollment({registrationId: id});
	return startReference(createNodePlatform({
		roots: [emulator.caDer], emit: () => {}, print: () => {}, storageFile: path.join(dataDir, `${id}.json`),
		settings: {
			dpsHost: emulator.host, dpsPort: emulator.port, idScope: emulator.idScope, registrationId: id, symmetricKey,
			hubPort: emulator.port, intervalMs: id === registrationId ? 1000 : 5000, modelId: "dtmi:moddable:azureiot:Reference;1",
		},
	}));
};
// The device the picture shows, two more running, and one that has gone offline.
const device = run(registrationId);
const others = ["sensor-garage", "sensor-hall", "door-front"].map(run);
const browser = await launchChromium();
try {
	const until = Date.now() + 30_000;
	while (!emulator.devices().some(d => d.deviceId === registrationId && d.connected)) {
		if (Date.now() > until) throw new Error("the device did not connect within 30 s");
		await new Promise(r => setTimeout(r, 200));
	}
	emulator.patchDesired(registrationId, {telemetryIntervalMs: 1000});
	await new Promise(r => setTimeout(r, 3000));
	others[2].close();
	console.log(`screenshot: the device runs for ${options.seconds} s…`);
	await new Promise(r => setTimeout(r, options.seconds * 1000));
	const page = await browser.newPage({viewport: {width: 1360, height: 860}, deviceScaleFactor: 1});
	await page.goto(`${emulator.pageUrl}#devices/${registrationId}`);
	await page.getByTestId("telemetry-row").first().waitFor({timeout: 20_000});
	await page.waitForTimeout(1500);
	fs.mkdirSync(path.dirname(options.out), {recursive: true});
	await page.screenshot({path: options.out});
	console.log(`screenshot: ${path.relative(process.cwd(), options.out)}`);
}
finally {
	await browser.close();
	device.close();
	for (const other of others) other.close();
	await emulator.close();
	fs.rmSync(dataDir, {recursive: true, force: true});
}
