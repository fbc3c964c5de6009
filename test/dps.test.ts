/*
 * The DPS client against a scripted session on a virtual clock: every reply DPS can give, and the
 * delays between attempts (retry-after honoured, backoff otherwise, never a tight loop).
 */
import test from "ava";
import * as crypto from "node:crypto";
import {ProvisioningClient, throttleDelay, type ProvisioningOptions} from "../src/dps.js";
import {AzureIoTError} from "../src/errors.js";
import {FakeHost, sessionFactory, settle, type FakeSession} from "./helpers/fake-host.js";

const KEY = crypto.randomBytes(32).toString("base64");
const REG = "dev-001";
const SCOPE = "0ne00000001";

function setup(extra: Partial<ProvisioningOptions> = {}) {
	const host = new FakeHost();
	const factory = sessionFactory();
	const client = new ProvisioningClient({
		adapter: host, idScope: SCOPE, registrationId: REG, symmetricKey: KEY, roots: [new Uint8Array([1])],
		endpoint: "dps.example", createSession: factory.createSession, ...extra,
	});
	let outcome: {result?: Awaited<ReturnType<ProvisioningClient["register"]>>; error?: AzureIoTError} | undefined;
	const done = client.register().then(result => { outcome = {result}; }, error => { outcome = {error}; });
	return {host, factory, client, done, outcome: () => outcome};
}

/** Connects the newest session and returns it once the client has published its request. */
async function connected(factory: ReturnType<typeof sessionFactory>): Promise<FakeSession> {
	await settle();
	const session = factory.last();
	if (!session.connected) session.connack();
	await settle();
	return session;
}

function lastRid(session: FakeSession): string {
	const topic = session.publishes.at(-1)!.topic;
	return new URLSearchParams(topic.slice(topic.indexOf("?") + 1)).get("$rid")!;
}

function reply(session: FakeSession, status: number, body: unknown, retryAfter?: number) {
	const rid = lastRid(session);
	session.deliver(`$dps/registrations/res/${status}/?$rid=${rid}${retryAfter !== undefined ? `&retry-after=${retryAfter}` : ""}`, typeof body === "string" ? body : JSON.stringify(body));
}

const assigning = {operationId: "op-1", status: "assigning"};
const assigned = {
	operationId: "op-1", status: "assigned",
	registrationState: {
		registrationId: REG, createdDateTimeUtc: "2026-01-01T00:00:00Z", assignedHub: "hub.example", deviceId: REG,
		status: "assigned", substatus: "initialAssignment", lastUpdatedDateTimeUtc: "2026-01-01T00:00:01Z", etag: "IjEi", payload: {a: 1},
	},
};

test("register: CONNECT fields, 202, poll after retry-after, 200 with every field, then unsubscribe and disconnect", async t => {
	const {host, factory, done, outcome, client} = setup({modelId: "dtmi:com:example:X;1"});
	const session = await connected(factory);
	const o = session.options;
	t.is(o.clientId, REG);
	t.is(o.username, `${SCOPE}/registrations/${REG}/api-version=2019-03-31`);
	t.true(o.clean);
	t.deepEqual(o.server, {host: "dps.example", port: 8883, roots: [new Uint8Array([1])]});
	const password = new URLSearchParams(o.password!.slice("SharedAccessSignature ".length));
	const sr = o.password!.match(/sr=([^&]+)/)![1];
	t.is(sr, encodeURIComponent(`${SCOPE}/registrations/${REG}`));
	t.is(password.get("skn"), "registration");
	t.is(Number(password.get("se")), Math.floor(host.time / 1000) + 3600);
	t.is(password.get("sig"), crypto.createHmac("sha256", Buffer.from(KEY, "base64")).update(`${sr}\n${password.get("se")}`).digest("base64"));
	t.deepEqual(session.subscribes[0].subscriptions, [{topic: "$dps/registrations/res/#", qos: 1}]);

	const register = session.publishes[0];
	t.regex(register.topic, /^\$dps\/registrations\/PUT\/iotdps-register\/\?\$rid=\S+$/);
	t.deepEqual(JSON.parse(register.text()), {registrationId: REG, payload: {modelId: "dtmi:com:example:X;1"}});
	register.ack();
	reply(session, 202, assigning, 2);
	await host.advanceAsync(1999);
	t.is(session.publishes.length, 1, "no poll before retry-after has passed");
	await host.advanceAsync(1);
	const poll = session.publishes[1];
	t.regex(poll.topic, /^\$dps\/registrations\/GET\/iotdps-get-operationstatus\/\?\$rid=\S+&operationId=op-1$/);
	t.is(poll.text(), "");
	reply(session, 200, assigned);
	await done;
	const result = outcome()!.result!;
	t.like(result, {...assigned.registrationState, operationId: "op-1"});
	t.deepEqual(result.payload, {a: 1});
	t.deepEqual(client.counts, {register: 1, poll: 1, connects: 1});
	// Gone before register() resolved: the hub's TLS session never overlaps DPS's.
	t.deepEqual(session.unsubscribes, [["$dps/registrations/res/#"]]);
	t.is(session.ended, "disconnect");
});

test("429 on register: retry-after is a floor, with a random share added so a fleet spreads; attempts counted", async t => {
	const {host, factory, done, outcome, client} = setup();
	const session = await connected(factory);
	const waits: number[] = [];
	for (let i = 0; i < 2; i++) {
		reply(session, 429, {errorCode: 429001, message: "throttled"}, 5);
		await settle();
		const wait = host.timers[0];
		waits.push(wait.in);
		await host.advanceAsync(4999);
		t.is(session.publishes.length, i + 1, "nothing sent before retry-after has passed");
		await host.advanceAsync(wait.in - 4999);
		t.is(session.publishes.length, i + 2, "re-registered once the wait was over");
		t.regex(session.publishes.at(-1)!.topic, /iotdps-register/);
	}
	t.true(waits[0] >= 5000 && waits[0] <= 10_000, `first wait ${waits[0]} within [5 s, 10 s]`);
	t.true(waits[1] >= 5000 && waits[1] <= 15_000, `second wait ${waits[1]} within [5 s, 15 s]`);
	reply(session, 200, assigned);
	await done;
	t.truthy(outcome()!.result);
	t.is(client.counts.register, 3);
	t.is(client.counts.poll, 0);
});

test("throttleDelay: never below retry-after, spread grows with consecutive refusals up to 4x", t => {
	t.is(throttleDelay(3, 1, () => 0), 3000);
	t.is(throttleDelay(3, 1, () => 0.999999), 6000);
	t.is(throttleDelay(3, 9, () => 0.999999), 15000);
	t.is(throttleDelay(0, 1, () => 0), 1000, "at least a second");
	t.is(throttleDelay(2, 1, () => NaN), 3000, "a broken random source still gives a bounded delay");
	// 1,000 devices told "3 s": their retries spread over 3 s instead of landing in one instant.
	let seed = 1;
	const random = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
	const delays = Array.from({length: 1000}, () => throttleDelay(3, 1, random));
	const perSecond = new Map<number, number>();
	for (const d of delays) perSecond.set(Math.floor(d / 1000), (perSecond.get(Math.floor(d / 1000)) ?? 0) + 1);
	t.true(Math.max(...perSecond.values()) < 400, `busiest second holds ${Math.max(...perSecond.values())} of 1000`);
});

test("429 on poll keeps the operation: it polls again, never re-registers", async t => {
	const {host, factory, done, outcome, client} = setup();
	const session = await connected(factory);
	reply(session, 202, assigning, 1);
	await host.advanceAsync(1000);
	reply(session, 429, {errorCode: 429002}, 3);
	await host.advanceAsync(6000);
	t.regex(session.publishes.at(-1)!.topic, /operationId=op-1/);
	reply(session, 200, assigned);
	await done;
	t.truthy(outcome()!.result);
	t.deepEqual([client.counts.register, client.counts.poll], [1, 2]);
});

test("5xx without retry-after backs off with jitter, growing, never immediately", async t => {
	const {host, factory, done, outcome} = setup();
	const session = await connected(factory);
	const delays: number[] = [];
	for (let i = 0; i < 4; i++) {
		reply(session, 503, "");
		await settle();
		const wait = host.timers.find(x => x.ms >= 500)!;
		t.truthy(wait, "a delay was scheduled");
		delays.push(wait.ms);
		t.true(wait.ms >= 500 && wait.ms <= 1000 * 2 ** i, `delay ${wait.ms} within [500, ${1000 * 2 ** i}]`);
		await host.advanceAsync(wait.ms);
	}
	reply(session, 200, assigned);
	await done;
	t.truthy(outcome()!.result);
});

test("terminal replies end at once with an error that names the fix", async t => {
	const cases: [number, unknown, string, RegExp][] = [
		[401, {errorCode: 401002, message: "unauthorized"}, "dps.unauthorized", /key/],
		[403, {errorCode: 403001}, "dps.forbidden", /enabled/],
		[404, {errorCode: 404001}, "dps.notFound", /enrollment/],
		[400, {errorCode: 400004, message: "bad request"}, "dps.rejected", /DPS said: bad request/],
	];
	for (const [status, body, code, message] of cases) {
		const {host, factory, done, outcome} = setup();
		const session = await connected(factory);
		reply(session, status, body);
		await done;
		const error = outcome()!.error!;
		t.is(error.code as string, code, String(status));
		t.regex(error.message, message);
		t.is(error.status, status);
		await host.advanceAsync(600_000);
		t.is(factory.sessions.length, 1, "no retry");
		t.is(session.publishes.length, 1);
		t.false(error.message.includes(KEY));
	}
});

test("failed and disabled registrations are terminal and carry the registration state", async t => {
	for (const status of ["failed", "disabled"]) {
		const {factory, done, outcome} = setup();
		const session = await connected(factory);
		reply(session, 200, {operationId: "op", status, registrationState: {registrationId: REG, status, errorCode: 400209, errorMessage: "Custom allocation failed"}});
		await done;
		const error = outcome()!.error! as AzureIoTError & {result?: {errorCode?: number}};
		t.is(error.code as string, `dps.${status}`);
		t.is(error.result?.errorCode, 400209);
	}
});

test("an operation status DPS does not define ends the registration at once (dps.badReply), in the 202 and in a poll reply: no polling on", async t => {
	for (const when of ["register", "poll"] as const) {
		const {host, factory, done, outcome} = setup();
		const session = await connected(factory);
		if (when === "poll") {
			reply(session, 202, assigning, 1);
			await host.advanceAsync(1000);
			t.is(session.publishes.length, 2, "polled once");
		}
		const published = session.publishes.length;
		reply(session, 202, {operationId: "op-1", status: "queued"}, 1);
		// Ten virtual minutes: had it polled on, there would be more requests and, at the end, a dps.timeout.
		await host.advanceAsync(600_000);
		await done;
		const error = outcome()!.error!;
		t.is(error.code, "dps.badReply", when);
		t.regex(error.message, /registration status "queued", which it does not define .*stopped rather than poll on/);
		t.false(error.retriable);
		t.is(session.publishes.length, published, `${when}: no further poll`);
		t.is(factory.sessions.length, 1, `${when}: no new connection`);
	}
});

test("malformed and truncated replies are retried with backoff, then reported as dps.badReply", async t => {
	const {host, factory, done, outcome, client} = setup({maxRetries: 3});
	const session = await connected(factory);
	for (const bad of ['{"operationId":"op-1","status":', "[]", '{"status":5}', "\u0000\u00ff"]) {
		reply(session, 202, bad);
		await settle();
		await host.advanceAsync(host.timers[0]?.in ?? 0);
	}
	await done;
	t.is(outcome()!.error!.code, "dps.badReply");
	t.is(client.counts.register, 4, "one attempt plus three retries");
});

test("a connection dropped after 202 reconnects and polls the same operation", async t => {
	const {host, factory, done, outcome, client} = setup();
	const first = await connected(factory);
	reply(first, 202, assigning, 1);
	await host.advanceAsync(1000);
	first.drop();
	await settle();
	await host.advanceAsync(host.timers[0]?.in ?? 0);
	const second = await connected(factory);
	t.not(second, first);
	t.regex(second.publishes[0].topic, /operationId=op-1/);
	reply(second, 200, assigned);
	await done;
	t.truthy(outcome()!.result);
	t.deepEqual([client.counts.register, client.counts.connects], [1, 2]);
});

test("CONNACK 5 is dps.unauthorized; CONNACK 3 is retried", async t => {
	{
		const {factory, done, outcome} = setup();
		await settle();
		factory.last().refuse(5);
		await done;
		t.is(outcome()!.error!.code, "dps.unauthorized");
		t.regex(outcome()!.error!.message, /CONNACK 5/);
	}
	{
		const {host, factory, done, outcome} = setup();
		await settle();
		factory.last().refuse(3);
		await settle();
		await host.advanceAsync(host.timers[0].in);
		const session = await connected(factory);
		reply(session, 200, assigned);
		await done;
		t.truthy(outcome()!.result);
	}
});

test("a DPS that never answers ends in dps.timeout within the bound, with few attempts", async t => {
	const {host, factory, done, outcome, client} = setup({timeoutMs: 120_000, replyTimeoutMs: 10_000});
	await connected(factory);
	for (let i = 0; i < 40 && !outcome(); i++) {
		await host.advanceAsync(5_000);
		const s = factory.last();
		if (!s.connected && !s.ended) s.connack();
	}
	await done;
	t.is(outcome()!.error!.code, "dps.timeout");
	t.true(client.counts.register <= 8, `${client.counts.register} registrations in 2 minutes`);
});

test("replies for another request id are ignored", async t => {
	const {host, factory, done, outcome} = setup();
	const session = await connected(factory);
	session.deliver("$dps/registrations/res/200/?$rid=not-mine", JSON.stringify(assigned));
	session.deliver("$dps/registrations/res/xyz/?$rid=1", "{}");
	await settle();
	t.is(outcome(), undefined);
	reply(session, 200, assigned);
	await done;
	t.truthy(outcome()!.result);
	void host;
});

test("close() during a retry delay ends register() at once and clears its timers", async t => {
	const {host, factory, done, outcome, client} = setup();
	const session = await connected(factory);
	reply(session, 429, "", 30);
	await settle();
	client.close();
	await done;
	t.is(outcome()!.error!.code, "dps.closed");
	t.deepEqual(host.timers, []);
});

test("bad options are refused before anything connects", t => {
	const host = new FakeHost();
	const base = {adapter: host, idScope: SCOPE, registrationId: REG, symmetricKey: KEY, roots: [new Uint8Array([1])]};
	t.throws(() => new ProvisioningClient({...base, idScope: ""}), {message: /idScope: is missing/});
	t.throws(() => new ProvisioningClient({...base, registrationId: "a/b"}), {message: /registrationId: contains "\/"/});
	t.throws(() => new ProvisioningClient({...base, symmetricKey: "!!"}), {message: /symmetricKey: is not valid base64/});
	t.throws(() => new ProvisioningClient({...base, roots: []}), {message: /roots: has no trusted root/});
	t.throws(() => new ProvisioningClient({...base, port: 0}), {message: /port/});
});
