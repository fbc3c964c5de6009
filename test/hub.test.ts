import test from "ava";
import * as crypto from "node:crypto";
import {HubClient, type HubOptions} from "../src/hub.js";
import {AzureIoTError} from "../src/errors.js";
import {hubPassword} from "../src/sas.js";
import {FakeHost, FakeSession, sessionFactory, settle} from "./helpers/fake-host.js";

const KEY = Buffer.alloc(32, 7).toString("base64");
const KEY2 = Buffer.alloc(32, 9).toString("base64");
const HUB = "contoso.azure-devices.net";
const DEVICE = "dev-1";

interface Events {
	connects: {sessionPresent: boolean; reconnect: boolean}[];
	disconnects: {error: AzureIoTError; retryInMs: number | undefined}[];
	desired: {patch: Record<string, unknown>; version: number}[];
	errors: AzureIoTError[];
	auth: AzureIoTError[];
	overflow: {messageId: string}[];
}

function setup(extra: Partial<HubOptions> = {}, host = new FakeHost()) {
	const factory = sessionFactory();
	const events: Events = {connects: [], disconnects: [], desired: [], errors: [], auth: [], overflow: []};
	const hub = new HubClient({
		adapter: host, hubHost: HUB, deviceId: DEVICE, symmetricKey: KEY, roots: [new Uint8Array([0x30, 0x82])],
		createSession: factory.createSession,
		onConnect: info => events.connects.push(info),
		onDisconnect: (error, retryInMs) => events.disconnects.push({error, retryInMs}),
		onDesired: (patch, version) => events.desired.push({patch, version}),
		onError: error => events.errors.push(error),
		onAuthFailure: error => events.auth.push(error),
		onQueueOverflow: refused => events.overflow.push(refused),
		...extra,
	});
	return {host, hub, factory, events};
}

function rid(topic: string): string {
	const m = /\$rid=([^&]+)/.exec(topic);
	if (!m) throw new Error(`no $rid in ${topic}`);
	return m[1];
}

/** CONNACK, SUBACK (automatic), then answers the twin GET the client makes after every connect. */
async function connect(session: FakeSession, desired: Record<string, unknown> = {$version: 1}): Promise<void> {
	session.connack();
	await settle();
	const gets = session.published("$iothub/twin/GET/");
	if (!gets.length) throw new Error("no twin GET after connect");
	session.deliver(`$iothub/twin/res/200/?$rid=${rid(gets.at(-1)!.topic)}`, {desired, reported: {$version: 1}});
	await settle();
}

async function opened(extra: Partial<HubOptions> = {}, host?: FakeHost) {
	const ctx = setup(extra, host);
	const open = ctx.hub.open();
	await connect(ctx.factory.last());
	await open;
	return ctx;
}

function mid(topic: string): string {
	return decodeURIComponent(/\$\.mid=([^&]+)/.exec(topic)![1]);
}

/** Every string an application could see must be free of the key, the token and its signature. */
function assertNoSecrets(t: any, texts: string[], secrets: string[]): void {
	for (const text of texts) for (const secret of secrets) t.false(text.includes(secret), `secret leaked in: ${text}`);
}

test("CONNECT: client id, username with model id, SAS password recomputed independently, clean false, keep-alive 120", async t => {
	const host = new FakeHost();
	const {hub, factory} = setup({modelId: "dtmi:com:example:Thermostat;1", tokenTtlSeconds: 3600}, host);
	void hub.open().catch(() => {});
	const o = factory.last().options;
	t.is(o.clientId, DEVICE);
	t.is(o.username, `${HUB}/${DEVICE}/?api-version=2021-04-12&DeviceClientType=moddable-azure-iot%2F0.2.0&model-id=${encodeURIComponent("dtmi:com:example:Thermostat;1")}`);
	t.is(o.clean, false);
	t.is(o.keepAliveSeconds, 120);
	t.deepEqual({host: o.server.host, port: o.server.port}, {host: HUB, port: 8883});
	t.is(o.server.roots.length, 1);
	const se = Math.floor(host.now() / 1000) + 3600;
	const sr = encodeURIComponent(`${HUB}/devices/${DEVICE}`);
	const sig = crypto.createHmac("sha256", Buffer.from(KEY, "base64")).update(`${sr}\n${se}`).digest("base64");
	t.is(o.password, `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}`);
	t.is(o.password, hubPassword(HUB, DEVICE, KEY, se, (k, m) => new Uint8Array(crypto.createHmac("sha256", k).update(m).digest())));
	await hub.close();
});

test("configuration errors name the field and never echo the key", t => {
	const host = new FakeHost();
	const base = {adapter: host, hubHost: HUB, deviceId: DEVICE, symmetricKey: KEY, roots: [new Uint8Array([1])]};
	const e1 = t.throws(() => new HubClient({...base, roots: []}), {instanceOf: AzureIoTError});
	t.is(e1!.code, "config");
	t.regex(e1!.message, /roots/);
	t.regex(t.throws(() => new HubClient({...base, deviceId: "a/b"}))!.message, /deviceId/);
	t.regex(t.throws(() => new HubClient({...base, keepAliveSeconds: 5000}))!.message, /keepAliveSeconds/);
	const bad = "not-base64-but-secret!";
	const e2 = t.throws(() => new HubClient({...base, symmetricKey: bad}))!;
	t.regex(e2.message, /symmetricKey/);
	t.false(e2.message.includes(bad));
});

test("after CONNACK: one SUBACK-ed SUBSCRIBE with the topics the callbacks need, then the twin GET; open() waits for it", async t => {
	const {hub, factory, events} = setup({onMessage: () => {}, onMethod: () => ({status: 200})});
	let done = false;
	const open = hub.open().then(() => { done = true; });
	const s = factory.last();
	s.connack(true);
	await settle();
	t.is(s.subscribes.length, 1);
	t.deepEqual(s.subscribes[0].subscriptions, [
		{topic: "$iothub/twin/res/#", qos: 0},
		{topic: `devices/${DEVICE}/messages/devicebound/#`, qos: 1},
		{topic: "$iothub/twin/PATCH/properties/desired/#", qos: 0},
		{topic: "$iothub/methods/POST/#", qos: 0},
	]);
	const get = s.published("$iothub/twin/GET/");
	t.is(get.length, 1);
	t.regex(get[0].topic, /^\$iothub\/twin\/GET\/\?\$rid=\w+$/);
	t.is(get[0].payload.length, 0);
	t.false(done, "open() waits for the twin");
	t.true(hub.connected);
	t.deepEqual(events.connects, [{sessionPresent: true, reconnect: false}]);
	s.deliver(`$iothub/twin/res/200/?$rid=${rid(get[0].topic)}`, {desired: {$version: 4, fan: 2}, reported: {$version: 9}});
	await open;
	t.deepEqual(events.desired, [{patch: {$version: 4, fan: 2}, version: 4}]);
	await hub.close();
});

test("only the twin response topic when no callbacks need more", async t => {
	const factory = sessionFactory();
	const hub = new HubClient({adapter: new FakeHost(), hubHost: HUB, deviceId: DEVICE, symmetricKey: KEY, roots: [new Uint8Array([1])], createSession: factory.createSession});
	void hub.open().catch(() => {});
	factory.last().connack();
	await settle();
	t.deepEqual(factory.last().subscribes[0].subscriptions, [{topic: "$iothub/twin/res/#", qos: 0}]);
	await hub.close();
});

test("telemetry: QoS 1 on the events topic, property bag with special characters, resolves on PUBACK", async t => {
	const {hub, factory} = await opened();
	const s = factory.last();
	const sending = hub.sendTelemetry({t: 21.5}, {
		messageId: "m/1 ü", correlationId: "c&1", component: "thermo 1", properties: {"alert level": "a=b&c", "ü": "%/#+"},
	});
	await settle();
	const [p] = s.published("devices/");
	t.is(p.qos, 1);
	t.is(p.topic, `devices/${DEVICE}/messages/events/$.mid=m%2F1%20%C3%BC&$.cid=c%261&$.ct=application%2Fjson&$.ce=utf-8&$.sub=thermo%201&alert%20level=a%3Db%26c&%C3%BC=%25%2F%23%2B`);
	t.is(p.text(), "{\"t\":21.5}");
	let resolved = false;
	void sending.then(() => { resolved = true; });
	await settle();
	t.false(resolved, "not before PUBACK");
	t.is(hub.stats.queued, 1);
	p.ack();
	t.deepEqual(await sending, {messageId: "m/1 ü"});
	t.like(hub.stats, {sent: 1, acked: 1, resent: 0, queued: 0});

	// Generated ids are unique; strings that are JSON get application/json, other text and bytes do not.
	const a = hub.sendTelemetry("[1,2]");
	const b = hub.sendTelemetry("plain text");
	const c = hub.sendTelemetry(new Uint8Array([1, 2, 3]), {contentType: "application/octet-stream"});
	await settle();
	const [pa, pb, pc] = s.published("devices/").slice(1);
	t.regex(pa.topic, /\$\.ct=application%2Fjson&\$\.ce=utf-8$/);
	t.regex(pb.topic, /^devices\/dev-1\/messages\/events\/\$\.mid=[0-9a-f-]{36}&\$\.ce=utf-8$/);
	t.regex(pc.topic, /\$\.ct=application%2Foctet-stream$/);
	t.not(mid(pa.topic), mid(pb.topic));
	for (const p of [pa, pb, pc]) p.ack();
	await Promise.all([a, b, c]);
	const reserved = await t.throwsAsync(hub.sendTelemetry({}, {properties: {"$.mid": "x"}}));
	t.is((reserved as AzureIoTError).code, "config");
	await hub.close();
});

test("queue full: the new message is refused at once with queue.full and onQueueOverflow; accepted ones are still delivered", async t => {
	const {hub, factory, events} = setup({queueLimit: 2});
	const first = hub.sendTelemetry({n: 1}, {messageId: "one"});
	const second = hub.sendTelemetry({n: 2}, {messageId: "two"});
	const third = hub.sendTelemetry({n: 3}, {messageId: "three"});
	const error = await t.throwsAsync(third, {instanceOf: AzureIoTError});
	t.is((error as AzureIoTError).code, "queue.full");
	t.true((error as AzureIoTError).retriable);
	t.deepEqual(events.overflow, [{messageId: "three"}]);
	t.is(hub.stats.queued, 2);
	const open = hub.open();
	await connect(factory.last());
	await open;
	const sent = factory.last().published("devices/");
	t.deepEqual(sent.map(p => mid(p.topic)), ["one", "two"]);
	for (const p of sent) p.ack();
	t.deepEqual(await Promise.all([first, second]), [{messageId: "one"}, {messageId: "two"}]);
	await hub.close();
});

test("dropped connection: unacknowledged telemetry is re-sent after reconnect, in order, with the same $.mid", async t => {
	const {hub, factory, host, events} = await opened({maxInFlight: 2});
	const s1 = factory.last();
	const promises = [1, 2, 3, 4].map(n => hub.sendTelemetry({n}));
	await settle();
	const first = s1.published("devices/");
	t.is(first.length, 2, "at most maxInFlight in flight");
	first[0].ack();
	await settle();
	const ids = s1.published("devices/").map(p => mid(p.topic));
	t.is(ids.length, 3);
	s1.drop();
	await settle();
	t.false(hub.connected);
	t.is(events.disconnects.length, 1);
	const delay = events.disconnects[0].retryInMs!;
	t.true(delay >= 500 && delay <= 1000, `first retry after ${delay} ms`);
	t.is(factory.sessions.length, 1);
	await host.advanceAsync(delay);
	t.is(factory.sessions.length, 2);
	const s2 = factory.last();
	await connect(s2);
	const resent = s2.published("devices/");
	t.deepEqual(resent.map(p => mid(p.topic)), ids.slice(1), "in order, same ids");
	for (const p of resent) p.ack();
	await settle();
	const rest = s2.published("devices/").slice(resent.length);
	for (const p of rest) p.ack();
	const results = await Promise.all(promises);
	t.deepEqual(results.map(r => r.messageId).slice(0, 3), ids);
	t.like(hub.stats, {sent: 4, acked: 4, resent: 2, queued: 0, reconnects: 1});
	t.deepEqual(events.connects.map(c => c.reconnect), [false, true]);
	await hub.close();
});

test("a PUBACK timeout on a live connection is treated as a dead link: reconnect and re-send", async t => {
	const {hub, factory, host, events} = await opened();
	const s1 = factory.last();
	const sending = hub.sendTelemetry("x", {messageId: "late"});
	await settle();
	s1.published("devices/")[0].fail(new AzureIoTError("mqtt.timeout", "no PUBACK", {retriable: true}));
	await settle();
	t.is(s1.ended, "close");
	t.is(events.disconnects[0].error.code, "mqtt.timeout");
	await host.advanceAsync(events.disconnects[0].retryInMs!);
	await connect(factory.last());
	const [p] = factory.last().published("devices/");
	t.is(mid(p.topic), "late");
	p.ack();
	await sending;
	await hub.close();
});

test("backoff: repeated failures wait longer, with jitter, never 0 and never past max; a stable connection resets it", async t => {
	const {hub, factory, host, events} = setup({backoff: {initialMs: 1000, maxMs: 16000}}, new FakeHost({random: () => 0.999}));
	void hub.open().catch(() => {});
	for (let i = 0; i < 7; i++) {
		factory.last().drop();
		await settle();
		const delay = events.disconnects.at(-1)!.retryInMs!;
		t.is(delay, Math.round(500 + 0.999 * (Math.min(16000, 1000 * 2 ** i) - 500)), `attempt ${i}`);
		t.is(factory.sessions.length, i + 1);
		await host.advanceAsync(delay - 1);
		t.is(factory.sessions.length, i + 1, "no retry before the delay");
		await host.advanceAsync(1);
		t.is(factory.sessions.length, i + 2);
	}
	// A connection that stays up 30 s resets the backoff.
	await connect(factory.last());
	await host.advanceAsync(30000);
	factory.last().drop();
	await settle();
	t.true(events.disconnects.at(-1)!.retryInMs! <= 1000);
	// A connection dropped right after CONNACK (throttling, duplicate device) keeps backing off.
	await host.advanceAsync(events.disconnects.at(-1)!.retryInMs!);
	await connect(factory.last());
	factory.last().drop();
	await settle();
	t.true(events.disconnects.at(-1)!.retryInMs! > 1000);
	await hub.close();

	const low = setup({}, new FakeHost({random: () => 0}));
	void low.hub.open().catch(() => {});
	low.factory.last().drop();
	await settle();
	t.is(low.events.disconnects[0].retryInMs, 500, "even the first retry waits");
	await low.hub.close();
});

test("CONNACK 3: hub.unavailable, retried with backoff; open() keeps waiting and resolves once connected", async t => {
	const {hub, factory, host, events} = setup();
	let settled = false;
	const open = hub.open().finally(() => { settled = true; });
	factory.last().refuse(3);
	await settle();
	t.is(events.disconnects[0].error.code, "hub.unavailable");
	t.is(events.disconnects[0].error.status, 3);
	t.true(events.disconnects[0].error.retriable);
	t.is(events.auth.length, 0);
	t.false(settled);
	await host.advanceAsync(events.disconnects[0].retryInMs!);
	t.is(factory.sessions.length, 2);
	await connect(factory.last());
	await open;
	await hub.close();
});

for (const code of [4, 5]) {
	test(`CONNACK ${code}: open() rejects with hub.unauthorized, onAuthFailure, long pause; retarget() reconnects at once to the new hub`, async t => {
		const {hub, factory, host, events} = setup({backoff: {initialMs: 1000, maxMs: 60000}});
		const open = hub.open();
		factory.last().refuse(code);
		const error = await t.throwsAsync(open, {instanceOf: AzureIoTError}) as AzureIoTError;
		t.is(error.code, "hub.unauthorized");
		t.is(error.status, code);
		t.regex(error.message, /re-provision/i);
		t.is(events.auth.length, 1);
		const delay = events.disconnects[0].retryInMs!;
		t.true(delay >= 30000 && delay <= 60000, `paused ${delay} ms`);
		await host.advanceAsync(29999);
		t.is(factory.sessions.length, 1, "no tight loop");
		// Without retarget it tries again after the pause, still slowly.
		await host.advanceAsync(delay - 29999);
		t.is(factory.sessions.length, 2);
		factory.last().refuse(code);
		await settle();
		t.true(events.disconnects[1].retryInMs! >= 30000);
		t.is(events.auth.length, 2);
		// The app re-provisions and retargets: connect now, with the new identity.
		hub.retarget({hubHost: "other.azure-devices.net", deviceId: "dev-2", symmetricKey: KEY2});
		t.is(factory.sessions.length, 3);
		const o = factory.last().options;
		t.is(o.server.host, "other.azure-devices.net");
		t.is(o.clientId, "dev-2");
		t.regex(o.username!, /^other\.azure-devices\.net\/dev-2\/\?api-version=/);
		t.regex(o.password!, /sr=other\.azure-devices\.net%2Fdevices%2Fdev-2&/);
		const reopen = hub.open();
		await connect(factory.last());
		await reopen;
		await hub.close();
		t.deepEqual(host.timers, []);
	});
}

test("retarget keeps queued telemetry and sends it to the new device's topic", async t => {
	const {hub, factory} = await opened();
	const sending = hub.sendTelemetry({a: 1}, {messageId: "keep"});
	await settle();
	hub.retarget({hubHost: HUB, deviceId: "dev-9"});
	t.is(factory.sessions[0].ended, "disconnect");
	await connect(factory.last());
	const [p] = factory.last().published("devices/");
	t.is(p.topic.split("/$.mid")[0], "devices/dev-9/messages/events");
	t.is(mid(p.topic), "keep");
	p.ack();
	await sending;
	await hub.close();
});

test("TLS failure: reported with its error and retried after a long delay", async t => {
	const {hub, factory, events} = setup({backoff: {initialMs: 1000, maxMs: 20000}});
	void hub.open().catch(() => {});
	factory.last().drop(new AzureIoTError("tls", "certificate signed by an unknown authority"));
	await settle();
	t.is(events.disconnects[0].error.code, "tls");
	t.true(events.disconnects[0].retryInMs! >= 10000);
	await hub.close();
});

test("SAS renewal: clean reconnect with a fresh token before expiry, queued telemetry kept, counted in stats", async t => {
	const host = new FakeHost();
	const {hub, factory, events} = await opened({tokenTtlSeconds: 3600}, host);
	const s1 = factory.last();
	const se1 = Number(/se=(\d+)/.exec(s1.options.password!)![1]);
	t.is(se1, Math.floor(host.now() / 1000) + 3600);
	const sending = hub.sendTelemetry({x: 1}, {messageId: "across-renewal"});
	await settle();
	t.is(s1.published("devices/").length, 1);
	await host.advanceAsync(2700 * 1000 - 1);
	t.is(factory.sessions.length, 1, "not before ttl - 25%");
	await host.advanceAsync(1);
	t.is(s1.ended, "disconnect", "DISCONNECT, not a dropped socket");
	t.is(factory.sessions.length, 2);
	const s2 = factory.last();
	const se2 = Number(/se=(\d+)/.exec(s2.options.password!)![1]);
	t.is(se2, Math.floor(host.now() / 1000) + 3600);
	t.true(se2 < se1 + 3600 && se2 > se1);
	t.is(events.disconnects.length, 0, "a planned renewal is not a disconnect");
	await connect(s2);
	const [p] = s2.published("devices/");
	t.is(mid(p.topic), "across-renewal");
	p.ack();
	await sending;
	t.is(hub.stats.reconnects, 1);
	t.deepEqual(events.connects.map(c => c.reconnect), [false, true]);
	// And again one period later.
	await host.advanceAsync(2700 * 1000);
	t.is(factory.sessions.length, 3);
	await hub.close();
});

test("twin: get and reported patch matched by rid (replies out of order), status errors, malformed reply, timeout", async t => {
	const {hub, factory, host} = await opened({operationTimeoutMs: 5000});
	const s = factory.last();
	const getting = hub.getTwin();
	const patching = hub.updateReported({fw: "1.2", removed: null});
	await settle();
	const [, get] = s.published("$iothub/twin/GET/");
	const [patch] = s.published("$iothub/twin/PATCH/properties/reported/");
	t.regex(patch.topic, /^\$iothub\/twin\/PATCH\/properties\/reported\/\?\$rid=\w+$/);
	t.deepEqual(JSON.parse(patch.text()), {fw: "1.2", removed: null});
	t.not(rid(get.topic), rid(patch.topic));
	s.deliver(`$iothub/twin/res/204/?$rid=${rid(patch.topic)}&$version=12`);
	s.deliver(`$iothub/twin/res/200/?$rid=${rid(get.topic)}`, {desired: {$version: 1}, reported: {fw: "1.1", $version: 11}});
	t.is(await patching, 12);
	t.deepEqual(await getting, {desired: {$version: 1}, reported: {fw: "1.1", $version: 11}});

	const rejected = hub.updateReported({big: 1});
	await settle();
	s.deliver(`$iothub/twin/res/429/?$rid=${rid(s.published("$iothub/twin/PATCH/").at(-1)!.topic)}`, "{\"errorCode\":429001}");
	const e1 = await t.throwsAsync(rejected, {instanceOf: AzureIoTError}) as AzureIoTError;
	t.like(e1, {code: "hub.rejected", status: 429, retriable: true});
	const bad = hub.updateReported({x: 1});
	const badGet = hub.getTwin();
	await settle();
	s.deliver(`$iothub/twin/res/400/?$rid=${rid(s.published("$iothub/twin/PATCH/").at(-1)!.topic)}`);
	s.deliver(`$iothub/twin/res/200/?$rid=${rid(s.published("$iothub/twin/GET/").at(-1)!.topic)}`, "{not json");
	t.like(await t.throwsAsync(bad) as AzureIoTError, {code: "hub.rejected", status: 400, retriable: false});
	t.is((await t.throwsAsync(badGet) as AzureIoTError).code, "hub.badReply");
	// Unknown rids are ignored.
	s.deliver("$iothub/twin/res/200/?$rid=999999", "{}");

	const slow = hub.getTwin();
	let failed: AzureIoTError | undefined;
	slow.catch(e => { failed = e; });
	await host.advanceAsync(4999);
	t.is(failed, undefined);
	await host.advanceAsync(1);
	t.is(failed?.code, "mqtt.timeout");
	await hub.close();
});

test("twin requests made while disconnected are sent after the reconnect", async t => {
	const {hub, factory, host, events} = await opened();
	factory.last().drop();
	await settle();
	const getting = hub.getTwin();
	await host.advanceAsync(events.disconnects[0].retryInMs!);
	const s2 = factory.last();
	s2.connack();
	await settle();
	const gets = s2.published("$iothub/twin/GET/");
	t.is(gets.length, 2, "the reconnect's own read and the caller's");
	for (const g of gets) s2.deliver(`$iothub/twin/res/200/?$rid=${rid(g.topic)}`, {desired: {$version: 1}, reported: {$version: 3}});
	t.deepEqual((await getting).reported, {$version: 3});
	await hub.close();
});

test("desired: patches reach onDesired, malformed ones reach onError; the twin is re-read after a reconnect", async t => {
	const {hub, factory, host, events} = await opened();
	const s1 = factory.last();
	t.deepEqual(events.desired, [{patch: {$version: 1}, version: 1}]);
	s1.deliver("$iothub/twin/PATCH/properties/desired/?$version=2", {fan: 3, $version: 2});
	t.deepEqual(events.desired.at(-1), {patch: {fan: 3, $version: 2}, version: 2});
	s1.deliver("$iothub/twin/PATCH/properties/desired/?$version=3", "{broken");
	t.is(events.errors.at(-1)?.code, "hub.badReply");
	t.is(events.desired.length, 2);
	t.true(hub.connected, "a malformed patch does not end anything");

	s1.drop();
	await settle();
	await host.advanceAsync(events.disconnects[0].retryInMs!);
	const s2 = factory.last();
	await connect(s2, {$version: 7, fan: 5});
	t.deepEqual(events.desired.at(-1), {patch: {$version: 7, fan: 5}, version: 7}, "changes made while offline arrive");
	// Same version after another reconnect: nothing new to report.
	s2.drop();
	await settle();
	await host.advanceAsync(events.disconnects[1].retryInMs!);
	await connect(factory.last(), {$version: 7, fan: 5});
	t.is(events.desired.length, 3);
	// A patch older than what the read delivered is not replayed.
	factory.last().deliver("$iothub/twin/PATCH/properties/desired/?$version=6", {fan: 4, $version: 6});
	t.is(events.desired.length, 3);
	await hub.close();
});

test("a failed twin read after connect is reported and retried; open() still resolves", async t => {
	const {hub, factory, host, events} = setup({operationTimeoutMs: 1000});
	const open = hub.open();
	const s = factory.last();
	s.connack();
	await settle();
	s.deliver(`$iothub/twin/res/429/?$rid=${rid(s.published("$iothub/twin/GET/")[0].topic)}`);
	await open;
	t.is(events.errors[0].code, "hub.rejected");
	await host.advanceAsync(1000);
	const gets = s.published("$iothub/twin/GET/");
	t.is(gets.length, 2);
	s.deliver(`$iothub/twin/res/200/?$rid=${rid(gets[1].topic)}`, {desired: {$version: 5}, reported: {}});
	await settle();
	t.deepEqual(events.desired, [{patch: {$version: 5}, version: 5}]);
	await hub.close();
});

test("direct methods: 200 with the handler's payload, 500 without the stack, 501 without a handler, 400 for bad JSON", async t => {
	const calls: unknown[] = [];
	const {hub, factory} = await opened({
		onMethod: async request => {
			calls.push(request);
			if (request.name === "fail") throw new Error("sensor offline");
			return {status: 200, payload: {ok: true, echo: request.payload}};
		},
	});
	const s = factory.last();
	s.deliver("$iothub/methods/POST/reboot/?$rid=a1", {delay: 5});
	s.deliver("$iothub/methods/POST/fail/?$rid=a2", "");
	s.deliver("$iothub/methods/POST/reboot/?$rid=a3", "{nope");
	await settle();
	t.deepEqual(calls, [{name: "reboot", command: "reboot", payload: {delay: 5}, rid: "a1"}, {name: "fail", command: "fail", payload: null, rid: "a2"}]);
	const replies = s.published("$iothub/methods/res/");
	const byRid = Object.fromEntries(replies.map(r => [rid(r.topic), r]));
	t.is(byRid.a1.topic, "$iothub/methods/res/200/?$rid=a1");
	t.deepEqual(JSON.parse(byRid.a1.text()), {ok: true, echo: {delay: 5}});
	t.is(byRid.a2.topic, "$iothub/methods/res/500/?$rid=a2");
	const body = JSON.parse(byRid.a2.text());
	t.regex(body.message, /sensor offline/);
	t.false(byRid.a2.text().includes("at "), "no stack trace");
	t.is(byRid.a3.topic, "$iothub/methods/res/400/?$rid=a3");
	t.is(byRid.a1.qos, 0);
	await hub.close();

	const none = await opened({onMethod: undefined});
	none.factory.last().deliver("$iothub/methods/POST/reboot/?$rid=b1", "{}");
	await settle();
	const [r] = none.factory.last().published("$iothub/methods/res/");
	t.is(r.topic, "$iothub/methods/res/501/?$rid=b1");
	t.is(typeof JSON.parse(r.text()).message, "string");
	await none.hub.close();
});

test("cloud-to-device: properties and system properties parsed, body bytes, PUBACK waits for the handler", async t => {
	const received: any[] = [];
	let finish!: () => void;
	const {hub, factory} = await opened({
		onMessage: message => {
			received.push(message);
			return new Promise<void>(resolve => { finish = resolve; });
		},
	});
	const topic = `devices/${DEVICE}/messages/devicebound/%24.mid=abc&%24.to=%2Fdevices%2F${DEVICE}%2Fmessages%2FdeviceBound&%24.ct=text%2Fplain&iothub-ack=full&color=r%C3%A9d&x=1%262`;
	const ack = factory.last().deliver(topic, "héllo", 1);
	t.true(ack instanceof Promise, "the session's PUBACK waits on this");
	const m = received[0];
	t.is(m.text(), "héllo");
	t.deepEqual([...m.body], [...Buffer.from("héllo")]);
	t.deepEqual({...m.properties}, {color: "réd", x: "1&2"});
	t.deepEqual({...m.systemProperties}, {"$.mid": "abc", "$.to": `/devices/${DEVICE}/messages/deviceBound`, "$.ct": "text/plain", "iothub-ack": "full"});
	t.is(m.topic, topic);
	let acked = false;
	void (ack as Promise<void>).then(() => { acked = true; });
	await settle();
	t.false(acked);
	finish();
	await settle();
	t.true(acked);
	// A throwing handler does not stop the acknowledgement or the client.
	await hub.close();
	const throwing = await opened({onMessage: () => { throw new Error("app bug"); }});
	t.is(throwing.factory.last().deliver(`devices/${DEVICE}/messages/devicebound/`, "x", 1), undefined);
	t.true(throwing.hub.connected);
	await throwing.hub.close();
});

test("close(): DISCONNECT, every timer cleared, pending telemetry and twin requests reject with hub.closed", async t => {
	const {hub, factory, host} = await opened();
	const s = factory.last();
	const sending = hub.sendTelemetry({a: 1});
	const twin = hub.getTwin();
	await settle();
	await hub.close();
	t.is(s.ended, "disconnect");
	t.false(hub.connected);
	t.is((await t.throwsAsync(sending) as AzureIoTError).code, "hub.closed");
	t.is((await t.throwsAsync(twin) as AzureIoTError).code, "hub.closed");
	t.deepEqual(host.timers, [], "no timer left behind");
	t.is((await t.throwsAsync(hub.sendTelemetry("late")) as AzureIoTError).code, "hub.closed");
	t.is((await t.throwsAsync(hub.open()) as AzureIoTError).code, "hub.closed");
	t.throws(() => hub.retarget({hubHost: HUB, deviceId: DEVICE}), {message: /closed/});
	await hub.close(); // idempotent

	// Closing while waiting to retry cancels the retry and rejects open().
	const waiting = setup();
	const open = waiting.hub.open();
	waiting.factory.last().drop();
	await settle();
	await waiting.hub.close();
	t.is((await t.throwsAsync(open) as AzureIoTError).code, "hub.closed");
	t.deepEqual(waiting.host.timers, []);
	await waiting.host.advanceAsync(120000);
	t.is(waiting.factory.sessions.length, 1);
});

test("no secret (key, token, signature) in any error or log, even when a lower layer's message carries one", async t => {
	const {hub, factory, host, events} = setup({operationTimeoutMs: 1000, queueLimit: 1});
	const open = hub.open();
	const s = factory.last();
	const password = s.options.password!;
	const sig = /sig=([^&]+)/.exec(password)![1];
	s.refuse(5);
	const messages: string[] = [];
	try { await open; } catch (e) { messages.push((e as Error).message); }
	await host.advanceAsync(events.disconnects[0].retryInMs!);
	const s2 = factory.last();
	s2.drop(new AzureIoTError("network", `socket closed while sending ${s2.options.password} with key ${KEY}`));
	await settle();
	await host.advanceAsync(events.disconnects.at(-1)!.retryInMs!);
	await connect(factory.last());
	const overflow = [hub.sendTelemetry("a"), hub.sendTelemetry("b")];
	overflow[0].catch(() => {});
	const twin = hub.getTwin();
	await host.advanceAsync(1000);
	for (const p of [...overflow.slice(1), twin]) try { await p; } catch (e) { messages.push((e as Error).message); }
	for (const {error} of events.disconnects) messages.push(error.message);
	for (const e of [...events.errors, ...events.auth]) messages.push(e.message);
	t.true(messages.length >= 6);
	t.true(events.disconnects.some(d => d.error.message.includes("<redacted>")));
	const secrets = [KEY, password, sig, decodeURIComponent(sig), s2.options.password!, /sig=([^&]+)/.exec(s2.options.password!)![1]];
	assertNoSecrets(t, [...messages, ...host.logs], secrets);
	await hub.close();
});

test("SAS renewal is timed from the token, so a slow CONNACK does not eat the margin", async t => {
	const host = new FakeHost();
	const {hub, factory} = setup({tokenTtlSeconds: 600, renewBeforeSeconds: 60}, host);
	const open = hub.open();
	await host.advanceAsync(20000); // handshake takes 20 s
	await connect(factory.last());
	await open;
	await host.advanceAsync(540000 - 20000 - 1);
	t.is(factory.sessions.length, 1);
	await host.advanceAsync(1);
	t.is(factory.sessions.length, 2, "renewed 60 s before the token's expiry");
	await hub.close();
});
