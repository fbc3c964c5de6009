/*
 * The emulator playing Device Update for IoT Hub, examined from outside: its signature with an
 * independent verifier (which also passes Microsoft's known-answer vector), deployments through
 * the twin to a raw MQTT device acting like the ESP32 sample, the file server and its faults.
 */
import test from "ava";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import {fileURLToPath} from "node:url";
import type {MqttClient} from "mqtt";
import {loadAduKeys} from "../emulator/adu/keys.js";
import {type Emulator, type ImportedUpdate, startEmulator} from "../emulator/index.js";
import {type RootKey, verifyManifest} from "./helpers/adu-verify.js";
import {Inbox, connect, end, hubCredentials, provision, publish, subscribe, uniqueId} from "./helpers/emulator-client.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const ADU_MODEL = "dtmi:azure:iot:deviceUpdateContractModel;2";

let emu: Emulator;
let workDir: string;
test.before(async () => {
	emu = await startEmulator();
	workDir = fs.mkdtempSync(path.join(os.tmpdir(), "adu-emulator-test-"));
});
test.after.always(async () => {
	await emu?.close();
	if (workDir) fs.rmSync(workDir, {recursive: true, force: true});
});

let versionCounter = 0;
/** A firmware file of `size` random bytes and an update made of it, each with a version of its own. */
function importFirmware(e: Emulator = emu, size = 10_000, extra: Record<string, unknown> = {}): {update: ImportedUpdate; data: Buffer; file: string; fileId: string} {
	const data = crypto.randomBytes(size);
	const file = path.join(workDir, `firmware-${++versionCounter}.bin`);
	fs.writeFileSync(file, data);
	const update = e.importUpdate({
		provider: "Contoso", name: "ESP32-Azure-IoT-Kit", version: `1.${versionCounter}`, file,
		compatibility: {manufacturer: "ESPRESSIF", model: "ESP32-Azure-IoT-Kit"}, ...extra,
	} as never);
	return {update, data, file, fileId: Object.keys(update.fileUrls)[0]};
}

function decodeSegment(segment: string): any {
	return JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
}

// ---------------------------------------------------------------- Microsoft's known-answer vector

const kat = JSON.parse(fs.readFileSync(path.join(ROOT, "test/fixtures/adu/kat.json"), "utf8"));

test("KAT fixture: the shape the device's verifier reads, 3072-bit ADU root keys, the manifest bytes the C array holds", t => {
	t.deepEqual(Object.keys(kat), ["source", "licence", "validManifest", "validJws", "invalidManifest", "wrongShaJws", "rootKeys"]);
	t.regex(kat.source, /^Azure\/azure-iot-middleware-freertos@[0-9a-f]{40} tests\/ut\/azure_iot_jws_mbedtls_ut\.c$/);
	t.deepEqual(kat.rootKeys.map((k: RootKey) => k.kid), ["ADU.200702.R", "ADU.200703.R"]);
	for (const key of kat.rootKeys as RootKey[]) {
		t.deepEqual(Object.keys(key), ["kid", "n", "e"]);
		const n = Buffer.from(key.n, "base64");
		t.is(n.length, 384, `${key.kid}: no leading zero byte`);
		t.true((n[0] & 0x80) !== 0, `${key.kid}: a full 3072-bit modulus`);
		t.is(key.e, "AQAB");
	}
	t.is(Buffer.byteLength(kat.validManifest, "utf8"), 544);
	// The test's own comment names the signed hash: the manifest string is exactly the C array.
	t.is(crypto.createHash("sha256").update(kat.validManifest, "utf8").digest("base64"), "Ly9jOXGsVoCWZ3CutXlYcWCeXcewbDxF/Fn5j3k+ImY=");
	t.is(kat.invalidManifest, kat.validManifest.replace("\"manifestVersion\":\"4\"", "\"manifestVersion\":\"5\""));
	t.is(decodeSegment(kat.validJws.split(".")[1]).sha256, "Ly9jOXGsVoCWZ3CutXlYcWCeXcewbDxF/Fn5j3k+ImY=");
});

test("KAT: the test verifier passes Microsoft's valid vector and fails the changed manifest and the changed hash", t => {
	t.deepEqual(verifyManifest(kat.validManifest, kat.validJws, kat.rootKeys), {ok: true, rootKid: "ADU.200702.R", signingKid: "ADU.210609.R.S"});
	t.like(verifyManifest(kat.invalidManifest, kat.validJws, kat.rootKeys), {ok: false, reason: "the manifest's SHA-256 differs from the signed one"});
	t.like(verifyManifest(kat.validManifest, kat.wrongShaJws, kat.rootKeys), {ok: false, reason: "the manifest signature does not verify with the signing key"});
	t.like(verifyManifest(kat.validManifest, kat.validJws, kat.rootKeys.filter((k: RootKey) => k.kid !== "ADU.200702.R")), {ok: false, reason: "no root key with kid ADU.200702.R"});
	t.like(verifyManifest(kat.validManifest, kat.validJws, [{...kat.rootKeys[1], kid: "ADU.200702.R"}]), {ok: false, reason: "the signing key's signature does not verify with the root key"});
	t.false(verifyManifest(kat.validManifest, `${kat.validJws}.x`, kat.rootKeys).ok);
});

// ---------------------------------------------------------------- import and signature

test("import: the manifest in ADU's form and order, signed as ADU signs, within the middleware's buffers", t => {
	const {update, data, fileId} = importFirmware(emu, 12_345);
	t.deepEqual(Object.keys(update), ["updateId", "manifest", "signature", "fileUrls", "httpsFileUrls"]);
	t.regex(fileId, /^f[0-9a-f]{16}$/);
	const manifest = JSON.parse(update.manifest);
	t.deepEqual(Object.keys(manifest), ["manifestVersion", "updateId", "compatibility", "instructions", "files", "createdDateTime"]);
	t.is(manifest.manifestVersion, "5");
	t.deepEqual(manifest.updateId, update.updateId);
	t.deepEqual(Object.keys(manifest.updateId), ["provider", "name", "version"]);
	t.deepEqual(manifest.compatibility, [{deviceManufacturer: "ESPRESSIF", deviceModel: "ESP32-Azure-IoT-Kit"}]);
	t.deepEqual(manifest.instructions, {steps: [{handler: "microsoft/swupdate:1", files: [fileId], handlerProperties: {installedCriteria: update.updateId.version}}]});
	t.deepEqual(manifest.files, {[fileId]: {fileName: path.basename(Object.values(update.fileUrls)[0]), sizeInBytes: 12_345, hashes: {sha256: crypto.createHash("sha256").update(data).digest("base64")}}});
	t.regex(manifest.createdDateTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/);
	t.is(update.manifest, JSON.stringify(manifest), "compact JSON, nothing between tokens");

	const [H, P, S] = update.signature.split(".");
	t.regex(update.signature, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/, "base64url without padding");
	const header = decodeSegment(H);
	t.deepEqual(Object.keys(header), ["alg", "sjwk"]);
	t.is(header.alg, "RS256");
	const [h, p, s] = header.sjwk.split(".");
	t.deepEqual(decodeSegment(h), {alg: "RS256", kid: emu.aduRootKey.kid});
	const jwk = decodeSegment(p);
	t.deepEqual(Object.keys(jwk), ["kty", "n", "e", "alg", "kid"]);
	t.like(jwk, {kty: "RSA", e: "AQAB", alg: "RS256"});
	t.is(Buffer.from(jwk.n, "base64").length, 384, "an RSA-3072 signing key, n in standard base64");
	t.not(jwk.kid, emu.aduRootKey.kid);
	t.deepEqual(decodeSegment(P), {sha256: crypto.createHash("sha256").update(update.manifest, "utf8").digest("base64")});
	// azure_iot_jws.h: header 1400, JWK header 48, JWK payload 700, payload 60, signature 400 bytes.
	t.true(Buffer.from(H, "base64url").length <= 1400);
	t.true(Buffer.from(h, "base64url").length <= 48);
	t.true(Buffer.from(p, "base64url").length <= 700);
	t.true(Buffer.from(P, "base64url").length <= 60);
	t.is(Buffer.from(S, "base64url").length, 384);
	t.is(Buffer.from(s, "base64url").length, 384);

	t.like(verifyManifest(update.manifest, update.signature, [emu.aduRootKey]), {ok: true, rootKid: emu.aduRootKey.kid, signingKid: jwk.kid});
	t.false(verifyManifest(update.manifest.replace("\"manifestVersion\":\"5\"", "\"manifestVersion\":\"4\""), update.signature, [emu.aduRootKey]).ok);
	t.false(verifyManifest(update.manifest, update.signature, kat.rootKeys).ok, "Microsoft's roots do not vouch for the emulator's key");
});

test("import: the handler and installedCriteria can be set; leading zeros of the version are dropped as ADU does", t => {
	const {update} = importFirmware(emu, 100, {handler: "contoso/firmware:2", installedCriteria: "build-77", version: "07.010"});
	t.deepEqual(update.updateId, {provider: "Contoso", name: "ESP32-Azure-IoT-Kit", version: "7.10"});
	const step = JSON.parse(update.manifest).instructions.steps[0];
	t.is(step.handler, "contoso/firmware:2");
	t.deepEqual(step.handlerProperties, {installedCriteria: "build-77"});
	t.true(emu.updates().some(u => u.updateId.version === "7.10" && u.manifest === update.manifest));
});

async function api(method: string, route: string, body?: unknown, e: Emulator = emu): Promise<{status: number; body: any}> {
	const res = await fetch(e.apiUrl + route, {method, headers: {"content-type": "application/json"}, body: body === undefined ? undefined : JSON.stringify(body)});
	const text = await res.text();
	return {status: res.status, body: text ? JSON.parse(text) : undefined};
}

test("import over HTTP: bad input is a 400 naming the field, a second import of an update id is a 409", async t => {
	const file = path.join(workDir, "api-firmware.bin");
	fs.writeFileSync(file, crypto.randomBytes(50));
	const good = {provider: "Contoso", name: "Api-Kit", version: "2.0", file, compatibility: {manufacturer: "ESPRESSIF", model: "ESP32"}};
	const created = await api("POST", "/updates", good);
	t.is(created.status, 201);
	t.deepEqual(created.body.updateId, {provider: "Contoso", name: "Api-Kit", version: "2.0"});
	t.true(verifyManifest(created.body.manifest, created.body.signature, [emu.aduRootKey]).ok);
	t.true((await api("GET", "/updates")).body.some((u: ImportedUpdate) => u.manifest === created.body.manifest));
	const again = await api("POST", "/updates", good);
	t.is(again.status, 409);
	t.regex(again.body.error, /already imported/);

	const cases: [Record<string, unknown>, RegExp][] = [
		[{provider: "Con toso"}, /"provider"/],
		[{provider: "x".repeat(65)}, /"provider"/],
		[{name: "a/b"}, /"name"/],
		[{version: "1"}, /"version"/],
		[{version: "1.2.3.4.5"}, /"version"/],
		[{version: "1.x"}, /"version"/],
		[{version: "1.2147483648"}, /"version"/],
		[{version: 1.2}, /"version"/],
		[{file: path.join(workDir, "missing.bin")}, /"file" .*missing\.bin cannot be read/],
		[{file: workDir}, /not a regular file/],
		[{compatibility: {manufacturer: "ESPRESSIF"}}, /"compatibility\.model"/],
		[{compatibility: {manufacturer: "E", model: "M", color: "red"}}, /unknown key "color"/],
		[{compatibility: "ESPRESSIF"}, /"compatibility"/],
		[{handler: "swupdate"}, /"handler"/],
		[{installedCriteria: ""}, /"installedCriteria"/],
		[{installedcriteria: "1.0"}, /Unknown key "installedcriteria"/],
	];
	for (const [change, message] of cases) {
		const reply = await api("POST", "/updates", {...good, version: "2.1", ...change});
		t.is(reply.status, 400, JSON.stringify(change));
		t.regex(reply.body.error, message, JSON.stringify(change));
	}
	const empty = path.join(workDir, "empty.bin");
	fs.writeFileSync(empty, "");
	t.regex((await api("POST", "/updates", {...good, version: "2.2", file: empty})).body.error, /empty/);
});

test("the key chain is cached in the data directory: a restart keeps the root; the root key file holds {kid, n, e}", async t => {
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "adu-keys-test-"));
	t.teardown(() => fs.rmSync(dataDir, {recursive: true, force: true}));
	const first = await startEmulator({dataDir});
	const key = first.aduRootKey;
	const {update} = importFirmware(first, 64);
	await first.close();
	const second = await startEmulator({dataDir});
	t.teardown(() => second.close());
	t.deepEqual(second.aduRootKey, key);
	t.regex(key.kid, /^EMU\.[0-9a-f]{6}\.R$/);
	t.is(Buffer.from(key.n, "base64").length, 384);
	t.is(key.e, "AQAB");
	t.deepEqual(JSON.parse(fs.readFileSync(second.aduRootKeyPath, "utf8")), key);
	t.is(path.dirname(second.aduRootKeyPath), dataDir);
	t.true(verifyManifest(update.manifest, update.signature, [second.aduRootKey]).ok, "an update signed before the restart still verifies");
	t.not(key.kid, emu.aduRootKey.kid, "another data directory, another root");
});

test("an unusable key cache is an error that names the file and the fix", async t => {
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "adu-keys-bad-"));
	t.teardown(() => fs.rmSync(dataDir, {recursive: true, force: true}));
	fs.writeFileSync(path.join(dataDir, "emulator-adu-keys-v1.json"), "{not json");
	await t.throwsAsync(loadAduKeys(dataDir), {message: /emulator-adu-keys-v1\.json is not usable: delete it/});
});

// ---------------------------------------------------------------- a device like the ESP32 sample

interface TwinPatch {
	version: number;
	body: any;
	text: string;
}

/** A raw MQTT device speaking the Device Update PnP component as the FreeRTOS ESP32 sample does. */
class AduDevice {
	#rid = 0;
	client!: MqttClient;
	inbox!: Inbox;

	private constructor(readonly e: Emulator, readonly id: string, readonly key: string, readonly t: {teardown(fn: () => unknown): void}) {}

	static async create(t: {teardown(fn: () => unknown): void}, e: Emulator = emu): Promise<AduDevice> {
		const id = uniqueId("adu-dev");
		const {symmetricKey} = e.addEnrollment({registrationId: id});
		await provision(e, id, symmetricKey);
		const device = new AduDevice(e, id, symmetricKey, t);
		await device.connect();
		return device;
	}

	async connect(): Promise<void> {
		this.client = await connect(this.e, hubCredentials(this.e, this.id, this.key, {modelId: ADU_MODEL}));
		const client = this.client;
		this.t.teardown(() => end(client));
		this.inbox = new Inbox(client);
		await subscribe(client, "$iothub/twin/res/#");
		await subscribe(client, "$iothub/twin/PATCH/properties/desired/#");
	}

	/** A power cycle: a new connection, as after esp_restart. */
	async reboot(): Promise<void> {
		await end(this.client);
		await this.connect();
	}

	/** A reported patch, resolved when the hub answers 204. */
	async report(patch: object): Promise<void> {
		const rid = String(++this.#rid);
		await publish(this.client, `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`, JSON.stringify(patch));
		const reply = await this.inbox.next(m => m.topic.startsWith("$iothub/twin/res/") && new URLSearchParams(m.topic.split("?")[1]).get("$rid") === rid);
		if (!reply.topic.startsWith("$iothub/twin/res/204/")) throw new Error(`reported patch refused: ${reply.topic} ${reply.payload}`);
	}

	async twin(): Promise<any> {
		const rid = String(++this.#rid);
		await publish(this.client, `$iothub/twin/GET/?$rid=${rid}`, "");
		const reply = await this.inbox.next(m => m.topic === `$iothub/twin/res/200/?$rid=${rid}`);
		return JSON.parse(reply.payload.toString("utf8"));
	}

	async nextDesired(): Promise<TwinPatch> {
		const m = await this.inbox.next(x => x.topic.startsWith("$iothub/twin/PATCH/properties/desired/"));
		const text = m.payload.toString("utf8");
		return {version: Number(new URLSearchParams(m.topic.split("?")[1]).get("$version")), body: JSON.parse(text), text};
	}

	/** `az_iot_adu_client_get_agent_state_payload`'s document. */
	agent(state: number, installed: {provider: string; name: string; version: string}, extra: {workflow?: object; lastInstallResult?: object} = {}): object {
		return {deviceUpdate: {__t: "c", agent: {
			deviceProperties: {manufacturer: "ESPRESSIF", model: "ESP32-Azure-IoT-Kit", contractModelId: ADU_MODEL, aduVer: "DU;agent/1.0.0"},
			compatPropertyNames: "manufacturer,model",
			...(extra.lastInstallResult ? {lastInstallResult: extra.lastInstallResult} : {}),
			state,
			...(extra.workflow ? {workflow: extra.workflow} : {}),
			installedUpdateId: JSON.stringify(installed),
		}}};
	}

	ack(version: number, ac = 200): object {
		return {deviceUpdate: {__t: "c", service: {ac, av: version, value: {}}}};
	}
}

const FACTORY = {provider: "Contoso", name: "ESP32-Azure-IoT-Kit", version: "1.0"};
const RESULT_OK = {resultCode: 0, extendedResultCode: 1234, resultDetails: "Ok", stepResults: {step_0: {resultCode: 0, extendedResultCode: 1234, resultDetails: "Ok"}}};

interface Response {
	status: number;
	headers: http.IncomingHttpHeaders;
	body: Buffer;
	/** Set when the connection ended before the body did. */
	error?: string;
}

/** One request with node:http(s), keeping what arrived when the connection breaks. */
function request(url: string, options: {method?: string; headers?: Record<string, string>; ca?: string} = {}): Promise<Response> {
	return new Promise((resolve, reject) => {
		const target = new URL(url);
		const lib = target.protocol === "https:" ? https : http;
		const req = lib.request(target, {method: options.method ?? "GET", headers: options.headers, ca: options.ca, agent: false, timeout: 20_000}, res => {
			const chunks: Buffer[] = [];
			let error: string | undefined;
			res.on("data", (c: Buffer) => chunks.push(c));
			res.on("aborted", () => { error = "aborted"; });
			res.on("error", (e: Error) => { error = e.message; });
			res.on("close", () => resolve({status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), ...(error || !res.complete ? {error: error ?? "incomplete"} : {})}));
		});
		req.on("timeout", () => req.destroy(new Error("request timed out")));
		req.on("error", reject);
		req.end();
	});
}

/** The FreeRTOS sample's download: a HEAD for the size, then 4 KB Range GETs. */
async function downloadLikeTheSample(url: string, ca?: string): Promise<Buffer> {
	const head = await request(url, {method: "HEAD", ca});
	if (head.status !== 200) throw new Error(`HEAD ${head.status}`);
	const size = Number(head.headers["content-length"]);
	const parts: Buffer[] = [];
	for (let start = 0; start < size; start += 4096) {
		const end = Math.min(size, start + 4096) - 1;
		const part = await request(url, {headers: {range: `bytes=${start}-${end}`}, ca});
		if (part.status !== 206 || part.error) throw new Error(`GET ${start}-${end}: ${part.status} ${part.error ?? ""}`);
		parts.push(part.body);
	}
	return Buffer.concat(parts);
}

test("deployment: the twin patch as ADU sends it; ack, download, install, reboot; inProgress → succeeded", async t => {
	const device = await AduDevice.create(t);
	await device.report(device.agent(0, FACTORY));
	const {update, data, fileId} = importFirmware();
	const {deploymentId} = emu.deploy({updateId: update.updateId, deviceIds: [device.id]});
	t.regex(deploymentId, /^[0-9a-f-]{36}$/);

	const patch = await device.nextDesired();
	t.deepEqual(Object.keys(patch.body), ["deviceUpdate", "$version"]);
	t.is(patch.body.$version, patch.version);
	t.deepEqual(Object.keys(patch.body.deviceUpdate), ["__t", "service"]);
	t.is(patch.body.deviceUpdate.__t, "c");
	const service = patch.body.deviceUpdate.service;
	t.deepEqual(Object.keys(service), ["workflow", "updateManifest", "updateManifestSignature", "fileUrls"]);
	t.is(service.workflow.action, 3);
	t.regex(service.workflow.id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
	t.is(service.updateManifest, update.manifest, "the manifest string exactly as signed");
	t.is(service.updateManifestSignature, update.signature);
	t.deepEqual(Object.keys(service.fileUrls), [fileId]);
	t.regex(service.fileUrls[fileId], new RegExp(`^http://localhost:\\d+/devices/${device.id}/files/${fileId}/firmware-\\d+\\.bin$`));
	t.true(verifyManifest(service.updateManifest, service.updateManifestSignature, [emu.aduRootKey]).ok);
	const twin = await device.twin();
	t.deepEqual(twin.desired.deviceUpdate, patch.body.deviceUpdate, "a twin GET has it too");
	t.is(twin.desired.$version, patch.version);

	const view = () => emu.deployment(deploymentId).devices[0];
	t.like(emu.deployment(deploymentId), {deploymentId, updateId: update.updateId, workflowId: service.workflow.id, fileUrlScheme: "http", canceled: false, state: "inProgress"});
	t.like(view(), {deviceId: device.id, state: "inProgress", desiredVersion: patch.version});
	await device.report(device.ack(patch.version));
	t.like(view(), {state: "inProgress", reported: {ac: 200, av: patch.version}});
	await device.report(device.agent(6, FACTORY, {workflow: service.workflow}));
	t.like(view(), {state: "inProgress", reported: {state: 6, workflow: service.workflow}});

	const image = await downloadLikeTheSample(service.fileUrls[fileId]);
	t.true(image.equals(data));
	t.is(crypto.createHash("sha256").update(image).digest("base64"), JSON.parse(service.updateManifest).files[fileId].hashes.sha256);
	t.true(view().download.requests >= 3);
	t.is(view().download.bytes, data.length);

	await device.report(device.agent(6, FACTORY, {workflow: service.workflow, lastInstallResult: RESULT_OK}));
	t.is(view().state, "inProgress", "installed but not yet running the new image");
	await device.reboot();
	await device.report(device.agent(0, update.updateId));
	t.like(view(), {state: "succeeded", reported: {state: 0, installedUpdateId: JSON.stringify(update.updateId), lastInstallResult: RESULT_OK}});
	t.deepEqual(view().problems, []);
	t.is(emu.deployment(deploymentId).state, "succeeded");
	t.true(emu.deployments().some(d => d.deploymentId === deploymentId));
});

test("deployment: a device offline at deploy time gets it on its twin GET; the ack may carry a later $version", async t => {
	const device = await AduDevice.create(t);
	await end(device.client);
	const {update} = importFirmware();
	const {deploymentId} = emu.deploy({updateId: update.updateId, deviceIds: [device.id]});
	await device.connect();
	const twin = await device.twin();
	t.is(twin.desired.deviceUpdate.service.updateManifest, update.manifest);
	emu.patchDesired(device.id, {unrelated: 1});
	await device.nextDesired();
	await device.report(device.ack(twin.desired.$version + 1));
	await device.report(device.agent(0, {provider: "Contoso", name: "ESP32-Azure-IoT-Kit", version: update.updateId.version.replace(/^1\./, "1.0")}));
	t.is(emu.deployment(deploymentId).devices[0].state, "succeeded", "versions compare by number, as ADU drops leading zeros");
});

test("deployment: agent state 255 fails it, and the later state 0 with the old update does not undo that", async t => {
	const device = await AduDevice.create(t);
	const {update} = importFirmware();
	const {deploymentId} = emu.deploy({updateId: update.updateId, deviceIds: [device.id]});
	const {version, body} = await device.nextDesired();
	const workflow = body.deviceUpdate.service.workflow;
	await device.report(device.ack(version));
	await device.report(device.agent(6, FACTORY, {workflow}));
	const failure = {resultCode: 0, extendedResultCode: 0x30000068, resultDetails: "hash mismatch"};
	await device.report(device.agent(255, FACTORY, {workflow, lastInstallResult: failure}));
	t.like(emu.deployment(deploymentId).devices[0], {state: "failed", reason: "the device reported agent state 255 (Failed)", reported: {state: 255, lastInstallResult: failure}});
	await device.report(device.agent(0, FACTORY, {workflow}));
	t.like(emu.deployment(deploymentId), {state: "failed", devices: [{state: "failed", reported: {state: 0}}]});
});

test("deployment: an ac 406 acknowledgement (the sample's 'already installed') fails it as rejected", async t => {
	const device = await AduDevice.create(t);
	const {update} = importFirmware();
	const {deploymentId} = emu.deploy({updateId: update.updateId, deviceIds: [device.id]});
	const {version} = await device.nextDesired();
	await device.report(device.ack(version - 1, 406));
	t.like(emu.deployment(deploymentId).devices[0], {state: "inProgress"}, "an ack of an older request does not count");
	t.regex(emu.deployment(deploymentId).devices[0].problems.join("\n"), /older than this deployment/);
	await device.report(device.ack(version, 406));
	t.like(emu.deployment(deploymentId).devices[0], {state: "failed", reason: `the device rejected the update (service.ac 406, av ${version})`, reported: {ac: 406, av: version}});
});

test("deployment: reports from before it, and for other workflows, do not decide it; malformed reports are noted", async t => {
	const device = await AduDevice.create(t);
	await device.report(device.agent(255, FACTORY, {workflow: {action: 3, id: "an-earlier-workflow"}}));
	const {update} = importFirmware();
	const {deploymentId} = emu.deploy({updateId: update.updateId, deviceIds: [device.id]});
	await device.nextDesired();
	const view = () => emu.deployment(deploymentId).devices[0];
	t.like(view(), {state: "inProgress", reported: {state: 255}});
	await device.report(device.agent(255, FACTORY, {workflow: {action: 3, id: "an-earlier-workflow"}}));
	t.is(view().state, "inProgress");
	t.regex(view().problems.join("\n"), /for workflow an-earlier-workflow, not this deployment's/);
	await device.report({deviceUpdate: {__t: "c", agent: {state: 0, installedUpdateId: update.updateId}}});
	t.is(view().state, "inProgress", "installedUpdateId must be a string holding JSON");
	t.regex(view().problems.join("\n"), /installedUpdateId must be a string holding JSON/);
	await device.report({deviceUpdate: {__t: "c", agent: {state: 3}}});
	t.regex(view().problems.join("\n"), /only 0 \(Idle\), 6 \(DeploymentInProgress\) and 255 \(Failed\) go on the wire/);
	await device.report({deviceUpdate: {__t: "c", agent: {state: 0, installedUpdateId: JSON.stringify(update.updateId)}}});
	t.is(view().state, "succeeded");
});

test("cancel: action 255 \"nodeployment\" with the other keys null; a twin GET keeps only the workflow", async t => {
	const device = await AduDevice.create(t);
	const {update} = importFirmware();
	const {deploymentId} = emu.deploy({updateId: update.updateId, deviceIds: [device.id]});
	const request = await device.nextDesired();
	await device.report(device.ack(request.version));
	await device.report(device.agent(6, FACTORY, {workflow: request.body.deviceUpdate.service.workflow}));
	const canceled = await api("DELETE", `/deployments/${deploymentId}`);
	t.is(canceled.status, 200);
	t.like(canceled.body, {deploymentId, canceled: true, state: "canceled", devices: [{state: "canceled", reason: "the deployment was canceled"}]});
	const cancel = await device.nextDesired();
	t.is(cancel.version, request.version + 1);
	t.is(cancel.text, `{"deviceUpdate":{"__t":"c","service":{"workflow":{"action":255,"id":"nodeployment"},"updateManifest":null,"updateManifestSignature":null,"fileUrls":null}},"$version":${cancel.version}}`);
	t.deepEqual((await device.twin()).desired.deviceUpdate, {__t: "c", service: {workflow: {action: 255, id: "nodeployment"}}});
	await device.report(device.agent(0, FACTORY, {workflow: {action: 255, id: "nodeployment"}}));
	t.is(emu.deployment(deploymentId).devices[0].state, "canceled");
	t.is((await api("DELETE", `/deployments/${deploymentId}`)).status, 200, "canceling again changes nothing");
	t.is((await device.inbox.next(m => m.topic.includes("/desired/"), 300).catch(() => undefined)), undefined, "and sends nothing");
});

test("a new deployment supersedes the device's previous one and nulls the old file ids, as ADU does", async t => {
	const device = await AduDevice.create(t);
	const first = importFirmware();
	const second = importFirmware();
	const a = emu.deploy({updateId: first.update.updateId, deviceIds: [device.id]}).deploymentId;
	await device.nextDesired();
	const b = emu.deploy({updateId: second.update.updateId, deviceIds: [device.id]}).deploymentId;
	const patch = await device.nextDesired();
	t.deepEqual(Object.keys(patch.body.deviceUpdate.service.fileUrls), [first.fileId, second.fileId]);
	t.is(patch.body.deviceUpdate.service.fileUrls[first.fileId], null);
	t.like(emu.deployment(a), {state: "canceled", devices: [{state: "canceled", reason: `superseded by deployment ${b}`}]});
	t.like(emu.deployment(b), {state: "inProgress"});
	t.deepEqual(Object.keys((await device.twin()).desired.deviceUpdate.service.fileUrls), [second.fileId]);
});

test("deploy: unknown update or device, bad lists and schemes are refused before any device is sent anything", async t => {
	const device = await AduDevice.create(t);
	const {update} = importFirmware();
	const before = emu.twin(device.id).desired;
	const cases: [unknown, number, RegExp][] = [
		[{updateId: {...update.updateId, version: "9.9"}, deviceIds: [device.id]}, 404, /No imported update Contoso\/ESP32-Azure-IoT-Kit\/9\.9/],
		[{updateId: update.updateId, deviceIds: [device.id, "no-such-device"]}, 404, /"no-such-device" is not registered/],
		[{updateId: update.updateId, deviceIds: []}, 400, /"deviceIds"/],
		[{updateId: update.updateId, deviceIds: [device.id, device.id]}, 400, /twice/],
		[{updateId: update.updateId, deviceIds: [device.id], fileUrlScheme: "ftp"}, 400, /"fileUrlScheme"/],
		[{updateId: {provider: "Contoso", name: "ESP32-Azure-IoT-Kit"}, deviceIds: [device.id]}, 400, /"updateId\.version"/],
		[{updateId: update.updateId, deviceIds: [device.id], groupId: "g"}, 400, /Unknown key "groupId"/],
	];
	for (const [body, status, message] of cases) {
		const reply = await api("POST", "/deployments", body);
		t.is(reply.status, status, JSON.stringify(body));
		t.regex(reply.body.error, message);
	}
	t.deepEqual(emu.twin(device.id).desired, before);
	t.is((await api("GET", "/deployments/no-such-deployment")).status, 404);
	t.is((await api("DELETE", "/deployments/no-such-deployment")).status, 404);
});

test("HTTP API: import, deploy, watch, list and cancel", async t => {
	const device = await AduDevice.create(t);
	const file = path.join(workDir, "api-deploy.bin");
	fs.writeFileSync(file, crypto.randomBytes(300));
	const imported = await api("POST", "/updates", {provider: "Contoso", name: "Api-Deploy", version: "3.0", file, compatibility: {manufacturer: "ESPRESSIF", model: "ESP32"}, installedCriteria: "3.0"});
	t.is(imported.status, 201);
	const deployed = await api("POST", "/deployments", {updateId: {provider: "Contoso", name: "Api-Deploy", version: "3.0"}, deviceIds: [device.id], fileUrlScheme: "https"});
	t.is(deployed.status, 201);
	t.deepEqual(Object.keys(deployed.body), ["deploymentId"]);
	const {version, body} = await device.nextDesired();
	const url = Object.values(body.deviceUpdate.service.fileUrls)[0] as string;
	t.regex(url, /^https:\/\/localhost:\d+\/devices\//);
	t.true((await downloadLikeTheSample(url, emu.caPem)).equals(fs.readFileSync(file)), "https with the emulator's chain");
	await device.report(device.ack(version));
	const watched = await api("GET", `/deployments/${deployed.body.deploymentId}`);
	t.like(watched.body, {fileUrlScheme: "https", state: "inProgress", devices: [{deviceId: device.id, reported: {ac: 200, av: version}}]});
	t.true((await api("GET", "/deployments")).body.some((d: {deploymentId: string}) => d.deploymentId === deployed.body.deploymentId));
	t.is((await api("DELETE", `/deployments/${deployed.body.deploymentId}`)).body.state, "canceled");
});

// ---------------------------------------------------------------- file server

for (const scheme of ["http", "https"] as const) {
	test(`file server over ${scheme}: GET, HEAD, ranges (a-b, a-, -n), 416, 404 and 405`, async t => {
		const {update, data} = importFirmware(emu, 5000);
		const url = scheme === "http" ? Object.values(update.fileUrls)[0] : Object.values(update.httpsFileUrls)[0];
		t.true(url.startsWith(`${scheme === "http" ? emu.aduFileServer.http : emu.aduFileServer.https}/files/`));
		const ca = emu.caPem;
		const whole = await request(url, {ca});
		t.is(whole.status, 200);
		t.true(whole.body.equals(data));
		t.is(whole.headers["content-length"], "5000");
		t.is(whole.headers["accept-ranges"], "bytes");
		t.is(whole.headers["content-type"], "application/octet-stream");

		const head = await request(url, {method: "HEAD", ca});
		t.is(head.status, 200);
		t.is(head.headers["content-length"], "5000");
		t.is(head.headers["accept-ranges"], "bytes");
		t.is(head.body.length, 0);

		const ranges: [string, number, number][] = [["bytes=0-4095", 0, 4095], ["bytes=4096-", 4096, 4999], ["bytes=4096-9999", 4096, 4999], ["bytes=-10", 4990, 4999], ["bytes=17-17", 17, 17]];
		for (const [range, start, end] of ranges) {
			const part = await request(url, {headers: {range}, ca});
			t.is(part.status, 206, range);
			t.is(part.headers["content-range"], `bytes ${start}-${end}/5000`, range);
			t.is(part.headers["content-length"], String(end - start + 1), range);
			t.true(part.body.equals(data.subarray(start, end + 1)), range);
		}
		const outside = await request(url, {headers: {range: "bytes=5000-"}, ca});
		t.is(outside.status, 416);
		t.is(outside.headers["content-range"], "bytes */5000");
		t.is((await request(url, {headers: {range: "bytes=0-1,5-6"}, ca})).status, 200, "several ranges: the whole file, as RFC 9110 allows");

		const base = scheme === "http" ? emu.aduFileServer.http : emu.aduFileServer.https;
		t.is((await request(`${base}/files/f0000000000000000/x.bin`, {ca})).status, 404);
		t.is((await request(url.replace(/[^/]+$/, "other-name.bin"), {ca})).status, 404, "the URL names the file");
		t.is((await request(url, {method: "POST", ca})).status, 405);
	});
}

test("file server over https: the chain is leaf + intermediate to the emulator's root, for localhost and 127.0.0.1", async t => {
	const {update, data} = importFirmware(emu, 100);
	const url = Object.values(update.httpsFileUrls)[0];
	t.true((await request(url, {ca: emu.caPem})).body.equals(data));
	t.true((await request(url.replace("//localhost:", "//127.0.0.1:"), {ca: emu.caPem})).body.equals(data));
	await t.throwsAsync(request(url), {message: /certificate/i}, "not trusted without the emulator's root");
});

test("fault download.drop: the connection is cut after afterBytes of the body, count times", async t => {
	const {update, data, fileId} = importFirmware(emu, 5000);
	const url = Object.values(update.fileUrls)[0];
	emu.addFault({kind: "download.drop", afterBytes: 1000, count: 1, fileId});
	const cut = await request(url);
	t.is(cut.status, 200);
	t.truthy(cut.error);
	t.true(cut.body.equals(data.subarray(0, 1000)));
	const whole = await request(url);
	t.falsy(whole.error);
	t.true(whole.body.equals(data));

	emu.addFault({kind: "download.drop", afterBytes: 0, count: 1, fileId});
	const none = await request(url, {headers: {range: "bytes=100-199"}});
	t.is(none.status, 206);
	t.is(none.body.length, 0);
	t.truthy(none.error);
	t.is((await api("POST", "/faults", {kind: "download.drop"})).status, 400);
	t.is((await api("POST", "/faults", {kind: "download.slow", bytesPerSecond: 0})).status, 400);
});

test("fault download.corrupt: the byte at a file offset is changed in what is served, in the range that holds it", async t => {
	const {update, data, fileId} = importFirmware(emu, 5000);
	const url = Object.values(update.fileUrls)[0];
	emu.addFault({kind: "download.corrupt", offset: 4100, count: 1, fileId});
	t.true((await request(url, {headers: {range: "bytes=0-4095"}})).body.equals(data.subarray(0, 4096)), "a range without the offset is served intact");
	const hit = await request(url, {headers: {range: "bytes=4096-4999"}});
	t.is(hit.body.length, 904);
	t.is(hit.body[4], data[4100] ^ 0xff);
	t.true(Buffer.concat([hit.body.subarray(0, 4), hit.body.subarray(5)]).equals(Buffer.concat([data.subarray(4096, 4100), data.subarray(4101)])), "only that byte");
	t.true((await request(url)).body.equals(data), "count 1: once");
	t.deepEqual(emu.faults().filter(f => "fileId" in f && f.fileId === fileId), []);
});

test("fault download.slow: the body comes at most bytesPerSecond, intact", async t => {
	const {update, data, fileId} = importFirmware(emu, 1500);
	const url = Object.values(update.fileUrls)[0];
	emu.addFault({kind: "download.slow", bytesPerSecond: 3000, count: 1, fileId});
	const started = Date.now();
	const slow = await request(url);
	// A lower bound that the rate limit guarantees, whatever the machine's speed.
	t.true(Date.now() - started >= 450);
	t.falsy(slow.error);
	t.true(slow.body.equals(data));
});

test("download faults may name a device: only that device's URLs get them", async t => {
	const device = await AduDevice.create(t);
	const {update, data} = importFirmware();
	emu.deploy({updateId: update.updateId, deviceIds: [device.id]});
	const {body} = await device.nextDesired();
	const deviceUrl = Object.values(body.deviceUpdate.service.fileUrls)[0] as string;
	emu.addFault({kind: "download.drop", afterBytes: 10, count: 1, deviceId: device.id});
	t.true((await request(Object.values(update.fileUrls)[0])).body.equals(data), "the generic URL is not that device's");
	t.truthy((await request(deviceUrl)).error);
	t.true((await request(deviceUrl)).body.equals(data));
});
