/*
 * Microsoft's own Node device SDK with X.509 against the emulator: provisioning through an
 * individual enrollment and through enrollment groups (azure-iot-security-x509) whose verified CA is
 * the root (leaf + intermediate sent) or the intermediate (the leaf alone), then the hub with the
 * same certificate (connection string `x509=true`, `setOptions({cert, key})`); what the SDK reports
 * when DPS or the hub refuses a certificate (expired, untrusted, wrong CN, wrong thumbprint); and
 * what it does with a key that is not the certificate's (Node's TLS refuses it before connecting). Pointed at the emulator as in
 * interop-microsoft.test.ts: the root is trusted through the transport's MqttBase and setOptions.
 * The SDK reads GatewayHostName only from SAS connection strings, so for `x509=true` the test builds
 * the X509AuthenticationProvider that Client.fromConnectionString builds, with the gateway host added.
 */
import test from "ava";
import {spawn} from "node:child_process";
import * as fs from "node:fs";
import {createRequire} from "node:module";
import * as os from "node:os";
import * as path from "node:path";
import azureDevice from "azure-iot-device";
import deviceMqtt from "azure-iot-device-mqtt";
import provisioningDevice from "azure-iot-provisioning-device";
import provisioningMqtt from "azure-iot-provisioning-device-mqtt";
import x509Security from "azure-iot-security-x509";
import {type Emulator, startEmulator} from "../emulator/index.js";
import {eventually, uniqueId} from "./helpers/emulator-client.js";
import {REPO_ROOT} from "../tools/sim-runner.js";
import {type DeviceCredential, enrollFleet, fleet} from "./helpers/x509.js";

const {Client, Message, X509AuthenticationProvider} = azureDevice;
const {ProvisioningDeviceClient} = provisioningDevice;
const {X509Security} = x509Security;

const requireFromTransport = createRequire(createRequire(import.meta.url).resolve("azure-iot-provisioning-device-mqtt"));
const {MqttBase} = requireFromTransport("azure-iot-mqtt-base") as {MqttBase: new () => {setOptions(options: object): void}};

let emu: Emulator;
const ROOT = "fleet-root";
test.before(async () => {
	emu = await startEmulator();
	// The fleet root, known to DPS and to the hub, verified by proof of possession (one code serves both).
	emu.addCertificate({name: ROOT, pem: fleet.root.certPem, target: "both"});
	const {verificationCode} = emu.certificateVerificationCode(ROOT);
	emu.verifyCertificate(ROOT, fleet.verificationCertificate(fleet.root, verificationCode));
	emu.addEnrollmentGroup({groupId: "fleet", attestation: {type: "x509", caName: ROOT}});
});
test.after.always(async () => {
	await emu?.close();
});

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
	let timer: NodeJS.Timeout;
	return Promise.race([
		promise.finally(() => clearTimeout(timer)),
		new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms); }),
	]);
}

async function provisionWithSdk(registrationId: string, credential: DeviceCredential, e: Emulator = emu) {
	const base = new MqttBase();
	base.setOptions({ca: e.caPem});
	const transport = new provisioningMqtt.Mqtt(base as never);
	const security = new X509Security(registrationId, {cert: credential.chainPem, key: credential.keyPem});
	const client = ProvisioningDeviceClient.create(`localhost:${e.port}`, e.idScope, transport, security as never);
	try {
		return await within(client.register() as Promise<provisioningDevice.RegistrationResult>, 30_000, "provisioning");
	}
	finally {
		await new Promise<void>(resolve => transport.disconnect(() => resolve()));
	}
}

async function openHubClient(t: {teardown(fn: () => unknown): void}, deviceId: string, credential: DeviceCredential, e: Emulator = emu) {
	// What `HostName=${e.hubName};DeviceId=${deviceId};x509=true` gives, plus where to connect.
	const provider = new X509AuthenticationProvider({host: e.hubName, deviceId, gatewayHostName: `localhost:${e.port}`} as never);
	const client = Client.fromAuthenticationProvider(provider, deviceMqtt.Mqtt);
	client.on("error", () => {});
	t.teardown(() => within(client.close().then(() => undefined), 10_000, "close").catch(() => undefined));
	await client.setOptions({ca: e.caPem, cert: credential.chainPem, key: credential.keyPem} as never);
	await within(client.open(), 15_000, "hub open");
	return client;
}

async function hubRefusal(t: {teardown(fn: () => unknown): void}, deviceId: string, credential: DeviceCredential) {
	const before = emu.stats().refusedConnects;
	const error = await openHubClient(t, deviceId, credential).then(() => undefined, (e: Error) => e);
	return {error, refused: emu.stats().refusedConnects - before};
}

test("Microsoft's SDK provisions with an X.509 individual enrollment, then sends telemetry, reads the twin and answers a method with the same certificate", async t => {
	const registrationId = uniqueId("ms-x509");
	const credential = fleet.selfSigned(registrationId);
	emu.addEnrollment({attestation: {type: "x509", certificate: credential.certPem}});
	const result = await provisionWithSdk(registrationId, credential);
	t.like(result, {registrationId, deviceId: registrationId, assignedHub: emu.hubName, status: "assigned"});
	t.like(emu.devices().find(d => d.deviceId === registrationId), {authentication: "selfSigned"}, "DPS registered the leaf's thumbprint with the hub");

	const client = await openHubClient(t, registrationId, credential);
	await within(client.sendEvent(new Message(JSON.stringify({temperature: 20}))), 10_000, "sendEvent");
	t.is(emu.telemetry(registrationId)[0].body, JSON.stringify({temperature: 20}));
	const twin = await within(client.getTwin(), 10_000, "getTwin");
	t.is(twin.properties.desired.$version, 1);
	client.onDeviceMethod("ping", (_request, response) => {
		response.send(200, {pong: true}, () => {});
	});
	await eventually(() => !!emu.devices().find(d => d.deviceId === registrationId)?.subscriptions.includes("$iothub/methods/POST/#"), 10_000, "the method subscription");
	t.deepEqual(await emu.invokeMethod(registrationId, "ping", {}, 10), {status: 200, payload: {pong: true}});
});

test("Microsoft's SDK provisions through an X.509 enrollment group (leaf and intermediate sent, root verified), then uses the hub", async t => {
	const registrationId = uniqueId("ms-x509-grp");
	const credential = fleet.leaf(registrationId);
	const result = await provisionWithSdk(registrationId, credential);
	t.like(result, {registrationId, deviceId: registrationId, status: "assigned"});
	t.like(emu.devices().find(d => d.deviceId === registrationId), {authentication: "certificateAuthority", enrollmentGroupId: "fleet"});

	const client = await openHubClient(t, registrationId, credential);
	await within(client.sendEvent(new Message("from a CA-signed device")), 10_000, "sendEvent");
	t.is(emu.telemetry(registrationId)[0].body, "from a CA-signed device");
	const twin = await within(client.getTwin(), 10_000, "getTwin");
	t.deepEqual(twin.properties.reported.$version, 1);
});

test("Microsoft's SDK provisions through a group whose verified CA is the intermediate, sending the leaf alone, then uses the hub", async t => {
	const e = await startEmulator();
	t.teardown(() => e.close());
	enrollFleet(e, "intermediate", "fleet-intermediate");
	const registrationId = uniqueId("ms-x509-int");
	const credential = fleet.leaf(registrationId, {leafOnly: true});
	t.like(await provisionWithSdk(registrationId, credential, e), {registrationId, deviceId: registrationId, status: "assigned"});
	t.like(e.devices().find(d => d.deviceId === registrationId), {authentication: "certificateAuthority", enrollmentGroupId: "fleet-intermediate"});
	const client = await openHubClient(t, registrationId, credential, e);
	await within(client.sendEvent(new Message("leaf only")), 10_000, "sendEvent");
	t.is(e.telemetry(registrationId)[0].body, "leaf only");
	const twin = await within(client.getTwin(), 10_000, "getTwin");
	t.is(twin.properties.desired.$version, 1);
});

test.serial("Microsoft's SDK with a key that is not the certificate's: provisioning rejects before connecting; the hub client's open() throws it uncaught; neither service sees a connection", async t => {
	const registrationId = uniqueId("ms-x509-key");
	const credential = {...fleet.leaf(registrationId), keyPem: fleet.other.keyPem};
	const before = emu.stats().connects + emu.stats().refusedConnects;
	const dpsError = await t.throwsAsync(provisionWithSdk(registrationId, credential));
	t.regex(dpsError!.message, /key values mismatch/);

	// The hub client in a child process: the SDK's mqtt client builds the TLS stream where the throw escapes every callback.
	emu.addDevice({deviceId: registrationId, authentication: {type: "certificateAuthority"}});
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ms-x509-key-"));
	t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}));
	const input = path.join(dir, "input.json");
	fs.writeFileSync(input, JSON.stringify({hub: emu.hubName, gateway: `localhost:${emu.port}`, ca: emu.caPem, deviceId: registrationId, cert: credential.chainPem, key: credential.keyPem}), {mode: 0o600});
	const script = path.join(dir, "open.cjs");
	fs.writeFileSync(script, `
		const input = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
		const {Client, X509AuthenticationProvider} = require("azure-iot-device");
		const {Mqtt} = require("azure-iot-device-mqtt");
		const client = Client.fromAuthenticationProvider(new X509AuthenticationProvider({host: input.hub, deviceId: input.deviceId, gatewayHostName: input.gateway}), Mqtt);
		client.on("error", e => console.log("error event: " + e.message));
		client.setOptions({ca: input.ca, cert: input.cert, key: input.key})
			.then(() => client.open())
			.then(() => console.log("opened"), e => console.log("rejected: " + e.message));
		setTimeout(() => process.exit(3), 15000);
	`);
	const child = await new Promise<{code: number | null; output: string}>(resolve => {
		const p = spawn(process.execPath, [script, input], {cwd: REPO_ROOT, env: {...process.env, NODE_PATH: path.join(REPO_ROOT, "node_modules")}, stdio: ["ignore", "pipe", "pipe"]});
		let output = "";
		p.stdout.on("data", d => { output += d; });
		p.stderr.on("data", d => { output += d; });
		p.on("close", code => resolve({code, output}));
	});
	t.is(child.code, 1, "the process died of the uncaught exception");
	t.regex(child.output, /key values mismatch/);
	t.notRegex(child.output, /opened|rejected|error event/, "neither open()'s promise nor the error event told the application");
	t.is(emu.stats().connects + emu.stats().refusedConnects, before, "neither DPS nor the hub saw a connection");
	t.false(registrationId in emu.stats().devices);
});

test("Microsoft's SDK provisions and connects with an EC P-256 device certificate (the emulator takes ECC, as Azure does)", async t => {
	const registrationId = uniqueId("ms-x509-ec");
	const credential = fleet.leaf(registrationId, {ec: true});
	t.like(await provisionWithSdk(registrationId, credential), {registrationId, status: "assigned"});
	const client = await openHubClient(t, registrationId, credential);
	await within(client.sendEvent(new Message("ecc")), 10_000, "sendEvent");
	t.is(emu.telemetry(registrationId)[0].body, "ecc");
});

test("DPS refuses an expired, an untrusted and a wrong-CN certificate: Microsoft's SDK reports UnauthorizedError (401)", async t => {
	const expired = uniqueId("ms-x509-expired");
	const expiredCredential = fleet.selfSigned(expired, {expired: true});
	emu.addEnrollment({registrationId: expired, attestation: {type: "x509", thumbprints: {primary: expiredCredential.sha1}}});
	const untrusted = uniqueId("ms-x509-untrusted");
	const cases: [string, string, DeviceCredential][] = [
		["expired", expired, expiredCredential],
		["untrusted (issued by a CA DPS does not know)", untrusted, fleet.leaf(untrusted, {issuer: "other"})],
		["wrong CN", uniqueId("ms-x509-cn"), fleet.leaf("someone-else")],
	];
	for (const [what, registrationId, credential] of cases) {
		const error = await t.throwsAsync(provisionWithSdk(registrationId, credential), undefined, what);
		t.is(error?.name, "UnauthorizedError", what);
		t.is(emu.stats().devices[registrationId]?.dpsRegisterRequests, 1, `${what}: refused at register (401), not at CONNECT`);
		t.false(emu.devices().some(d => d.registrationId === registrationId), `${what}: no hub device`);
	}
});

test("the hub refuses an expired, an untrusted, a wrong-CN and a wrong-thumbprint certificate with CONNACK 5: Microsoft's SDK reports UnauthorizedError", async t => {
	const thumbprintDevice = uniqueId("hub-x509-tp");
	const good = fleet.selfSigned(thumbprintDevice);
	emu.addDevice({deviceId: thumbprintDevice, authentication: {type: "selfSigned", primaryThumbprint: good.sha256}});
	const expiredDevice = uniqueId("hub-x509-exp");
	const expired = fleet.selfSigned(expiredDevice, {expired: true});
	emu.addDevice({deviceId: expiredDevice, authentication: {type: "selfSigned", primaryThumbprint: expired.sha1}});
	const caDevice = uniqueId("hub-x509-ca");
	emu.addDevice({deviceId: caDevice, authentication: {type: "certificateAuthority"}});

	const cases: [string, string, DeviceCredential][] = [
		["expired", expiredDevice, expired],
		["untrusted CA", caDevice, fleet.leaf(caDevice, {issuer: "other"})],
		["wrong CN", caDevice, fleet.leaf(`${caDevice}-other`)],
		["thumbprint mismatch", thumbprintDevice, fleet.selfSigned(thumbprintDevice)],
	];
	for (const [what, deviceId, credential] of cases) {
		const {error, refused} = await hubRefusal(t, deviceId, credential);
		t.is(error?.name, "UnauthorizedError", what);
		t.is(refused, 1, `${what}: refused at CONNECT`);
	}
	// The same devices connect with the right certificates.
	await openHubClient(t, thumbprintDevice, good);
	await openHubClient(t, caDevice, fleet.leaf(caDevice));
	t.pass();
});
