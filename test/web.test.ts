/*
 * The emulator's page in a real browser (Debian's Chromium, headless, driven by playwright-core):
 * a device appears when it connects, its telemetry shows within two seconds, a method's answer, a
 * desired edit, a cloud-to-device message and a fault each reach the device (the reference
 * application on the Node host), a Plug and Play model's commands are offered, and the firmware on
 * the Moddable simulator is seen and driven the same way. Skipped, saying why, where Chromium (or
 * for the firmware, the SDK) is missing. The page's security and boundedness without a browser:
 * test/web-security.test.ts, test/web-fleet.test.ts.
 */
import test from "ava";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type {Browser, Page} from "playwright-core";
import {startReference} from "../firmware/reference.js";
import type {Device} from "../src/device.js";
import {chromiumAvailable, launchChromium} from "../tools/browser.js";
import {REPO_ROOT, buildFirmware, runFirmware, simulatorAvailable, type FirmwareRun} from "../tools/sim-runner.js";
import {EventLog, eventually, nodePlatform, startRig, uniqueId, type Rig} from "./helpers/e2e.js";

const MODEL_ID = "dtmi:moddable:azureiot:Reference;1";
const MODELS = path.join(REPO_ROOT, "test/fixtures/models");
const browserCheck = chromiumAvailable();

interface Running {
	id: string;
	log: EventLog;
	device: Device;
}

let rig: Rig;
let browser: Browser;
let stateDir: string;
const devices: Device[] = [];
const runs: FirmwareRun[] = [];

function startDevice(prefix: string, settings: Record<string, unknown> = {}): Running {
	const id = uniqueId(prefix);
	const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id});
	const log = new EventLog();
	const device = startReference(nodePlatform(rig, log, path.join(stateDir, `${id}.json`), [], {
		dpsHost: rig.emulator.host, dpsPort: rig.emulator.port, idScope: rig.emulator.idScope, registrationId: id, symmetricKey,
		hubPort: rig.emulator.port, intervalMs: 1000, ...settings,
	}));
	devices.push(device);
	return {id, log, device};
}

async function openPage(hash = ""): Promise<Page> {
	const page = await browser.newPage({viewport: {width: 1280, height: 860}});
	page.setDefaultTimeout(20_000);
	await page.goto(`${rig.emulator.pageUrl}${hash}`);
	await page.getByTestId("live").filter({hasText: "live"}).waitFor();
	return page;
}

/** The device's page, once its row is there and connected. */
async function openDevice(id: string): Promise<Page> {
	const page = await openPage(`#devices/${encodeURIComponent(id)}`);
	await page.locator(`[data-testid=device-detail][data-device-id="${id}"] [data-testid=detail-connected]`).filter({hasText: /^connected$/}).waitFor({timeout: 30_000});
	return page;
}

if (!browserCheck.ok) {
	console.log(`web.test.ts: the browser tests are skipped: ${browserCheck.reason}`);
	test.skip("the emulator's page in Chromium", () => {});
}
else {
	test.before(async () => {
		stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "web-test-devices-"));
		rig = await startRig({modelsDir: MODELS});
		browser = await launchChromium();
	});

	test.after.always(async () => {
		for (const d of devices) d.close();
		await Promise.all(runs.map(r => r.stop()));
		await browser?.close();
		await rig?.emulator.close();
		if (stateDir) fs.rmSync(stateDir, {recursive: true, force: true});
	});

	test.serial("a device appears in the list when it connects, with its model and enrollment", async t => {
		const page = await openPage();
		try {
			const d = startDevice("web-appears", {modelId: MODEL_ID});
			const row = page.locator(`[data-testid=device-row][data-device-id="${d.id}"]`);
			await row.and(page.locator("[data-connected=true]")).waitFor({timeout: 30_000});
			t.regex(await row.innerText(), new RegExp(MODEL_ID.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
			await row.click();
			const detail = page.getByTestId("device-detail");
			await detail.waitFor();
			t.regex(await detail.innerText(), /individual/);
			t.is(await page.getByTestId("detail-model").innerText().then(s => s.startsWith(MODEL_ID)), true);
			t.regex(page.url(), new RegExp(`#devices/${d.id}$`));
		}
		finally {
			await page.close();
		}
	});

	test.serial("a telemetry message shows on the page within two seconds of reaching the hub", async t => {
		const d = startDevice("web-telemetry");
		await d.log.waitFor("hub.connected");
		const page = await openDevice(d.id);
		try {
			for (let i = 0; i < 3; i++) {
				// The next message the hub receives: from that moment the page has two seconds.
				const before = rig.emulator.telemetry(d.id).length;
				const record = await eventually(() => rig.emulator.telemetry(d.id)[before], 15_000, "the next telemetry message");
				const seq = (JSON.parse(record.body) as {seq: number}).seq;
				await page.getByTestId("telemetry-row").filter({hasText: `{"seq":${seq},`}).waitFor({timeout: 2000});
			}
			// Each numeric field is charted, its latest value beside its name.
			for (const field of ["seq", "uptimeMs", "bootCount"]) await page.locator(`[data-testid=chart][data-field="${field}"] canvas`).waitFor();
			const last = Number(await page.locator("[data-testid=chart][data-field=seq] [data-testid=chart-last]").innerText());
			t.true(last >= 3);
			t.regex(await page.getByTestId("telemetry-row").first().innerText(), /seq=\d+/, "the application properties are shown");
		}
		finally {
			await page.close();
		}
	});

	test.serial("a direct method invoked on the page shows the device's answer", async t => {
		const d = startDevice("web-method");
		const page = await openDevice(d.id);
		try {
			await page.getByTestId("pane-methods").click();
			await page.getByTestId("method-name").fill("setTelemetryInterval");
			await page.getByTestId("method-payload").fill("{\"intervalMs\": 2500}");
			await page.getByTestId("method-timeout").fill("10");
			await page.getByTestId("method-invoke").click();
			await page.getByTestId("method-status").waitFor();
			t.is(await page.getByTestId("method-status").innerText(), "200");
			t.deepEqual(JSON.parse(await page.getByTestId("method-response-payload").innerText()), {intervalMs: 2500});
			const invoked = await d.log.waitFor("method.invoked", e => e.name === "setTelemetryInterval");
			t.is(invoked.status, 200);

			// A method the device does not have: its own 404 answer.
			await page.getByTestId("method-name").fill("nope");
			await page.getByTestId("method-payload").fill("");
			await page.getByTestId("method-invoke").click();
			await page.getByTestId("method-status").filter({hasText: "404"}).waitFor();
			t.regex(await page.getByTestId("method-response-payload").innerText(), /no method nope/);
		}
		finally {
			await page.close();
		}
	});

	test.serial("a Plug and Play device's model commands are offered, with a payload of the request schema", async t => {
		const d = startDevice("web-pnp", {modelId: MODEL_ID});
		const page = await openDevice(d.id);
		try {
			await page.getByTestId("pane-methods").filter({hasText: "Commands (4)"}).click();
			const methods = await page.getByTestId("model-command").evaluateAll(els => els.map(e => e.getAttribute("data-method")));
			t.deepEqual(methods, ["reboot", "reprovision", "setTelemetryInterval", "diagnostics*ping"]);
			await page.locator("[data-testid=model-command][data-method=setTelemetryInterval]").click();
			t.is(await page.getByTestId("method-name").inputValue(), "setTelemetryInterval");
			t.deepEqual(JSON.parse(await page.getByTestId("method-payload").inputValue()), {intervalMs: 0});
			await page.getByTestId("method-payload").fill("{\"intervalMs\": 3000}");
			await page.getByTestId("method-invoke").click();
			await page.getByTestId("method-status").filter({hasText: "200"}).waitFor();
			await d.log.waitFor("method.invoked", e => e.name === "setTelemetryInterval" && e.status === 200);
		}
		finally {
			await page.close();
		}
	});

	test.serial("the desired editor checks its JSON, and an edit reaches the device and its acknowledgement shows", async t => {
		const d = startDevice("web-desired", {modelId: MODEL_ID});
		const page = await openDevice(d.id);
		try {
			await page.getByTestId("pane-twin").click();
			const editor = page.getByTestId("desired-editor");
			t.regex(await editor.inputValue(), /telemetryIntervalMs/, "the model's writable property is the template");
			await editor.fill("{\"telemetryIntervalMs\": 1500,");
			t.not(await page.getByTestId("desired-check").innerText(), "valid JSON object");
			t.true(await page.getByTestId("desired-apply").isDisabled());
			await editor.fill("[1, 2]");
			t.regex(await page.getByTestId("desired-check").innerText(), /must be a JSON object/);
			await editor.fill("{\"telemetryIntervalMs\": 1500}");
			t.is(await page.getByTestId("desired-check").innerText(), "valid JSON object");
			await page.getByTestId("desired-apply").click();
			await page.getByTestId("desired-result").filter({hasText: /desired \$version \d+/}).waitFor();
			const version = Number(/\$version (\d+)/.exec(await page.getByTestId("desired-result").innerText())![1]);
			const desired = await d.log.waitFor("twin.desired", e => e.version === version);
			t.deepEqual(desired.keys, ["telemetryIntervalMs"]);
			// The device's acknowledgement comes back live into the reported view.
			await page.getByTestId("twin-reported").filter({hasText: `"av": ${version}`}).waitFor({timeout: 15_000});
			t.like(JSON.parse(await page.getByTestId("twin-reported").innerText()), {telemetryIntervalMs: {value: 1500, ac: 200, av: version}});
			t.regex(await page.getByTestId("desired-version").innerText(), new RegExp(`\\$version ${version}`));
		}
		finally {
			await page.close();
		}
	});

	test.serial("a cloud-to-device message sent from the page reaches the device", async t => {
		const d = startDevice("web-c2d");
		const page = await openDevice(d.id);
		try {
			await page.getByTestId("pane-c2d").click();
			await page.getByTestId("c2d-body").fill("hello from the page");
			await page.getByTestId("c2d-properties").fill("{\"colour\": 1}");
			t.true(await page.getByTestId("c2d-send").isDisabled(), "a property value must be a string");
			await page.getByTestId("c2d-properties").fill("{\"colour\": \"blue\"}");
			await page.getByTestId("c2d-send").click();
			await page.getByTestId("c2d-result").filter({hasText: "Queued as message"}).waitFor();
			const received = await d.log.waitFor("c2d.received", e => e.body === "hello from the page");
			t.deepEqual(received.properties, {colour: "blue"});
		}
		finally {
			await page.close();
		}
	});

	test.serial("a fault switched on in the page is seen by the device, and switched off it goes away", async t => {
		const d = startDevice("web-fault");
		await d.log.waitFor("telemetry.acked");
		const page = await openPage("#faults");
		try {
			await page.getByTestId("fault-kind").selectOption("throttle");
			await page.getByTestId("fault-device").fill(d.id);
			await page.getByTestId("fault-on").click();
			await page.getByTestId("fault-result").filter({hasText: "throttle is on"}).waitFor();
			await page.locator("[data-testid=active-fault][data-kind=throttle]").waitFor();
			const dropped = await d.log.waitFor("hub.disconnected", () => true, 20_000);
			t.truthy(dropped, "the hub closed the device's connection on its next publish");
			await page.getByTestId("fault-off").click();
			await page.locator("[data-testid=active-fault]").waitFor({state: "detached"});
			t.deepEqual(rig.emulator.faultEntries(), []);
			// Without the fault the device is back and its telemetry acknowledged again.
			const since = d.log.events.length;
			await eventually(() => d.log.events.slice(since).some(e => e.event === "telemetry.acked"), 30_000, "telemetry acknowledged after the fault is off");
		}
		finally {
			await page.close();
		}
	});

	test.serial("updates and deployments show with their state, live; a deployment is made and canceled from the page", async t => {
		const d = startDevice("web-adu");
		await d.log.waitFor("hub.connected");
		const file = path.join(stateDir, "firmware-1.1.bin");
		fs.writeFileSync(file, Buffer.alloc(4096, 7));
		const version = `1.1.${process.pid}`;
		rig.emulator.importUpdate({provider: "Contoso", name: "WebTest", version, file, compatibility: {manufacturer: "Contoso", model: "WebTest"}});
		const page = await openPage("#updates");
		try {
			await page.getByTestId("update-row").filter({hasText: `Contoso/WebTest/${version}`}).waitFor();
			await page.getByTestId("deploy-update").selectOption(`Contoso/WebTest/${version}`);
			await page.getByTestId("deploy-devices").fill(d.id);
			await page.getByTestId("deploy").click();
			await page.getByTestId("updates-result").filter({hasText: /Deployment .* started/}).waitFor();
			const deployment = page.getByTestId("deployment").filter({hasText: d.id});
			await deployment.and(page.locator("[data-state=inProgress]")).waitFor();
			// The deployment went to the device through its twin.
			await d.log.waitFor("twin.desired", e => (e.keys as string[]).includes("deviceUpdate"));
			t.is(rig.emulator.deployments().find(x => x.devices.some(v => v.deviceId === d.id))?.state, "inProgress");
			await deployment.getByTestId("deployment-cancel").click();
			await deployment.and(page.locator("[data-state=canceled]")).waitFor();
			t.is(await deployment.getByTestId("deployment-device").getAttribute("data-state"), "canceled");
		}
		finally {
			await page.close();
		}
	});

	const sim = simulatorAvailable();
	if (!sim.ok) {
		console.log(`web.test.ts: the firmware test is skipped: ${sim.reason}`);
		test.skip("the firmware on the simulator, on the page", () => {});
	}
	else {
		test.serial("the firmware on the Moddable simulator: it appears, its telemetry shows, a method and a desired edit reach it", async t => {
			t.timeout(900_000);
			const id = uniqueId("web-sim");
			const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id});
			const build = await buildFirmware({
				sdk: sim.sdk,
				buildDir: path.join(REPO_ROOT, "build/sim-web/firmware"),
				settings: {
					dpsHost: rig.emulator.host, dpsPort: rig.emulator.port, idScope: rig.emulator.idScope, registrationId: id, symmetricKey,
					hubPort: rig.emulator.port, intervalMs: 1000, modelId: MODEL_ID,
				},
				roots: [rig.emulator.caDer],
			});
			const run = runFirmware({soPath: build.soPath, sdk: sim.sdk, fresh: true});
			runs.push(run);
			await run.waitFor("hub.connected", {timeoutMs: 120_000});
			const page = await openDevice(id);
			try {
				t.is(await page.getByTestId("detail-model").innerText().then(s => s.startsWith(MODEL_ID)), true);
				await page.getByTestId("telemetry-row").first().waitFor({timeout: 15_000});
				await page.getByTestId("pane-methods").click();
				await page.locator("[data-testid=model-command][data-method=setTelemetryInterval]").click();
				await page.getByTestId("method-payload").fill("{\"intervalMs\": 2000}");
				await page.getByTestId("method-invoke").click();
				await page.getByTestId("method-status").filter({hasText: "200"}).waitFor({timeout: 30_000});
				t.deepEqual(JSON.parse(await page.getByTestId("method-response-payload").innerText()), {intervalMs: 2000});
				await run.waitFor(e => e.event === "method.invoked" && e.name === "setTelemetryInterval", {timeoutMs: 30_000});

				await page.getByTestId("pane-twin").click();
				await page.getByTestId("desired-editor").fill("{\"telemetryIntervalMs\": 3000}");
				await page.getByTestId("desired-apply").click();
				await page.getByTestId("desired-result").filter({hasText: /desired \$version \d+/}).waitFor();
				const version = Number(/\$version (\d+)/.exec(await page.getByTestId("desired-result").innerText())![1]);
				await run.waitFor(e => e.event === "twin.desired" && e.version === version, {timeoutMs: 30_000});
				await page.getByTestId("twin-reported").filter({hasText: `"av": ${version}`}).waitFor({timeout: 30_000});
			}
			finally {
				await page.close();
				await run.stop();
			}
		});
	}
}
