/*
 * The emulator examined with a raw MQTT client (mqtt.js) and an independent SAS computation:
 * DPS, the hub's strict checks, faults, the HTTP API and the CLI.
 */
import test from "ava";
import {spawn} from "node:child_process";
import * as tls from "node:tls";
import {type Emulator, EmulatorHttpError, startEmulator} from "../emulator/index.js";
import {deriveDeviceKey, signature} from "../emulator/sas.js";
import {
	ConnackError, DpsSession, Inbox, closed, connect, deriveKey, dpsCredentials, end, eventually, hubCredentials,
	inAnHour, provision, publish, sasToken, subscribe, uniqueId,
} from "./helpers/emulator-client.js";

let emu: Emulator;
test.before(async () => {
	emu = await startEmulator();
});
test.after.always(async () => {
	await emu?.close();
});

/** A registered device, connected to the hub with the raw client. */
async function hubDevice(t: {teardown(fn: () => unknown): void}, e: Emulator = emu, options: {clean?: boolean; modelId?: string; id?: string} = {}) {
	const id = options.id ?? uniqueId("dev");
	const {symmetricKey} = e.addEnrollment({registrationId: id});
	await provision(e, id, symmetricKey);
	const client = await connect(e, hubCredentials(e, id, symmetricKey, options));
	t.teardown(() => end(client));
	return {id, key: symmetricKey, client, inbox: new Inbox(client)};
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

// ---------------------------------------------------------------- SAS

test("the emulator's SAS signature reproduces the protocol note's test vectors", t => {
	const groupKey = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
	const regId = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6";
	const deviceKey = deriveDeviceKey(groupKey, regId);
	t.is(deviceKey, "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=");
	t.is(deriveKey(groupKey, regId), deviceKey, "the test helper agrees");
	t.is(encodeURIComponent(signature(deviceKey, encodeURIComponent(`0ne00000000/registrations/${regId}`), 1700000000)), "UcaBdA4L3Se7NlFQZcBFRndkqyymINWtRUmVT5QYWng%3D");
	t.is(encodeURIComponent(signature(deviceKey, encodeURIComponent(`contoso.azure-devices.net/devices/${regId}`), 1700000000)), "aogMFXumN5h359Jd2lkt0nG5blAJKPNVgoseKPYlK6o%3D");
});

// ---------------------------------------------------------------- DPS

test("DPS: register 202, poll 202 assigning, then 200 with every registration field; re-registration is reprovisioned", async t => {
	const id = uniqueId("dps-flow");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	const dps = await DpsSession.open(emu, id, symmetricKey);
	t.teardown(() => dps.close());

	const registered = await dps.register(id, {modelId: "dtmi:com:example:Thermostat;1"});
	t.is(registered.status, 202);
	t.is(registered.query.get("retry-after"), "1");
	t.is(registered.body.status, "assigning");
	t.regex(registered.body.operationId, /\S+/);

	const assigning = await dps.poll(registered.body.operationId);
	t.is(assigning.status, 202, "pollsBeforeAssigned defaults to 1");
	t.is(assigning.body.status, "assigning");
	t.is(assigning.query.get("retry-after"), "1");

	const done = await dps.poll(registered.body.operationId);
	t.is(done.status, 200);
	t.is(done.query.get("retry-after"), null);
	t.is(done.body.operationId, registered.body.operationId);
	t.is(done.body.status, "assigned");
	const state = done.body.registrationState;
	t.is(state.registrationId, id);
	t.is(state.deviceId, id);
	t.is(state.assignedHub, emu.hubName);
	t.is(state.status, "assigned");
	t.is(state.substatus, "initialAssignment");
	t.regex(state.createdDateTimeUtc, ISO);
	t.regex(state.lastUpdatedDateTimeUtc, ISO);
	t.regex(state.etag, /\S+/);
	t.deepEqual(state.payload, {modelId: "dtmi:com:example:Thermostat;1"}, "the custom payload is echoed");

	const again = await dps.provision(id);
	t.is(again.status, 200);
	t.is(again.body.registrationState.substatus, "reprovisionedToInitialAssignment");
	t.is(again.body.registrationState.createdDateTimeUtc, state.createdDateTimeUtc);
	t.false("payload" in again.body.registrationState, "no payload sent, none returned");

	const stats = emu.stats().devices[id];
	t.is(stats.dpsRegisterRequests, 2, "register requests are counted apart");
	t.is(stats.dpsPollRequests, 4, "from poll requests");
	t.like(emu.devices().find(d => d.deviceId === id), {registrationId: id, connected: false, hubName: emu.hubName, connectCount: 0});
});

test("DPS: an individual enrollment may name the device id", async t => {
	const id = uniqueId("dps-named");
	const {symmetricKey} = emu.addEnrollment({registrationId: id, deviceId: `${id}-device`});
	t.is(await provision(emu, id, symmetricKey), `${id}-device`);
});

test("DPS: a group-derived key registers any registration id under the group; the group key itself does not", async t => {
	const groupId = uniqueId("group");
	const {symmetricKey: groupKey} = emu.addEnrollmentGroup({groupId});
	const id = uniqueId("grp-member");
	t.is(await provision(emu, id, deriveKey(groupKey, id)), id);
	t.is(emu.devices().find(d => d.deviceId === id)?.enrollmentGroupId, groupId);

	const other = uniqueId("grp-raw");
	const dps = await DpsSession.open(emu, other, groupKey);
	t.teardown(() => dps.close());
	const reply = await dps.register(other);
	t.is(reply.status, 401);
	t.is(reply.body.errorCode, 401002);
});

test("DPS: unknown registration and bad signature answer 401 with Azure's error body", async t => {
	const unknown = uniqueId("dps-unknown");
	const dps = await DpsSession.open(emu, unknown, Buffer.alloc(32, 1).toString("base64"));
	t.teardown(() => dps.close());
	const reply = await dps.register(unknown);
	t.is(reply.status, 401);
	t.is(reply.body.errorCode, 401002);
	t.regex(reply.body.trackingId, /\S+/);
	t.is(typeof reply.body.message, "string");
	t.regex(reply.body.timestampUtc, ISO);

	const id = uniqueId("dps-badsig");
	emu.addEnrollment({registrationId: id});
	const wrong = await DpsSession.open(emu, id, Buffer.alloc(32, 2).toString("base64"));
	t.teardown(() => wrong.close());
	t.is((await wrong.register(id)).status, 401);
});

test("DPS: a registrationId in the body other than the connection's is 400; bad JSON is 400", async t => {
	const id = uniqueId("dps-mismatch");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	const dps = await DpsSession.open(emu, id, symmetricKey);
	t.teardown(() => dps.close());
	const reply = await dps.register("someone-else");
	t.is(reply.status, 400);
	t.is(Math.floor(reply.body.errorCode / 1000), 400);
	t.is((await dps.request("$dps/registrations/PUT/iotdps-register/?$rid={rid}", "{not json")).status, 400);
	t.is((await dps.poll("no-such-operation")).status, 404);
});

test("DPS: a disabled enrollment ends with status disabled and no hub device", async t => {
	const id = uniqueId("dps-disabled");
	const {symmetricKey} = emu.addEnrollment({registrationId: id, enabled: false});
	const dps = await DpsSession.open(emu, id, symmetricKey);
	t.teardown(() => dps.close());
	const reply = await dps.provision(id);
	t.is(reply.status, 200);
	t.is(reply.body.status, "disabled");
	t.is(reply.body.registrationState.status, "disabled");
	t.falsy(reply.body.registrationState.assignedHub);
	t.false(emu.devices().some(d => d.deviceId === id));
	emu.setEnrollmentEnabled(id, true);
	t.is((await dps.provision(id)).body.status, "assigned");
});

test("DPS: CONNECT checks username, client id, token resource and expiry", async t => {
	const id = uniqueId("dps-connect");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	const good = dpsCredentials(emu, id, symmetricKey);
	const refused = async (c: typeof good) => {
		// A refused connection is closed right after its CONNACK; on a loaded machine the reset can
		// overtake the CONNACK in the client's socket, so a close without one is tried again, twice.
		for (let attempt = 0; ; attempt++) {
			const error = await t.throwsAsync(connect(emu, c));
			if (error instanceof ConnackError) return error.returnCode;
			t.log(`closed without a CONNACK (${error?.message}), attempt ${attempt + 1}`);
			if (attempt === 2) return -1;
		}
	};
	t.is(await refused(dpsCredentials(emu, id, symmetricKey, Math.floor(Date.now() / 1000) - 10)), 5, "expired token");
	t.is(await refused({...good, clientId: "other"}), 2, "client id differs from the registration id");
	t.is(await refused({...good, username: `0ne00000000/registrations/${id}/api-version=2019-03-31`}), 4, "unknown ID scope");
	t.is(await refused({...good, password: sasToken(`${emu.idScope}/registrations/${id}`, symmetricKey, inAnHour(), "device")}), 5, "an skn other than registration");
	t.is(await refused({...good, password: sasToken(`${emu.idScope}/registrations/other`, symmetricKey, inAnHour(), "registration")}), 5, "token for another registration");
	t.is(await refused({...good, password: "not a token"}), 4);
	t.is(await refused({...good, protocolVersion: 5}), 1, "MQTT 5 is refused: unacceptable protocol version");
	await end(await connect(emu, good));
	// Microsoft's Node SDK sends sr unencoded and signs it so, with extra username parameters.
	const rawSr = `${emu.idScope}/registrations/${id}`;
	const se = inAnHour();
	const sdkLike = await connect(emu, {
		...good,
		username: `${good.username}&ClientVersion=azure-iot-provisioning-device%2F1.9.1`,
		password: `SharedAccessSignature sr=${rawSr}&sig=${encodeURIComponent(signature(symmetricKey, rawSr, se))}&se=${se}&skn=registration`,
	});
	await end(sdkLike);
	t.pass();
});

test("DPS: a device may only subscribe to its response topic and publish requests", async t => {
	const id = uniqueId("dps-topics");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	const a = await connect(emu, dpsCredentials(emu, id, symmetricKey));
	t.teardown(() => end(a));
	a.publish("$dps/registrations/PUT/other/?$rid=1", "{}", {qos: 0});
	await closed(a);
	const b = await connect(emu, dpsCredentials(emu, id, symmetricKey));
	t.teardown(() => end(b));
	b.subscribe("$dps/#");
	await closed(b);
	t.pass();
});

// ---------------------------------------------------------------- hub: connect

test("hub: CONNACK 5 for a bad signature, an expired token, an unknown or deleted device; 4 for a malformed username", async t => {
	const id = uniqueId("hub-auth");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	await provision(emu, id, symmetricKey);
	const refused = async (c: ReturnType<typeof hubCredentials>) => {
		for (let attempt = 0; ; attempt++) {
			const error = await t.throwsAsync(connect(emu, c));
			if (error instanceof ConnackError) return error.returnCode;
			t.log(`closed without a CONNACK (${error?.message}), attempt ${attempt + 1}`);
			if (attempt === 2) return -1;
		}
	};
	t.is(await refused(hubCredentials(emu, id, Buffer.alloc(32, 3).toString("base64"))), 5, "bad signature");
	t.is(await refused(hubCredentials(emu, id, symmetricKey, {se: Math.floor(Date.now() / 1000) - 1})), 5, "expired");
	t.is(await refused(hubCredentials(emu, uniqueId("nobody"), symmetricKey)), 5, "unknown device");
	const good = hubCredentials(emu, id, symmetricKey);
	t.is(await refused({...good, username: `${emu.hubName}/${id}/api-version=2021-04-12`}), 4, "username without /?");
	t.is(await refused({...good, username: `other-hub/${id}/?api-version=2021-04-12`}), 4, "another hub");
	t.is(await refused({...good, username: `${emu.hubName}/${id}/?model-id=x`}), 4, "no api-version");
	t.is(await refused({...good, clientId: `${id}x`}), 2, "client id differs");
	t.is(await refused({...good, password: sasToken(`${emu.hubName}/devices/${id}`, symmetricKey, inAnHour(), "device")}), 5, "skn on a device token");

	// Microsoft's SDK sends extra query parameters.
	await end(await connect(emu, {...good, username: `${good.username}&DeviceClientType=azure-iot-device%2F1.18.4`}));
	// The signature covers sr as sent: an unencoded sr signed as such is as good as an encoded one.
	const rawSr = `${emu.hubName}/devices/${id}`;
	const se = inAnHour();
	await end(await connect(emu, {...good, password: `SharedAccessSignature sr=${rawSr}&sig=${encodeURIComponent(signature(symmetricKey, rawSr, se))}&se=${se}`}));
	t.is(await refused({...good, password: `SharedAccessSignature sr=${encodeURIComponent(rawSr)}&sig=${encodeURIComponent(signature(symmetricKey, rawSr, se))}&se=${se}`}), 5, "signed over another form of sr");
	emu.deleteDevice(id);
	t.is(await refused(good), 5, "deleted device");
	t.throws(() => emu.deleteDevice(id), {instanceOf: EmulatorHttpError});
});

test("hub: the username's model-id is recorded, and connections are counted", async t => {
	const {id} = await hubDevice(t, emu, {modelId: "dtmi:com:example:Thermostat;1"});
	// The registry marks the device connected once aedes reports the client ready, which may come just after the CONNACK.
	await eventually(() => emu.devices().find(d => d.deviceId === id)?.connected === true, 5000, "the device to be marked connected");
	const view = emu.devices().find(d => d.deviceId === id);
	t.like(view, {connected: true, modelId: "dtmi:com:example:Thermostat;1", connectCount: 1});
	t.is(emu.stats().devices[id].hubConnects, 1);
});

test("hub: a second connection with the same device id drops the first", async t => {
	const {id, key, client: first} = await hubDevice(t);
	const second = await connect(emu, hubCredentials(emu, id, key));
	t.teardown(() => end(second));
	await closed(first);
	t.true(second.connected);
	t.true(emu.devices().find(d => d.deviceId === id)?.connected);
});

test("hub: the connection closes when the token's se passes", async t => {
	const id = uniqueId("hub-expiry");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	await provision(emu, id, symmetricKey);
	const client = await connect(emu, hubCredentials(emu, id, symmetricKey, {se: Math.floor(Date.now() / 1000) + 2}));
	t.teardown(() => end(client));
	await closed(client, 10_000);
	t.false(emu.devices().find(d => d.deviceId === id)?.connected);
});

// ---------------------------------------------------------------- hub: topics

test("hub: publishing to a topic outside the device's own closes the connection", async t => {
	const {client} = await hubDevice(t);
	client.publish("devices/someone-else/messages/events/", "x", {qos: 0});
	await closed(client);
	const {client: c2} = await hubDevice(t);
	c2.publish("$iothub/twin/GET/", "", {qos: 0});
	await closed(c2);
	t.pass();
});

test("hub: subscribing to another device's topic closes the connection", async t => {
	const {client} = await hubDevice(t);
	client.subscribe("devices/someone-else/messages/devicebound/#", {qos: 1});
	await closed(client);
	t.pass();
});

test("hub: a sixth subscription closes the connection", async t => {
	const {id, client} = await hubDevice(t);
	for (const topic of [`devices/${id}/messages/devicebound/#`, "$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#", "$iothub/methods/POST/#", "devices/+/messages/devicebound/#"])
		t.is(await subscribe(client, topic, 1), 1);
	client.subscribe("$iothub/twin/res/#", {qos: 1});
	await closed(client);
});

test("hub: QoS 2 is granted as QoS 1 on SUBSCRIBE and closes the connection on PUBLISH", async t => {
	const {id, client} = await hubDevice(t);
	const granted = await new Promise<number>((resolve, reject) => client.subscribe("$iothub/twin/res/#", {qos: 2}, (e, g) => (e ? reject(e) : resolve(g?.[0]?.qos ?? -1))));
	t.is(granted, 1);
	client.publish(`devices/${id}/messages/events/`, "x", {qos: 2});
	await closed(client);
});

test("hub: telemetry is stored with its property bag, system properties apart; the empty bag works", async t => {
	const {id, client} = await hubDevice(t);
	await publish(client, `devices/${id}/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8&$.mid=m-1&alert=high%20temp&k%2F1=v%261`, "{\"t\":21.5}", 1);
	await publish(client, `devices/${id}/messages/events/`, Buffer.from([0xff, 0x00]), 0);
	await eventually(() => emu.telemetry(id).length === 2, 5000, "two records");
	const [first, second] = emu.telemetry(id);
	t.is(first.body, "{\"t\":21.5}");
	t.deepEqual(first.properties, {alert: "high temp", "k/1": "v&1"});
	t.deepEqual(first.systemProperties, {"$.ct": "application/json", "$.ce": "utf-8", "$.mid": "m-1"});
	t.is(first.qos, 1);
	t.regex(first.time, ISO);
	t.is(second.bodyBase64, "/wA=");
	t.deepEqual(second.properties, {});
	t.is(second.qos, 0);
});

// ---------------------------------------------------------------- hub: C2D

test("hub: C2D is delivered at QoS 1 with Azure's property bag and removed on PUBACK", async t => {
	const {id, client, inbox} = await hubDevice(t);
	await subscribe(client, `devices/${id}/messages/devicebound/#`);
	const {messageId} = emu.sendC2d(id, {body: "hello", properties: {colour: "blue sky"}, messageId: "msg-1"});
	t.is(messageId, "msg-1");
	const m = await inbox.next();
	t.is(m.packet.qos, 1);
	t.is(m.payload.toString(), "hello");
	t.is(m.topic, `devices/${id}/messages/devicebound/%24.mid=msg-1&%24.to=%2Fdevices%2F${id}%2Fmessages%2Fdevicebound&iothub-ack=none&colour=blue%20sky`);
	await eventually(() => emu.c2dQueue(id) === 0, 5000, "the PUBACK to complete the message");
	t.is(emu.stats().devices[id].c2dCompleted, 1);
});

test("hub: C2D is kept while a clean-session-false device is offline, and an unacknowledged one is redelivered", async t => {
	const id = uniqueId("c2d-offline");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	await provision(emu, id, symmetricKey);
	const creds = hubCredentials(emu, id, symmetricKey, {clean: false});

	// First session: receives but never acknowledges.
	const first = await connect(emu, creds);
	t.teardown(() => end(first));
	// mqtt.js sends the PUBACK when handleMessage calls back: never, here.
	first.handleMessage = () => {};
	const firstInbox = new Inbox(first);
	await subscribe(first, `devices/${id}/messages/devicebound/#`);
	emu.sendC2d(id, {body: "one"});
	t.is((await firstInbox.next()).payload.toString(), "one");
	t.is(emu.c2dQueue(id), 1, "not completed without PUBACK");
	await end(first);
	await eventually(() => !emu.devices().find(d => d.deviceId === id)?.connected, 5000, "the device to be offline");
	emu.sendC2d(id, {body: "two"});
	t.is(emu.c2dQueue(id), 2);

	// Second session: the persistent subscription is restored and both arrive, the first as a duplicate.
	const second = await connect(emu, creds);
	t.teardown(() => end(second));
	const inbox = new Inbox(second);
	const a = await inbox.next();
	const b = await inbox.next();
	t.deepEqual([a.payload.toString(), b.payload.toString()], ["one", "two"]);
	t.true(a.packet.dup);
	t.false(b.packet.dup);
	await eventually(() => emu.c2dQueue(id) === 0, 5000, "both completed");
});

test("hub: a clean session drops queued C2D; the queue holds at most 50 messages", async t => {
	const id = uniqueId("c2d-clean");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	await provision(emu, id, symmetricKey);
	for (let i = 0; i < 50; i++) emu.sendC2d(id, {body: `m${i}`});
	const error = t.throws(() => emu.sendC2d(id, {body: "51st"}), {instanceOf: EmulatorHttpError});
	t.is(error?.status, 403);
	const client = await connect(emu, hubCredentials(emu, id, symmetricKey, {clean: true}));
	t.teardown(() => end(client));
	t.is(emu.c2dQueue(id), 0);
	t.throws(() => emu.sendC2d(uniqueId("nobody"), {body: "x"}), {instanceOf: EmulatorHttpError, message: /not registered/});
});

// ---------------------------------------------------------------- hub: twin

test("hub: twin GET, reported patches with versions, null deletes, bad JSON is 400, desired updates are pushed", async t => {
	const {id, client, inbox} = await hubDevice(t);
	await subscribe(client, "$iothub/twin/res/#");
	await subscribe(client, "$iothub/twin/PATCH/properties/desired/#");
	const rid = (topic: string) => new URLSearchParams(topic.split("?")[1]).get("$rid");

	await publish(client, "$iothub/twin/GET/?$rid=1", "");
	let m = await inbox.next(x => rid(x.topic) === "1");
	t.is(m.topic, "$iothub/twin/res/200/?$rid=1");
	t.deepEqual(JSON.parse(m.payload.toString()), {desired: {$version: 1}, reported: {$version: 1}});

	await publish(client, "$iothub/twin/PATCH/properties/reported/?$rid=2", JSON.stringify({fw: "1.0", nested: {a: 1, b: 2}}));
	m = await inbox.next(x => rid(x.topic) === "2");
	t.is(m.topic, "$iothub/twin/res/204/?$rid=2&$version=2");
	await publish(client, "$iothub/twin/PATCH/properties/reported/?$rid=3", JSON.stringify({nested: {b: null}, fw: null}));
	m = await inbox.next(x => rid(x.topic) === "3");
	t.is(m.topic, "$iothub/twin/res/204/?$rid=3&$version=3");
	t.deepEqual(emu.twin(id).reported, {nested: {a: 1}, $version: 3});

	await publish(client, "$iothub/twin/PATCH/properties/reported/?$rid=4", "{oops");
	m = await inbox.next(x => rid(x.topic) === "4");
	t.is(m.topic, "$iothub/twin/res/400/?$rid=4");
	t.like(emu.twin(id).reported, {$version: 3});

	await publish(client, "$iothub/twin/PATCH/properties/reported/?$rid=41", JSON.stringify({"a.b": 1}));
	t.is((await inbox.next(x => rid(x.topic) === "41")).topic, "$iothub/twin/res/400/?$rid=41", "no . in property names");
	await publish(client, "$iothub/twin/PATCH/properties/reported/?$rid=42", JSON.stringify({nested: {$x: 1}}));
	t.is((await inbox.next(x => rid(x.topic) === "42")).topic, "$iothub/twin/res/400/?$rid=42", "no $ in property names");
	t.throws(() => emu.patchDesired(id, {"bad key": 1}), {instanceOf: EmulatorHttpError});

	const {version} = emu.patchDesired(id, {interval: 5});
	t.is(version, 2);
	m = await inbox.next(x => x.topic.startsWith("$iothub/twin/PATCH/properties/desired/"));
	t.is(m.topic, "$iothub/twin/PATCH/properties/desired/?$version=2");
	t.deepEqual(JSON.parse(m.payload.toString()), {interval: 5, $version: 2});

	await publish(client, "$iothub/twin/GET/?$rid=5", "");
	m = await inbox.next(x => rid(x.topic) === "5");
	t.deepEqual(JSON.parse(m.payload.toString()), {desired: {interval: 5, $version: 2}, reported: {nested: {a: 1}, $version: 3}});
});

// ---------------------------------------------------------------- hub: methods

test("hub: direct methods answer 200 with the payload, 404 when not subscribed or offline, 504 on timeout", async t => {
	const {id, client, inbox} = await hubDevice(t);
	await t.throwsAsync(emu.invokeMethod(id, "reboot", {}), {instanceOf: EmulatorHttpError, message: /not connected or not subscribed/});
	await subscribe(client, "$iothub/methods/POST/#");

	const call = emu.invokeMethod(id, "reboot", {delay: 1}, 10);
	const request = await inbox.next();
	const m = /^\$iothub\/methods\/POST\/reboot\/\?\$rid=([0-9a-f]+)$/.exec(request.topic);
	t.truthy(m, request.topic);
	t.deepEqual(JSON.parse(request.payload.toString()), {delay: 1});
	await publish(client, `$iothub/methods/res/200/?$rid=${m![1]}`, JSON.stringify({ok: true}));
	t.deepEqual(await call, {status: 200, payload: {ok: true}});

	const slow = emu.invokeMethod(id, "sleep", null, 0.3);
	await inbox.next();
	const timeout = await t.throwsAsync(slow, {instanceOf: EmulatorHttpError});
	t.is((timeout as EmulatorHttpError).status, 504);

	await end(client);
	await eventually(() => !emu.devices().find(d => d.deviceId === id)?.connected, 5000, "offline");
	const offline = await t.throwsAsync(emu.invokeMethod(id, "reboot", {}), {instanceOf: EmulatorHttpError});
	t.is((offline as EmulatorHttpError).status, 404);
});

// ---------------------------------------------------------------- TLS

test("TLS: TLS 1.2 with ECDHE-RSA-AES128-GCM-SHA256 and with an RSA CBC suite; leaf + intermediate for localhost", async t => {
	for (const ciphers of ["ECDHE-RSA-AES128-GCM-SHA256", "AES128-SHA"]) {
		const socket = tls.connect({host: "127.0.0.1", port: emu.port, servername: "localhost", ca: emu.caPem, maxVersion: "TLSv1.2", minVersion: "TLSv1.2", ciphers});
		await new Promise<void>((resolve, reject) => socket.once("secureConnect", resolve).once("error", reject));
		t.is(socket.getProtocol(), "TLSv1.2");
		t.is(socket.getCipher().name, ciphers);
		const leaf = socket.getPeerCertificate(true);
		t.regex(leaf.subjectaltname ?? "", /DNS:localhost/);
		t.regex(leaf.subjectaltname ?? "", /IP Address:127\.0\.0\.1/);
		t.not(leaf.issuerCertificate?.fingerprint256, leaf.fingerprint256);
		socket.destroy();
	}
	t.is(emu.caDer[0], 0x30, "DER root");
	t.regex(emu.caPem, /BEGIN CERTIFICATE/);
});

test("TLS: the broken certificate profiles fail verification against the reported root", async t => {
	const expected: Record<string, RegExp> = {
		untrustedRoot: /unable to get local issuer|self.signed|unable to verify/i,
		wrongHost: /altnames|Hostname\/IP does not match/i,
		expired: /expired/i,
		selfSigned: /self.signed/i,
	};
	for (const [profile, error] of Object.entries(expected)) {
		const e = await startEmulator({tls: profile as never});
		try {
			t.is(e.caPem, emu.caPem, `${profile}: caPem is still the valid root`);
			const socket = tls.connect({host: "127.0.0.1", port: e.port, servername: "localhost", ca: e.caPem});
			const failure = await new Promise<Error | undefined>(resolve => socket.once("secureConnect", () => resolve(undefined)).once("error", resolve));
			socket.destroy();
			t.regex(failure?.message ?? "connected", error, profile);
		}
		finally {
			await e.close();
		}
	}
});

// ---------------------------------------------------------------- faults

test.serial("fault dps.status: the reply carries the status, Azure's error body and retry-after", async t => {
	const id = uniqueId("f-status");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	emu.addFault({kind: "dps.status", on: "register", status: 429, retryAfter: 2, count: 1, registrationId: id});
	emu.addFault({kind: "dps.status", on: "poll", status: 503, count: 1, registrationId: id});
	const dps = await DpsSession.open(emu, id, symmetricKey);
	t.teardown(() => dps.close());
	const throttled = await dps.register(id);
	t.is(throttled.status, 429);
	t.is(throttled.query.get("retry-after"), "2");
	t.is(throttled.body.errorCode, 429001);
	const accepted = await dps.register(id);
	t.is(accepted.status, 202);
	const unavailable = await dps.poll(accepted.body.operationId);
	t.is(unavailable.status, 503);
	t.is(Math.floor(unavailable.body.errorCode / 1000), 503);
	t.is((await dps.poll(accepted.body.operationId)).status, 202);
	t.deepEqual(emu.faults(), [], "each fired its count");
});

test.serial("fault dps.malformed, dps.delay, dps.drop and dps.failed", async t => {
	const id = uniqueId("f-dps");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	emu.addFault({kind: "dps.malformed", on: "register", count: 1, registrationId: id});
	let dps = await DpsSession.open(emu, id, symmetricKey);
	t.teardown(() => dps.close());
	const malformed = await dps.register(id);
	t.is(malformed.status, 202);
	t.is(malformed.body, undefined, `not JSON: ${malformed.text}`);

	emu.addFault({kind: "dps.delay", on: "register", ms: 200, count: 1, registrationId: id});
	const delayed = await dps.register(id);
	t.is(delayed.status, 202);

	emu.addFault({kind: "dps.failed", count: 1, registrationId: id});
	const failed = await dps.provision(id);
	t.is(failed.status, 200);
	t.is(failed.body.status, "failed");
	t.is(failed.body.registrationState.status, "failed");
	t.truthy(failed.body.registrationState.errorCode);
	t.truthy(failed.body.registrationState.errorMessage);

	emu.addFault({kind: "dps.drop", on: "poll", count: 1, registrationId: id});
	const op = await dps.register(id);
	dps.client.publish(`$dps/registrations/GET/iotdps-get-operationstatus/?$rid=99&operationId=${op.body.operationId}`, "", {qos: 0});
	await closed(dps.client);
	await dps.close();
	dps = await DpsSession.open(emu, id, symmetricKey);
	t.is((await dps.provision(id)).body.status, "assigned", "the fault fired once");
});

test.serial("fault connack: hub and DPS refuse with the given return code", async t => {
	const id = uniqueId("f-connack");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	await provision(emu, id, symmetricKey);
	emu.addFault({kind: "connack", target: "hub", returnCode: 3, count: 1, deviceId: id});
	emu.addFault({kind: "connack", target: "dps", returnCode: 5, count: 1, registrationId: id});
	const hubError = await t.throwsAsync(connect(emu, hubCredentials(emu, id, symmetricKey)));
	t.is((hubError as ConnackError).returnCode, 3);
	const dpsError = await t.throwsAsync(connect(emu, dpsCredentials(emu, id, symmetricKey)));
	t.is((dpsError as ConnackError).returnCode, 5);
	await end(await connect(emu, hubCredentials(emu, id, symmetricKey)));
});

test.serial("faults dropEvery, tokenLifetime and throttle close hub connections", async t => {
	const id = uniqueId("f-drop");
	const {symmetricKey} = emu.addEnrollment({registrationId: id});
	await provision(emu, id, symmetricKey);
	emu.addFault({kind: "dropEvery", ms: 200, count: 1, deviceId: id});
	const a = await connect(emu, hubCredentials(emu, id, symmetricKey));
	t.teardown(() => end(a));
	await closed(a);

	emu.addFault({kind: "tokenLifetime", seconds: 1, count: 1, deviceId: id});
	const b = await connect(emu, hubCredentials(emu, id, symmetricKey));
	t.teardown(() => end(b));
	await closed(b);

	emu.addFault({kind: "throttle", count: 1, deviceId: id});
	const c = await connect(emu, hubCredentials(emu, id, symmetricKey));
	t.teardown(() => end(c));
	c.publish(`devices/${id}/messages/events/`, "x", {qos: 1});
	await closed(c);
	t.is(emu.telemetry(id).length, 0, "the throttled message was not accepted");
	t.true(emu.stats().serverDisconnects >= 3);
});

test.serial("faults twin.status and twin.malformed", async t => {
	const {id, client, inbox} = await hubDevice(t);
	await subscribe(client, "$iothub/twin/res/#");
	emu.addFault({kind: "twin.status", status: 429, count: 1, deviceId: id});
	await publish(client, "$iothub/twin/GET/?$rid=1", "");
	t.is((await inbox.next()).topic, "$iothub/twin/res/429/?$rid=1");
	emu.addFault({kind: "twin.malformed", count: 1, deviceId: id});
	await publish(client, "$iothub/twin/GET/?$rid=2", "");
	const m = await inbox.next();
	t.is(m.topic, "$iothub/twin/res/200/?$rid=2");
	t.throws(() => JSON.parse(m.payload.toString()));
});

test.serial("fault noPuback holds telemetry PUBACKs (for ms, or until cleared)", async t => {
	const e = await startEmulator();
	t.teardown(() => e.close());
	const {id, client} = await hubDevice(t, e);
	e.addFault({kind: "noPuback", ms: 300, count: 1});
	await publish(client, `devices/${id}/messages/events/`, "held briefly", 1);
	e.addFault({kind: "noPuback"});
	let acked = false;
	const pending = publish(client, `devices/${id}/messages/events/`, "held", 1).then(() => { acked = true; });
	await eventually(() => e.telemetry(id).length === 2, 5000, "the message to be stored");
	t.false(acked, "no PUBACK while the fault is active");
	e.clearFaults();
	await pending;
	t.true(acked);
});

test.serial("fault down refuses new connections and drops existing ones until it ends", async t => {
	const e = await startEmulator();
	t.teardown(() => e.close());
	const {id, key, client} = await hubDevice(t, e);
	e.addFault({kind: "down", ms: 60_000});
	await closed(client);
	await t.throwsAsync(connect(e, hubCredentials(e, id, key)));
	e.clearFaults();
	await end(await connect(e, hubCredentials(e, id, key)));
	e.addFault({kind: "down", ms: 1});
	await new Promise(r => setTimeout(r, 50));
	await end(await connect(e, hubCredentials(e, id, key)));
	t.throws(() => e.addFault({kind: "nope"} as never), {message: /unknown kind/});
});

// ---------------------------------------------------------------- HTTP API

async function api(method: string, path: string, body?: unknown): Promise<{status: number; body: any}> {
	const res = await fetch(emu.apiUrl + path, {method, headers: {"content-type": "application/json"}, body: body === undefined ? undefined : JSON.stringify(body)});
	const text = await res.text();
	return {status: res.status, body: text ? JSON.parse(text) : undefined};
}

test("HTTP API: enrollments, devices, telemetry, C2D, twin, methods, faults and stats", async t => {
	t.regex(emu.apiUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
	const id = uniqueId("api");
	const created = await api("POST", "/enrollments", {registrationId: id});
	t.is(created.status, 201);
	t.is(created.body.registrationId, id);
	t.true(Buffer.from(created.body.symmetricKey, "base64").length >= 32);
	t.is((await api("PATCH", `/enrollments/${id}`, {enabled: true})).status, 200);
	t.is((await api("PATCH", "/enrollments/nobody", {enabled: true})).status, 404);
	const group = await api("POST", "/enrollment-groups", {groupId: uniqueId("api-group"), symmetricKey: Buffer.alloc(32, 7).toString("base64")});
	t.is(group.status, 201);
	t.is(group.body.symmetricKey, Buffer.alloc(32, 7).toString("base64"));
	t.is((await api("POST", "/enrollments", {registrationId: "bad id!"})).status, 400);

	await provision(emu, id, created.body.symmetricKey);
	const client = await connect(emu, hubCredentials(emu, id, created.body.symmetricKey));
	t.teardown(() => end(client));
	const inbox = new Inbox(client);
	t.true((await api("GET", "/devices")).body.some((d: {deviceId: string; connected: boolean}) => d.deviceId === id && d.connected));

	await publish(client, `devices/${id}/messages/events/a=1`, "hi", 1);
	const telemetry = await api("GET", `/devices/${id}/telemetry`);
	t.is(telemetry.body[0].body, "hi");
	t.deepEqual(telemetry.body[0].properties, {a: "1"});

	await subscribe(client, `devices/${id}/messages/devicebound/#`);
	const c2d = await api("POST", `/devices/${id}/c2d`, {body: "cloud", properties: {p: "q"}});
	t.is(c2d.status, 202);
	t.regex(c2d.body.messageId, /\S+/);
	t.is((await inbox.next()).payload.toString(), "cloud");

	const desired = await api("PATCH", `/devices/${id}/twin/desired`, {x: 1});
	t.deepEqual(desired.body, {version: 2});
	t.deepEqual((await api("GET", `/devices/${id}/twin`)).body, {desired: {x: 1, $version: 2}, reported: {$version: 1}});

	t.is((await api("POST", `/devices/${id}/methods/ping`, {payload: {}, timeoutSeconds: 1})).status, 404);
	await subscribe(client, "$iothub/methods/POST/#");
	const call = api("POST", `/devices/${id}/methods/ping`, {payload: {n: 1}, timeoutSeconds: 10});
	const request = await inbox.next(m => m.topic.startsWith("$iothub/methods/POST/ping/"));
	await publish(client, `$iothub/methods/res/201/?$rid=${new URLSearchParams(request.topic.split("?")[1]).get("$rid")}`, JSON.stringify({pong: 1}));
	t.deepEqual((await call).body, {status: 201, payload: {pong: 1}});
	const timeout = await api("POST", `/devices/${id}/methods/ping`, {payload: {}, timeoutSeconds: 0.2});
	t.is(timeout.status, 504);
	t.is(typeof timeout.body.error, "string");

	const fault = await api("POST", "/faults", {kind: "twin.status", status: 500, deviceId: "no-such-device"});
	t.is(fault.status, 201);
	t.is((await api("POST", "/faults", {kind: "bogus"})).status, 400);
	t.is((await api("DELETE", "/faults")).status, 204);
	const stats = await api("GET", "/stats");
	t.is(stats.status, 200);
	t.true(stats.body.devices[id].telemetry >= 1);

	t.is((await api("DELETE", `/devices/${id}`)).status, 204);
	await closed(client);
	t.is((await api("GET", `/devices/${id}/twin`)).status, 404);
	t.is((await api("GET", "/nowhere")).status, 404);
	t.is((await api("POST", "/faults/drop")).status, 204);
});

// ---------------------------------------------------------------- CLI

function runCli(command: string, args: string[]) {
	// Its own process group, so the test can end exactly what it started.
	const child = spawn(command, args, {cwd: process.cwd(), stdio: ["ignore", "pipe", "pipe"], detached: true});
	let stdout = "";
	let stderr = "";
	child.stdout.on("data", d => { stdout += d; });
	child.stderr.on("data", d => { stderr += d; });
	const line = new Promise<string>((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error(`no ready line; stderr: ${stderr}`)), 60_000);
		child.stdout.on("data", () => {
			if (stdout.includes("\n")) {
				clearTimeout(timer);
				resolve(stdout.slice(0, stdout.indexOf("\n")));
			}
		});
		child.once("exit", () => reject(new Error(`exited before ready; stderr: ${stderr}`)));
	});
	const exited = new Promise<{code: number | null; signal: string | null}>(resolve => child.once("close", (code, signal) => resolve({code, signal})));
	const kill = (signal: NodeJS.Signals, group: boolean) => {
		try {
			process.kill(group ? -child.pid! : child.pid!, signal);
		}
		catch {
			// already gone
		}
	};
	return {child, line, exited, kill, stderr: () => stderr, stdout: () => stdout};
}

test("CLI: `npx tsx emulator/cli.ts --port 0` prints one JSON ready line and closes on SIGTERM", async t => {
	const cli = runCli("npx", ["tsx", "emulator/cli.ts", "--port", "0", "--api-port", "0"]);
	t.teardown(() => cli.kill("SIGKILL", true));
	const ready = JSON.parse(await cli.line);
	t.deepEqual(Object.keys(ready), ["host", "port", "idScope", "ca", "caDer", "api", "aduRootKey", "page"]);
	t.is(ready.page, `${ready.api}/`);
	t.is(ready.host, "localhost");
	t.true(ready.port > 0);
	t.regex(ready.api, /^http:\/\/127\.0\.0\.1:\d+$/);
	t.regex(ready.aduRootKey, /adu-root-key\.json$/);
	t.is((await fetch(`${ready.api}/stats`)).status, 200);
	// npm does not forward signals to its children: signal the whole group, as a terminal does.
	cli.kill("SIGTERM", true);
	await cli.exited;
	t.regex(cli.stderr(), /SIGTERM, closing/);
	t.is(cli.stdout().trim().split("\n").length, 1, "exactly one line on stdout");
	await t.throwsAsync(fetch(`${ready.api}/stats`), undefined, "the API is gone");
});

test("CLI: SIGTERM and SIGINT exit 0", async t => {
	for (const signal of ["SIGTERM", "SIGINT"] as const) {
		const cli = runCli(process.execPath, ["--import", "tsx", "emulator/cli.ts", "--port", "0", "--quiet"]);
		t.teardown(() => cli.kill("SIGKILL", true));
		JSON.parse(await cli.line);
		cli.kill(signal, false);
		t.deepEqual(await cli.exited, {code: 0, signal: null}, signal);
	}
});
