/*
 * Device Update on the device, end to end on the Node host against the emulator: the application
 * API's `update` option (src/device/update.ts) with a file as the image store. An update is imported
 * and deployed; the device verifies, downloads, hashes, "installs" (the file becomes boot.img) and
 * restarts (the test makes a new Device running the new version, with the same storage), then
 * reports the new id; and every refusal and failure leaves it on its old image with the deployment
 * failed, and does not come back in a loop.
 */
import test, {type ExecutionContext} from "ava";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {Device, type UpdateOptions} from "../src/device.js";
import {createNodePlatform} from "../hosts/node/platform.js";
import {createFileImageStore, type FileImageStoreOptions} from "../hosts/node/images.js";
import {LAST_KEY, PENDING_KEY} from "../src/device/update.js";
import type {ImportedUpdate} from "../emulator/index.js";
import {EventLog, eventually, startRig, uniqueId, type Rig} from "./helpers/e2e.js";

let rig: Rig;
test.before(async () => { rig = await startRig(); });
test.after.always(async () => { await rig?.emulator.close(); });

const MANUFACTURER = "Contoso";
const MODEL = "Gadget";
const OLD = "1.0.0";

interface Agent {
	state: number;
	installedUpdateId: string;
	workflow?: {action: number; id: string};
	lastInstallResult?: {resultCode: number; extendedResultCode: number; resultDetails?: string};
}

/** One device across its restarts: the same identity, storage and image directory. */
class Unit {
	readonly id = uniqueId("adu-device");
	readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), "adu-device-"));
	readonly storageFile = path.join(this.dir, "prefs.json");
	readonly imagesDir = path.join(this.dir, "images");
	readonly key: string;
	boots: EventLog[] = [];
	lines: string[] = [];
	device: Device | undefined;
	/** What a restart boots: the version of the image made bootable, or the old one if none was. */
	onReboot: () => void = () => this.restart(fs.existsSync(path.join(this.imagesDir, "boot.img")) ? this.next ?? OLD : OLD);
	next: string | undefined;

	constructor(readonly t: ExecutionContext, readonly o: {capacity?: number; trustEmulator?: boolean; settings?: Record<string, unknown>; update?: UpdateOptions; images?: Partial<FileImageStoreOptions>} = {}) {
		this.key = rig.emulator.addEnrollment({registrationId: this.id}).symmetricKey;
		t.teardown(() => {
			this.device?.close();
			fs.rmSync(this.dir, {recursive: true, force: true});
		});
	}

	get log(): EventLog {
		return this.boots[this.boots.length - 1];
	}

	start(version = OLD, extra: {settings?: Record<string, unknown>; images?: Partial<FileImageStoreOptions>} = {}): Device {
		const log = new EventLog();
		this.boots.push(log);
		const e = rig.emulator;
		const images = createFileImageStore({dir: this.imagesDir, capacity: this.o.capacity ?? 1024 * 1024, ...this.o.images, ...extra.images});
		const platform = createNodePlatform({
			roots: rig.roots, emit: log.emit, print: () => {}, log: line => this.lines.push(line), storageFile: this.storageFile, images,
			reboot: () => this.onReboot(),
			settings: {
				dpsHost: e.host, dpsPort: e.port, idScope: e.idScope, registrationId: this.id, symmetricKey: this.key, hubPort: e.port,
				firmwareVersion: version, aduManufacturer: MANUFACTURER, aduModel: MODEL,
				...(this.o.trustEmulator === false ? {} : {aduRootKey: JSON.stringify(e.aduRootKey)}),
				...this.o.settings, ...extra.settings,
			},
		});
		this.device = new Device({platform, update: this.o.update ?? true, onError: () => {}});
		return this.device;
	}

	restart(version: string, extra: {settings?: Record<string, unknown>; images?: Partial<FileImageStoreOptions>} = {}): void {
		this.device?.close();
		this.start(version, extra);
	}

	agent(): Agent | undefined {
		const reported = this.reported();
		return (reported?.deviceUpdate as {agent?: Agent} | undefined)?.agent;
	}

	/** The reported section; undefined until DPS has created the hub device. */
	reported(): Record<string, unknown> | undefined {
		try {
			return rig.emulator.twin(this.id).reported as Record<string, unknown>;
		}
		catch {
			return undefined;
		}
	}

	service(): {ac?: number; av?: number} | undefined {
		return (this.reported()?.deviceUpdate as {service?: {ac?: number; av?: number}} | undefined)?.service;
	}

	/** Waits until the device reports agent state 0 with `version` installed (given `result`, after the report with that extendedResultCode). */
	async idleOn(version: string, result?: number): Promise<Agent> {
		return eventually(() => {
			const a = this.agent();
			if (result !== undefined && a?.lastInstallResult?.extendedResultCode !== result) return undefined;
			return a && a.state === 0 && (JSON.parse(a.installedUpdateId) as {version: string}).version === version ? a : undefined;
		}, 40_000, `state 0 on ${version}${result !== undefined ? ` after result ${result}` : ""}`);
	}
}

/** A random image file of `size` bytes, imported as version `version` of the device's update. */
function importImage(t: ExecutionContext, version: string, size: number, o: {model?: string; installedCriteria?: string} = {}): {update: ImportedUpdate; data: Buffer; fileId: string} {
	const data = crypto.randomBytes(size);
	const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "adu-image-")), `app-${version}.bin`);
	fs.writeFileSync(file, data);
	t.teardown(() => fs.rmSync(path.dirname(file), {recursive: true, force: true}));
	const update = rig.emulator.importUpdate({
		provider: MANUFACTURER, name: `${MODEL}-${uniqueId("u").replace(/[^A-Za-z0-9]/g, "")}`, version, file,
		compatibility: {manufacturer: MANUFACTURER, model: o.model ?? MODEL},
		...(o.installedCriteria !== undefined ? {installedCriteria: o.installedCriteria} : {}),
	});
	return {update, data, fileId: Object.keys(update.fileUrls)[0]};
}

function deploymentState(deploymentId: string) {
	return rig.emulator.deployment(deploymentId).devices[0];
}

async function settled(deploymentId: string, state: string): Promise<void> {
	await eventually(() => deploymentState(deploymentId).state === state, 40_000, `the deployment to be ${state} (it is ${deploymentState(deploymentId).state}: ${deploymentState(deploymentId).reason ?? ""})`);
}

/** The update's provider/name/version with a version of its own, as the new image reports it. */
function nextVersionOf(update: ImportedUpdate): string {
	return update.updateId.version;
}

test("an update end to end: offered, accepted, downloaded (events at most every 10%), verified, installed, restarted; reports 0 with the new id; deployment succeeded", async t => {
	const unit = new Unit(t, {update: {provider: MANUFACTURER, name: "ignored"}});
	const {update, data} = importImage(t, "1.1", 300_000);
	// The running image's update id must be the one imported (same provider and name): give them in code.
	unit.o.update!.name = update.updateId.name;
	unit.start();
	const before = await unit.idleOn(OLD);
	t.is(before.workflow, undefined, "no workflow at the first boot");
	t.deepEqual(JSON.parse(before.installedUpdateId), {provider: MANUFACTURER, name: update.updateId.name, version: OLD});
	t.is(rig.emulator.devices().find(d => d.deviceId === unit.id)?.modelId, "dtmi:azure:iot:deviceUpdateContractModel;2");

	unit.next = nextVersionOf(update);
	const {deploymentId} = rig.emulator.deploy({updateId: update.updateId, deviceIds: [unit.id]});
	const first = unit.log;
	await first.waitFor("update.offered");
	const accepted = await first.waitFor("update.accepted");
	t.like(accepted, {updateId: update.updateId, sizeInBytes: data.length});
	await first.waitFor("update.verified", () => true, 40_000);
	await first.waitFor("update.installing");
	await first.waitFor("update.rebooting");
	const downloads = first.events.filter(e => e.event === "update.download");
	t.true(downloads.length >= 1 && downloads.length <= 10, `${downloads.length} download events`);
	t.deepEqual(downloads.map(e => e.bytes as number), [...downloads.map(e => e.bytes as number)].sort((a, b) => a - b));
	t.is(downloads[downloads.length - 1].bytes, data.length);
	t.is(downloads[downloads.length - 1].total, data.length);
	t.like(unit.service(), {ac: 200});

	await eventually(() => unit.boots.length === 2, 40_000, "the restart");
	const after = await unit.idleOn(update.updateId.version);
	t.deepEqual(JSON.parse(after.installedUpdateId), update.updateId);
	await unit.log.waitFor("update.succeeded");
	await settled(deploymentId, "succeeded");
	t.true(fs.readFileSync(path.join(unit.imagesDir, "boot.img")).equals(data), "the image made bootable is the file imported");
	t.is(deploymentState(deploymentId).problems.length, 0, deploymentState(deploymentId).problems.join("; "));
	// The twin still holds the deployment: a later boot acknowledges it and does nothing else.
	const requests = deploymentState(deploymentId).download.requests;
	unit.restart(update.updateId.version);
	await unit.idleOn(update.updateId.version);
	await eventually(() => unit.lines.some(l => /already done/.test(l)) || undefined, 20_000, "the 'already done' log");
	t.is(deploymentState(deploymentId).download.requests, requests, "no second download");
	t.is(unit.log.count("update.offered"), 0, "known as done: not even verified again");
	t.is(unit.log.count("update.accepted"), 0);
});

test("a dropped download is resumed with Range from where it stopped, and succeeds", async t => {
	const unit = new Unit(t);
	const {update, data, fileId} = importImage(t, "1.2", 200_000);
	unit.o.update = {name: update.updateId.name};
	unit.start();
	await unit.idleOn(OLD);
	rig.emulator.addFault({kind: "download.drop", afterBytes: 70_000, fileId, deviceId: unit.id, count: 1});
	unit.next = update.updateId.version;
	const {deploymentId} = rig.emulator.deploy({updateId: update.updateId, deviceIds: [unit.id]});
	const resumed = await unit.log.waitFor("update.resuming", () => true, 40_000);
	t.is(resumed.bytes, 70_000, "resumed from the first byte that did not arrive");
	await settled(deploymentId, "succeeded");
	t.true(fs.readFileSync(path.join(unit.imagesDir, "boot.img")).equals(data));
	const served = deploymentState(deploymentId).download;
	t.is(served.requests, 2);
	t.is(served.bytes, data.length, "no byte was downloaded twice");
});

test("refused: a manifest signed under a root key the device does not trust (a production build meeting the emulator)", async t => {
	const unit = new Unit(t, {trustEmulator: false});
	const {update} = importImage(t, "1.3", 10_000);
	unit.start();
	await unit.idleOn(OLD);
	const {deploymentId} = rig.emulator.deploy({updateId: update.updateId, deviceIds: [unit.id]});
	const rejected = await unit.log.waitFor("update.rejected");
	t.like(rejected, {code: "adu.signature", reason: "jwsUnknownRootKey"});
	t.regex(rejected.message as string, /unknown root key id "EMU\./);
	await settled(deploymentId, "failed");
	t.like(unit.service(), {ac: 406});
	const agent = await unit.idleOn(OLD, 203);
	t.like(agent.lastInstallResult, {extendedResultCode: 203});
	t.is(unit.log.count("update.accepted"), 0);
	t.is(deploymentState(deploymentId).download.requests, 0, "nothing downloaded");
});

test("refused: a signature that was changed, and a manifest that was changed after signing", async t => {
	const unit = new Unit(t);
	const {update} = importImage(t, "1.4", 10_000);
	unit.start();
	await unit.idleOn(OLD);
	const [h, p, s] = update.signature.split(".");
	const flipped = s.slice(0, 10) + (s[10] === "A" ? "B" : "A") + s.slice(11);
	const service = (workflowId: string, manifest: string, signature: string) => ({deviceUpdate: {__t: "c", service: {
		workflow: {action: 3, id: workflowId}, updateManifest: manifest, updateManifestSignature: signature, fileUrls: update.fileUrls,
	}}});
	rig.emulator.patchDesired(unit.id, service("bad-signature", update.manifest, `${h}.${p}.${flipped}`));
	t.like(await unit.log.waitFor("update.rejected", e => e.workflowId === "bad-signature"), {code: "adu.signature", reason: "jwsManifestSignature"});
	const tampered = update.manifest.replace("\"sizeInBytes\":10000", "\"sizeInBytes\":10001");
	t.not(tampered, update.manifest);
	rig.emulator.patchDesired(unit.id, service("changed-manifest", tampered, update.signature));
	t.like(await unit.log.waitFor("update.rejected", e => e.workflowId === "changed-manifest"), {code: "adu.signature", reason: "jwsManifestHash"});
	await eventually(() => unit.agent()?.workflow?.id === "changed-manifest" && unit.agent()?.state === 0, 20_000, "the report after the refusal");
	t.is(unit.log.count("update.accepted"), 0);
});

test("refused: an update for another model", async t => {
	const unit = new Unit(t);
	const {update} = importImage(t, "1.5", 10_000, {model: "OtherGadget"});
	unit.start();
	await unit.idleOn(OLD);
	const {deploymentId} = rig.emulator.deploy({updateId: update.updateId, deviceIds: [unit.id]});
	const rejected = await unit.log.waitFor("update.rejected");
	t.like(rejected, {code: "adu.incompatible", reason: "incompatible"});
	t.regex(rejected.message as string, /OtherGadget/);
	await settled(deploymentId, "failed");
	t.like((await unit.idleOn(OLD, 301)).lastInstallResult, {extendedResultCode: 301});
});

test("refused: an image larger than the space for it", async t => {
	const unit = new Unit(t, {capacity: 64 * 1024});
	const {update} = importImage(t, "1.6", 100_000);
	unit.start();
	await unit.idleOn(OLD);
	const {deploymentId} = rig.emulator.deploy({updateId: update.updateId, deviceIds: [unit.id]});
	const rejected = await unit.log.waitFor("update.rejected");
	t.like(rejected, {code: "adu.tooLarge", reason: "tooLarge"});
	t.regex(rejected.message as string, /100000 bytes; this device has room for 65536/);
	await settled(deploymentId, "failed");
	t.is(deploymentState(deploymentId).download.requests, 0);
});

test("refused: an update whose installedCriteria the device meets already", async t => {
	const unit = new Unit(t);
	const {update} = importImage(t, "1.7", 10_000, {installedCriteria: OLD});
	unit.start();
	await unit.idleOn(OLD);
	const {deploymentId} = rig.emulator.deploy({updateId: update.updateId, deviceIds: [unit.id]});
	t.like(await unit.log.waitFor("update.rejected"), {code: "adu.alreadyInstalled", reason: "alreadyInstalled"});
	await settled(deploymentId, "failed");
	t.like(unit.service(), {ac: 406});
	const agent = await eventually(() => unit.agent()?.lastInstallResult?.resultCode === 603 ? unit.agent() : undefined, 20_000, "the already-installed report");
	t.is(agent.state, 0);
});

test("failed: a corrupted download fails the hash check; nothing is made bootable, and a restart does not try again", async t => {
	const unit = new Unit(t);
	const {update, fileId} = importImage(t, "1.8", 100_000);
	unit.start();
	await unit.idleOn(OLD);
	rig.emulator.addFault({kind: "download.corrupt", offset: 54_321, fileId, deviceId: unit.id, count: 1});
	const {deploymentId} = rig.emulator.deploy({updateId: update.updateId, deviceIds: [unit.id]});
	const failed = await unit.log.waitFor("update.failed", () => true, 40_000);
	t.like(failed, {code: "adu.hash", reason: "fileHashMismatch"});
	await settled(deploymentId, "failed");
	t.false(fs.existsSync(path.join(unit.imagesDir, "boot.img")), "not made bootable");
	t.false(fs.existsSync(path.join(unit.imagesDir, "next.img")), "the partial image is dropped");
	const agent = await unit.idleOn(OLD, 403);
	t.like(agent.lastInstallResult, {extendedResultCode: 403});
	t.is(unit.log.count("update.installing"), 0);
	t.is(JSON.parse(fs.readFileSync(unit.storageFile, "utf8"))[LAST_KEY], JSON.stringify({workflowId: rig.emulator.deployment(deploymentId).workflowId, outcome: "failed"}));

	const requests = deploymentState(deploymentId).download.requests;
	unit.restart(OLD);
	await unit.idleOn(OLD);
	await eventually(() => unit.lines.some(l => /already failed; waiting for a retry/.test(l)) || undefined, 20_000, "the refusal of the same workflow after the restart");
	t.is(deploymentState(deploymentId).download.requests, requests, "no redeploy loop: not downloaded again");
	t.is(unit.log.count("update.accepted"), 0);
});

test("canceled in the middle of the download: the device stops, drops the partial image and reports idle on its old image", async t => {
	const unit = new Unit(t);
	const {update, fileId} = importImage(t, "1.9", 200_000);
	unit.start();
	await unit.idleOn(OLD);
	rig.emulator.addFault({kind: "download.slow", bytesPerSecond: 40_000, fileId, deviceId: unit.id, count: 1});
	const {deploymentId} = rig.emulator.deploy({updateId: update.updateId, deviceIds: [unit.id]});
	await unit.log.waitFor("update.download", () => true, 40_000);
	rig.emulator.cancelDeployment(deploymentId);
	const canceled = await unit.log.waitFor("update.canceled");
	t.is(canceled.workflowId, rig.emulator.deployment(deploymentId).workflowId);
	await eventually(() => unit.agent()?.workflow?.action === 255 && unit.agent()?.state === 0, 20_000, "the report of the cancel");
	t.is(rig.emulator.deployment(deploymentId).state, "canceled");
	await new Promise(r => setTimeout(r, 500));
	t.false(fs.existsSync(path.join(unit.imagesDir, "next.img")), "the partial image is dropped");
	t.false(fs.existsSync(path.join(unit.imagesDir, "boot.img")));
	t.is(unit.log.count("update.installing"), 0);
	t.is(unit.log.count("update.failed"), 0);
});

test("rolled back: the new image does not reach the hub in time; the old one reports 255 then 0 with its own id, and does not take the update again", async t => {
	const unit = new Unit(t);
	const {update} = importImage(t, "2.0", 20_000);
	unit.o.update = {name: update.updateId.name, rollbackAfterMs: 3000};
	let state: "pending" | "confirmed" = "confirmed";
	unit.o.images = {runningState: () => state, confirm: () => { state = "confirmed"; }};
	unit.start();
	await unit.idleOn(OLD);
	// The new image cannot reach the hub (it names a port nothing listens on); ESP-IDF's bootloader would then go back.
	unit.onReboot = () => {
		state = "pending";
		unit.restart(update.updateId.version, {settings: {hubPort: 1}, images: {rollback: () => setImmediate(() => {
			state = "confirmed";
			unit.restart(OLD);
		})}});
	};
	const {deploymentId} = rig.emulator.deploy({updateId: update.updateId, deviceIds: [unit.id]});
	await eventually(() => unit.boots.length === 2, 40_000, "the restart into the new image");
	await unit.log.waitFor("update.rollingBack", () => true, 20_000);
	await eventually(() => unit.boots.length === 3, 20_000, "the rollback");
	const failed = await unit.log.waitFor("update.failed");
	t.like(failed, {code: "adu.rolledBack", reason: "rolledBack"});
	await settled(deploymentId, "failed");
	const agent = await unit.idleOn(OLD, 405);
	t.like(agent.lastInstallResult, {extendedResultCode: 405});
	t.is(JSON.parse(fs.readFileSync(unit.storageFile, "utf8"))[PENDING_KEY], undefined, "the pending record is dealt with");
	t.is(unit.log.count("update.accepted"), 0, "the same deployment is not taken again");
	t.is(unit.boots.length, 3);
});
