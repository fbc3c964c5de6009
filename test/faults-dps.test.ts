/*
 * Fault matrix, DPS: the provisioning client through the Node host, on real sockets, against the
 * emulator's injected faults. Each case asserts what was observed: how many requests of each kind
 * reached the service (emulator counters) and were made (client counters), what the client waited,
 * and how it ended. "Never a tight loop" is asserted as a bound on attempts within a time.
 * The same replies on a virtual clock with a fake session: test/dps.test.ts.
 */
import test from "ava";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {AzureIoTError} from "../src/errors.js";
import type {ProvisioningStatus} from "../src/dps.js";
import {startReference} from "../firmware/reference.js";
import {createNodePlatform} from "../hosts/node/platform.js";
import {EventLog} from "./helpers/e2e.js";
import {provisioningClient, sleep, startFaultRig, uniqueId, type FaultRig} from "./helpers/faults.js";

let rig: FaultRig;
test.before(async () => { rig = await startFaultRig(); });
test.after.always(async () => { await rig?.close(); });

/** Enrolls a fresh registration id and gives a client that records its status reports with times. */
function setUp(prefix: string, extra: Parameters<typeof provisioningClient>[3] = {}) {
	const id = uniqueId(prefix);
	const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id});
	const statuses: (ProvisioningStatus & {at: number})[] = [];
	const client = provisioningClient(rig, id, symmetricKey, {onStatus: s => statuses.push({...s, at: Date.now()}), ...extra});
	const served = () => rig.emulator.stats().devices[id] ?? {dpsRegisterRequests: 0, dpsPollRequests: 0, dpsConnects: 0};
	return {id, symmetricKey, client, statuses, served};
}

const retries = (statuses: ProvisioningStatus[]) => statuses.filter(s => s.state === "retrying");
const at = (statuses: (ProvisioningStatus & {at: number})[], state: ProvisioningStatus["state"]) => statuses.filter(s => s.state === state).map(s => s.at);

test("429 on register: retry-after is honoured (a floor, with jitter above) before each new attempt; 3 register requests in all, then assigned", async t => {
	const {id, client, statuses, served} = setUp("dps-429-register");
	rig.emulator.addFault({kind: "dps.status", on: "register", status: 429, retryAfter: 2, count: 2, registrationId: id});
	const result = await client.register();
	t.is(result.status, "assigned");
	t.is(client.counts.register, 3);
	t.is(served().dpsRegisterRequests, 3, "the service saw 2 refused + 1 accepted register requests");
	// retry-after is the floor; a random share above it (up to n times it after n refusals) spreads a fleet.
	const waits = retries(statuses).map(s => s.retryAfterMs!);
	t.is(waits.length, 2);
	waits.forEach((w, i) => t.true(w >= 2000 && w <= 2000 * (2 + i), `wait ${i + 1}: ${w} ms within [2000, ${2000 * (2 + i)}]`));
	t.regex(retries(statuses)[0].reason ?? "", /throttling \(429\)/);
	const registering = at(statuses, "registering");
	for (let i = 1; i < registering.length; i++)
		t.true(registering[i] - registering[i - 1] >= 2000 - 20, `attempt ${i + 1} came no sooner than retry-after`);
});

test("429 on poll: the operation is kept (no new register), polled again after retry-after", async t => {
	const {id, client, statuses, served} = setUp("dps-429-poll");
	rig.emulator.addFault({kind: "dps.status", on: "poll", status: 429, retryAfter: 1, count: 2, registrationId: id});
	const result = await client.register();
	t.is(result.status, "assigned");
	t.is(client.counts.register, 1);
	t.is(served().dpsRegisterRequests, 1);
	// 2 refused, then "assigning" (the emulator's pollsBeforeAssigned: 1), then assigned.
	t.is(client.counts.poll, 4);
	t.is(served().dpsPollRequests, 4);
	const waits = retries(statuses).map(s => s.retryAfterMs!);
	t.is(waits.length, 2);
	waits.forEach((w, i) => t.true(w >= 1000 && w <= 1000 * (2 + i), `wait ${i + 1}: ${w} ms within [1000, ${1000 * (2 + i)}]`));
});

test("429 that never ends: no more than one attempt per retry-after, and close() ends it", async t => {
	const {id, client, served} = setUp("dps-429-forever");
	rig.emulator.addFault({kind: "dps.status", on: "register", status: 429, retryAfter: 1, registrationId: id});
	const registering = client.register();
	registering.catch(() => {});
	await sleep(4500);
	const attempts = served().dpsRegisterRequests;
	t.log(`${attempts} register requests in 4.5 s`);
	// At most one attempt per retry-after (plus the first); fewer when the random share is large.
	t.true(attempts >= 2 && attempts <= 5, `${attempts} register requests in 4.5 s with retry-after 1 s`);
	client.close();
	const error = await t.throwsAsync(registering);
	t.is((error as AzureIoTError).code, "dps.closed");
	await sleep(1500);
	t.is(served().dpsRegisterRequests, attempts, "nothing more after close()");
});

test("5xx on register without retry-after: retried with jittered backoff, never immediately", async t => {
	const {id, client, statuses, served} = setUp("dps-5xx-register");
	rig.emulator.addFault({kind: "dps.status", on: "register", status: 503, count: 1, registrationId: id});
	rig.emulator.addFault({kind: "dps.status", on: "register", status: 500, count: 1, registrationId: id});
	const result = await client.register();
	t.is(result.status, "assigned");
	t.is(served().dpsRegisterRequests, 3);
	const delays = retries(statuses).map(s => s.retryAfterMs ?? 0);
	t.is(delays.length, 2);
	for (const d of delays) t.true(d >= 500 && d <= 2000, `backoff ${d} ms within [500, 2000]`);
	t.regex(retries(statuses)[0].reason ?? "", /internal error \(503\)/);
});

test("5xx on poll: polled again, same operation", async t => {
	const {id, client, served} = setUp("dps-5xx-poll");
	rig.emulator.addFault({kind: "dps.status", on: "poll", status: 500, count: 1, registrationId: id});
	t.is((await client.register()).status, "assigned");
	t.is(served().dpsRegisterRequests, 1);
	t.is(served().dpsPollRequests, 3);
});

test("a truncated register reply is retried (a new register); truncated poll replies are polled again", async t => {
	const a = setUp("dps-malformed-register");
	rig.emulator.addFault({kind: "dps.malformed", on: "register", count: 1, registrationId: a.id});
	t.is((await a.client.register()).status, "assigned");
	t.is(a.served().dpsRegisterRequests, 2, "the unusable 202 had no operationId to poll: registered again");
	t.regex(retries(a.statuses)[0].reason ?? "", /JSON|malformed|not/i);

	const b = setUp("dps-malformed-poll");
	rig.emulator.addFault({kind: "dps.malformed", on: "poll", count: 2, registrationId: b.id});
	t.is((await b.client.register()).status, "assigned");
	t.is(b.served().dpsRegisterRequests, 1);
	t.is(b.served().dpsPollRequests, 3, "202 (cut), 200 (cut), 200");
	t.is(retries(b.statuses).length, 2);
});

test("malformed replies that never stop end in dps.badReply after the retry budget, not in a loop", async t => {
	const {id, client, served} = setUp("dps-malformed-forever", {maxRetries: 2});
	rig.emulator.addFault({kind: "dps.malformed", on: "register", registrationId: id});
	const error = await t.throwsAsync(client.register());
	t.is((error as AzureIoTError).code, "dps.badReply");
	t.regex(error!.message, /gave up after 2 retries/);
	t.is(served().dpsRegisterRequests, 3);
});

test("a connection dropped mid-registration: reconnect and register again; dropped mid-poll: reconnect and poll the same operation", async t => {
	const a = setUp("dps-drop-register");
	rig.emulator.addFault({kind: "dps.drop", on: "register", count: 1, registrationId: a.id});
	t.is((await a.client.register()).status, "assigned");
	t.is(a.client.counts.connects, 2);
	t.is(a.served().dpsConnects, 2);
	t.is(a.served().dpsRegisterRequests, 2);
	t.true(retries(a.statuses)[0].retryAfterMs! >= 500, "a pause before reconnecting");

	const b = setUp("dps-drop-poll");
	rig.emulator.addFault({kind: "dps.drop", on: "poll", count: 1, registrationId: b.id});
	t.is((await b.client.register()).status, "assigned");
	t.is(b.served().dpsConnects, 2);
	t.is(b.served().dpsRegisterRequests, 1, "the operation survived the dropped connection");
	t.is(b.served().dpsPollRequests, 3);
});

test("a reply slower than replyTimeoutMs: given up on, reconnected, asked again", async t => {
	const {id, client, served} = setUp("dps-slow", {replyTimeoutMs: 1000});
	rig.emulator.addFault({kind: "dps.delay", on: "register", ms: 2500, count: 1, registrationId: id});
	t.is((await client.register()).status, "assigned");
	t.is(served().dpsRegisterRequests, 2);
	t.is(client.counts.connects, 2, "the late reply's connection was dropped, not reused");
});

test("CONNACK 3 from DPS is retried; CONNACK 5 is a terminal dps.unauthorized after one attempt", async t => {
	const a = setUp("dps-connack3");
	rig.emulator.addFault({kind: "connack", target: "dps", returnCode: 3, count: 1, registrationId: a.id});
	t.is((await a.client.register()).status, "assigned");
	t.is(a.client.counts.connects, 2);
	t.is(rig.logCount(a.id, /CONNACK 3/), 1);

	const b = setUp("dps-connack5");
	rig.emulator.addFault({kind: "connack", target: "dps", returnCode: 5, registrationId: b.id});
	const error = await t.throwsAsync(b.client.register());
	t.is((error as AzureIoTError).code, "dps.unauthorized");
	t.regex(error!.message, /CONNACK 5.*Check idScope, registrationId and the key/);
	t.is(b.client.counts.connects, 1);
	t.is(rig.logCount(b.id, /CONNACK 5/), 1);
});

test("a disabled enrollment: terminal dps.disabled naming the fix, after one register and the polls", async t => {
	const id = uniqueId("dps-disabled");
	const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id, enabled: false});
	const client = provisioningClient(rig, id, symmetricKey);
	const error = await t.throwsAsync(client.register()) as AzureIoTError & {result?: {status: string}};
	t.is(error.code, "dps.disabled");
	t.false(error.retriable);
	t.regex(error.message, /disabled.*Enable it/);
	t.is(error.result?.status, "disabled");
	t.is(client.counts.register, 1);
	t.is(rig.emulator.stats().devices[id].dpsRegisterRequests, 1);
});

test("a failed registration: terminal dps.failed with DPS's errorCode and message", async t => {
	const {id, client, served} = setUp("dps-failed");
	rig.emulator.addFault({kind: "dps.failed", registrationId: id});
	const error = await t.throwsAsync(client.register()) as AzureIoTError;
	t.is(error.code, "dps.failed");
	t.regex(error.message, /errorCode 400209.*injected dps\.failed/);
	t.is(served().dpsRegisterRequests, 1);
});

test("404 (no enrollment) is terminal dps.notFound after one request", async t => {
	const {id, client, served} = setUp("dps-404");
	rig.emulator.addFault({kind: "dps.status", on: "register", status: 404, registrationId: id});
	const error = await t.throwsAsync(client.register()) as AzureIoTError;
	t.is(error.code, "dps.notFound");
	t.regex(error.message, /no enrollment.*az iot dps enrollment create/);
	t.is(served().dpsRegisterRequests, 1);
});

for (const kind of ["disabled", "failed"] as const) {
	test(`device: a ${kind} enrollment is reported once (dps.failed) and retried slowly, never in a loop`, async t => {
		const id = uniqueId(`dps-device-${kind}`);
		const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id, enabled: kind !== "disabled"});
		if (kind === "failed") rig.emulator.addFault({kind: "dps.failed", registrationId: id});
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), "faults-dps-"));
		const log = new EventLog();
		const settings = {dpsHost: rig.emulator.host, dpsPort: rig.emulator.port, idScope: rig.emulator.idScope, registrationId: id, symmetricKey, hubPort: rig.emulator.port, intervalMs: 1000};
		const device = startReference(createNodePlatform({roots: rig.roots, emit: log.emit, print: () => {}, storageFile: path.join(dir, "prefs.json"), settings}));
		try {
			const failed = await log.waitFor("dps.failed", () => true, 15_000);
			t.is(failed.code, `dps.${kind}`);
			t.regex(String(failed.message), kind === "disabled" ? /Enable it/ : /errorCode 400209/);
			await sleep(4000);
			t.is(rig.emulator.stats().devices[id].dpsRegisterRequests, 1, "one registration in the whole window");
			t.is(log.count("dps.registering"), 1);
			t.is(log.count("dps.failed"), 1);
			t.is(log.count("hub.connecting"), 0);
		}
		finally {
			device.close();
			fs.rmSync(dir, {recursive: true, force: true});
		}
	});
}
