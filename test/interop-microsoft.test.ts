/*
 * Microsoft's own Node device SDK against the emulator: the proof that the emulator speaks Azure's
 * dialect (usernames with extra parameters, an unencoded DPS `sr`, `%24`-encoded property keys...).
 *
 * Pointing the SDK at the emulator needs no weakened checks:
 * - DPS: the provisioning host carries the port (`localhost:PORT`, the transport builds
 *   `mqtts://` + host), and the root is trusted through the MqttBase the transport is built on.
 * - Hub: the connection string's `GatewayHostName=localhost:PORT` (the SDK's IoT Edge gateway
 *   setting) sets where to connect, while `HostName` stays the assigned hub used in the username and
 *   the token's `sr`; `client.setOptions({ca})` trusts the root.
 */
import test from "ava";
import {createRequire} from "node:module";
import azureDevice from "azure-iot-device";
import deviceMqtt from "azure-iot-device-mqtt";
import provisioningDevice from "azure-iot-provisioning-device";
import provisioningMqtt from "azure-iot-provisioning-device-mqtt";
import symmetricKeySecurity from "azure-iot-security-symmetric-key";
import {type Emulator, startEmulator} from "../emulator/index.js";
import {deriveKey, eventually, uniqueId} from "./helpers/emulator-client.js";

const {Client, Message} = azureDevice;
const {ProvisioningDeviceClient} = provisioningDevice;
const {SymmetricKeySecurityClient} = symmetricKeySecurity;

// The MqttBase copy the provisioning transport itself depends on (npm nests its own version).
const requireFromTransport = createRequire(createRequire(import.meta.url).resolve("azure-iot-provisioning-device-mqtt"));
const {MqttBase} = requireFromTransport("azure-iot-mqtt-base") as {MqttBase: new () => {setOptions(options: object): void}};

const MODEL_ID = "dtmi:com:example:Thermostat;1";

let emu: Emulator;
test.before(async () => {
	emu = await startEmulator();
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

async function provisionWithSdk(registrationId: string, key: string, payload?: object) {
	const base = new MqttBase();
	base.setOptions({ca: emu.caPem});
	const transport = new provisioningMqtt.Mqtt(base as never);
	const security = new SymmetricKeySecurityClient(registrationId, key);
	const client = ProvisioningDeviceClient.create(`localhost:${emu.port}`, emu.idScope, transport, security as never);
	if (payload) client.setProvisioningPayload(payload);
	try {
		return await within(client.register() as Promise<provisioningDevice.RegistrationResult>, 30_000, "provisioning");
	}
	finally {
		await new Promise<void>(resolve => transport.disconnect(() => resolve()));
	}
}

async function openHubClient(t: {teardown(fn: () => unknown): void}, assignedHub: string, deviceId: string, key: string) {
	const client = Client.fromConnectionString(`HostName=${assignedHub};DeviceId=${deviceId};SharedAccessKey=${key};GatewayHostName=localhost:${emu.port}`, deviceMqtt.Mqtt);
	client.on("error", () => {});
	t.teardown(() => within(client.close().then(() => undefined), 10_000, "close").catch(() => undefined));
	await client.setOptions({ca: emu.caPem, modelId: MODEL_ID} as never);
	await within(client.open(), 15_000, "hub open");
	return client;
}

const subscribed = (deviceId: string, filter: string) =>
	eventually(() => !!emu.devices().find(d => d.deviceId === deviceId)?.subscriptions.includes(filter), 10_000, `the SDK to subscribe to ${filter}`);

test("Microsoft's SDK provisions with an individual enrollment, then uses telemetry, C2D, twin and methods on the hub", async t => {
	const registrationId = uniqueId("ms-sdk");
	const {symmetricKey} = emu.addEnrollment({registrationId});
	const result = await provisionWithSdk(registrationId, symmetricKey, {modelId: MODEL_ID});
	t.like(result, {registrationId, deviceId: registrationId, assignedHub: emu.hubName, status: "assigned", substatus: "initialAssignment"});
	t.deepEqual(result.payload, {modelId: MODEL_ID});
	const dpsStats = emu.stats().devices[registrationId];
	t.is(dpsStats.dpsRegisterRequests, 1);
	t.true(dpsStats.dpsPollRequests >= 1);

	const client = await openHubClient(t, result.assignedHub!, result.deviceId!, symmetricKey);
	const deviceId = result.deviceId!;
	t.like(emu.devices().find(d => d.deviceId === deviceId), {connected: true, modelId: MODEL_ID});

	// Telemetry with application and system properties.
	const message = new Message(JSON.stringify({temperature: 21.5}));
	message.properties.add("alert", "high temp");
	message.messageId = "m-1";
	message.contentType = "application/json";
	message.contentEncoding = "utf-8";
	await within(client.sendEvent(message), 10_000, "sendEvent");
	const [record] = emu.telemetry(deviceId);
	t.is(record.body, JSON.stringify({temperature: 21.5}));
	t.deepEqual(record.properties, {alert: "high temp"});
	t.like(record.systemProperties, {"$.mid": "m-1", "$.ct": "application/json", "$.ce": "utf-8"});
	t.is(record.qos, 1);

	// Cloud-to-device.
	const received = new Promise<InstanceType<typeof Message>>(resolve => client.on("message", m => {
		client.complete(m, () => {});
		resolve(m);
	}));
	await subscribed(deviceId, `devices/${deviceId}/messages/devicebound/#`);
	const {messageId} = emu.sendC2d(deviceId, {body: "hello device", properties: {colour: "blue"}});
	const c2d = await within(received, 10_000, "C2D message");
	t.is(c2d.data.toString(), "hello device");
	t.is(c2d.messageId, messageId);
	t.is(c2d.properties.getValue("colour"), "blue");
	await eventually(() => emu.c2dQueue(deviceId) === 0, 10_000, "the C2D message to be completed");

	// Twin: get, reported update, desired update.
	const twin = await within(client.getTwin(), 10_000, "getTwin");
	t.is(twin.properties.desired.$version, 1);
	await within(new Promise<void>((resolve, reject) => twin.properties.reported.update({firmware: "1.0.0"}, (e?: Error) => (e ? reject(e) : resolve()))), 10_000, "reported update");
	t.deepEqual(emu.twin(deviceId).reported, {firmware: "1.0.0", $version: 2});
	const desired = new Promise<Record<string, unknown>>(resolve => twin.on("properties.desired", (patch: Record<string, unknown>) => {
		if (patch.targetTemperature !== undefined) resolve(patch);
	}));
	await subscribed(deviceId, "$iothub/twin/PATCH/properties/desired/#");
	const {version} = emu.patchDesired(deviceId, {targetTemperature: 22});
	t.like(await within(desired, 10_000, "desired update"), {targetTemperature: 22, $version: version});

	// Direct method.
	client.onDeviceMethod("reboot", (request, response) => {
		response.send(200, {rebooting: true, delay: (request.payload as {delay: number}).delay}, () => {});
	});
	await subscribed(deviceId, "$iothub/methods/POST/#");
	t.deepEqual(await emu.invokeMethod(deviceId, "reboot", {delay: 3}, 10), {status: 200, payload: {rebooting: true, delay: 3}});
});

test("Microsoft's SDK provisions with a group-derived key and sends telemetry", async t => {
	const groupId = uniqueId("ms-group");
	const {symmetricKey: groupKey} = emu.addEnrollmentGroup({groupId});
	const registrationId = uniqueId("ms-sdk-grp");
	const deviceKey = deriveKey(groupKey, registrationId);
	const result = await provisionWithSdk(registrationId, deviceKey);
	t.like(result, {registrationId, deviceId: registrationId, status: "assigned"});
	t.is(emu.devices().find(d => d.deviceId === registrationId)?.enrollmentGroupId, groupId);

	const client = await openHubClient(t, result.assignedHub!, result.deviceId!, deviceKey);
	await within(client.sendEvent(new Message("from a group member")), 10_000, "sendEvent");
	t.is(emu.telemetry(registrationId)[0].body, "from a group member");
});

test("Microsoft's SDK reports the emulator's 401 for a key that does not verify", async t => {
	const registrationId = uniqueId("ms-sdk-bad");
	emu.addEnrollment({registrationId});
	const error = await t.throwsAsync(provisionWithSdk(registrationId, Buffer.alloc(32, 9).toString("base64")));
	t.is(error?.name, "UnauthorizedError");
});
