/*
 * The emulator accepts what Azure accepts from Microsoft's own clients, in the forms Microsoft's
 * Node and Embedded C SDKs produce that the Node SDK cannot be made to send here: examined with a
 * raw MQTT client (mqtt.js) and the test helper's own SAS computation.
 */
import test from "ava";
import {type Emulator, EmulatorHttpError, startEmulator} from "../emulator/index.js";
import {
	ConnackError, Inbox, connect, deriveKey, dpsCredentials, end, eventually, hubCredentials, inAnHour, parseDpsReply,
	provision, publish, sasToken, subscribe, uniqueId,
} from "./helpers/emulator-client.js";

let emu: Emulator;
test.before(async () => {
	emu = await startEmulator();
});
test.after.always(async () => {
	await emu?.close();
});

const MODEL_ID = "dtmi:com:example:Thermostat;1";

async function connackOf(p: Promise<unknown>): Promise<number> {
	try {
		await end(await p as never);
		return 0;
	}
	catch (error) {
		return error instanceof ConnackError ? error.returnCode : -1;
	}
}

/** Register with `body` exactly as given, then poll to the end. */
async function registerRaw(registrationId: string, key: string, body: string, credentials = dpsCredentials(emu, registrationId, key)) {
	const client = await connect(emu, credentials);
	try {
		const inbox = new Inbox(client);
		await subscribe(client, "$dps/registrations/res/#");
		await publish(client, "$dps/registrations/PUT/iotdps-register/?$rid=1", body);
		let reply = parseDpsReply(await inbox.next());
		for (let i = 2; i < 12 && reply.status === 202; i++) {
			await publish(client, `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=${i}&operationId=${encodeURIComponent(reply.body.operationId)}`, "");
			reply = parseDpsReply(await inbox.next());
		}
		return reply;
	}
	finally {
		await end(client);
	}
}

// ---------------------------------------------------------------- DPS

test("DPS takes an enrollment token without skn (Microsoft's Embedded C SDK sends none)", async t => {
	const id = uniqueId("no-skn");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	const credentials = {...dpsCredentials(emu, id, symmetricKey), password: sasToken(`${emu.idScope}/registrations/${id}`, symmetricKey, inAnHour())};
	t.false(credentials.password.includes("skn="));
	const reply = await registerRaw(id, symmetricKey, JSON.stringify({registrationId: id}), credentials);
	t.is(reply.body?.status, "assigned");
});

test("DPS takes an empty register body (Microsoft's Embedded C provisioning sample publishes one)", async t => {
	const id = uniqueId("empty-body");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	const reply = await registerRaw(id, symmetricKey, "");
	t.is(reply.status, 200);
	t.like(reply.body.registrationState, {registrationId: id, deviceId: id, status: "assigned"});
	t.false("payload" in reply.body.registrationState);
	t.is((await registerRaw(id, symmetricKey, "{not json")).status, 400, "a body that is there must still be JSON");
});

test("DPS: registration ids are case-insensitive: upper case registers, and the body's id may differ from the connection's in case only", async t => {
	const id = uniqueId("UPPER-Case");
	const {symmetricKey} = emu.addEnrollment({registrationId: id.toLowerCase()});
	// The emulator used to compare the body's registrationId with the connection's exactly.
	const reply = await registerRaw(id, symmetricKey, JSON.stringify({registrationId: id.toLowerCase()}));
	t.is(reply.body?.status, "assigned");
	t.is(reply.body.registrationState.deviceId, id);
	t.is((await registerRaw(id, symmetricKey, JSON.stringify({registrationId: "someone-else"}))).status, 400);

	// A group member with an upper-case id (its key is derived from the id as sent), then on the hub.
	const {symmetricKey: groupKey} = emu.addEnrollmentGroup({groupId: uniqueId("Group-UPPER")});
	const member = uniqueId("MEMBER");
	const memberKey = deriveKey(groupKey, member);
	t.is(await provision(emu, member, memberKey), member);
	t.is(await connackOf(connect(emu, hubCredentials(emu, member, memberKey))), 0);
});

test("DPS refuses a registration id DPS does not define (400004 \"Invalid RegistrationId\"), and so does the API", async t => {
	for (const bad of ["ends-with-dot.", "has space", "colon-last:"]) {
		const reply = await registerRaw(bad, Buffer.alloc(32, 1).toString("base64"), "");
		t.is(reply.status, 400, bad);
		t.is(reply.body.errorCode, 400004, bad);
		t.throws(() => emu.addEnrollment({registrationId: bad}), {instanceOf: EmulatorHttpError}, bad);
	}
	t.notThrows(() => emu.addEnrollment({registrationId: uniqueId("ends-with-dash-")}));
});

test("DPS username: &ClientVersion= (Microsoft's SDKs) before or after api-version; api-version is required", async t => {
	const id = uniqueId("client-version");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	const good = dpsCredentials(emu, id, symmetricKey);
	const base = `${emu.idScope}/registrations/${id}`;
	t.is(await connackOf(connect(emu, {...good, username: `${base}/api-version=2019-03-31&ClientVersion=azsdk-c%2F1.5.0`})), 0);
	t.is(await connackOf(connect(emu, {...good, username: `${base}/ClientVersion=azure-iot-provisioning-device%2F1.9.1&api-version=2019-03-31`})), 0);
	t.is(await connackOf(connect(emu, {...good, username: `${base}/ClientVersion=x`})), 4, "no api-version");
});

// ---------------------------------------------------------------- hub

async function hubDevice() {
	const id = uniqueId("fid-hub");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	await provision(emu, id, symmetricKey);
	return {id, key: symmetricKey, good: hubCredentials(emu, id, symmetricKey)};
}

test("hub username: DeviceClientType as Microsoft's SDKs announce it, in any position", async t => {
	const {id, good} = await hubDevice();
	const prefix = `${emu.hubName}/${id}/?`;
	// Node: encodeURIComponent of "azure-iot-device/1.18.4 (node v20.20.2; Linux 6.1; x64)"; Embedded C: "azsdk-c/1.5.0".
	const node = `DeviceClientType=${encodeURIComponent("azure-iot-device/1.18.4 (node v20.20.2; Linux 6.1; x64)")}`;
	t.is(await connackOf(connect(emu, {...good, username: `${prefix}api-version=2021-04-12&${node}`})), 0);
	t.is(await connackOf(connect(emu, {...good, username: `${prefix}DeviceClientType=azsdk-c%2F1.5.0&api-version=2020-09-30`})), 0);
});

test("hub username: model-id raw or percent-encoded, before or after api-version, is recorded", async t => {
	const {id, good} = await hubDevice();
	const prefix = `${emu.hubName}/${id}/?`;
	const forms = [
		`api-version=2021-04-12&model-id=${MODEL_ID}`,
		`api-version=2021-04-12&model-id=${encodeURIComponent(MODEL_ID)}`,
		`model-id=${encodeURIComponent(MODEL_ID)}&api-version=2021-04-12&DeviceClientType=azsdk-c%2F1.5.0`,
	];
	for (const query of forms) {
		const client = await connect(emu, {...good, username: prefix + query});
		await eventually(() => emu.devices().find(d => d.deviceId === id)?.connected === true, 5000, "connected");
		t.is(emu.devices().find(d => d.deviceId === id)?.modelId, MODEL_ID, query);
		await end(client);
		await eventually(() => emu.devices().find(d => d.deviceId === id)?.connected === false, 5000, "disconnected");
	}
});
