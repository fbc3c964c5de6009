/*
 * Telemetry accounting under faults, end to end through the Node host: every message the
 * application handed over (the sendTelemetry promise was not refused) reaches the emulator at
 * least once; a message received twice carries the same $.mid, so duplicates are identifiable;
 * nothing is lost. When the bounded queue is full the application is told at once (queue.full and
 * onQueueOverflow) and the refused message is never sent: the reject-new policy of src/outbox.ts,
 * documented in docs/reliability.md.
 */
import test from "ava";
import type {AzureIoTError} from "../src/errors.js";
import {hubClient, provisioned, receivedByMessageId, sleep, startFaultRig, type FaultRig} from "./helpers/faults.js";

let rig: FaultRig;
test.before(async () => { rig = await startFaultRig(); });
test.after.always(async () => { await rig?.close(); });

test("drops every 1.5 s, some PUBACKs withheld: every message handed over is received, duplicates carry the same $.mid, none lost", async t => {
	const device = await provisioned(rig, "acct-drops");
	// Each withheld PUBACK dies with its connection: the message was received but the device cannot know, so it sends it again.
	rig.emulator.addFault({kind: "noPuback", ms: 60_000, count: 4, deviceId: device.deviceId});
	rig.emulator.addFault({kind: "dropEvery", ms: 1500, deviceId: device.deviceId});
	const h = hubClient(rig, device);
	try {
		await h.hub.open();
		const handedOver: {seq: number; promise: Promise<{messageId: string}>}[] = [];
		for (let seq = 1; seq <= 50; seq++) {
			handedOver.push({seq, promise: h.hub.sendTelemetry({seq}, {properties: {seq: String(seq)}})});
			await sleep(100);
		}
		const acked = await Promise.all(handedOver.map(m => m.promise));
		const records = rig.emulator.telemetry(device.deviceId);
		const received = receivedByMessageId(rig.emulator, device.deviceId);
		const lost = acked.filter(a => !received.has(a.messageId));
		const duplicates = [...received.values()].reduce((n, c) => n + c - 1, 0);
		t.log(`handed over 50, acknowledged ${acked.length}, received ${records.length} (${received.size} distinct), duplicates ${duplicates}, lost ${lost.length}, reconnects ${h.hub.stats.reconnects}, re-sent ${h.hub.stats.resent}`);
		t.is(acked.length, 50);
		t.deepEqual(lost, [], "none lost");
		t.is(received.size, 50, "nothing received that was not handed over");
		t.true(duplicates >= 1, "the withheld PUBACKs produced duplicates");
		t.true(h.hub.stats.resent >= duplicates, "every duplicate is a re-send the client counted");
		t.true(h.hub.stats.reconnects >= 2, "the connection was dropped repeatedly while sending");
		// A duplicate is the same message: same $.mid, same body, same application properties.
		for (const [mid, count] of received) {
			if (count < 2) continue;
			const copies = records.filter(r => r.systemProperties["$.mid"] === mid);
			t.true(copies.every(c => c.body === copies[0].body && c.properties.seq === copies[0].properties.seq), `copies of ${mid} agree`);
		}
		const seqs = new Set(records.map(r => Number(r.properties.seq)));
		t.deepEqual([...seqs].sort((a, b) => a - b), handedOver.map(m => m.seq));
	}
	finally {
		await h.hub.close();
	}
});

test("queue full: the new message is refused at once (queue.full, onQueueOverflow) and never sent; accepted ones are all delivered", async t => {
	const device = await provisioned(rig, "acct-queue-full");
	const overflow: string[] = [];
	const h = hubClient(rig, device, {queueLimit: 5, onQueueOverflow: ({messageId}) => { overflow.push(messageId); }});
	try {
		await h.hub.open();
		// The hub takes the messages but holds its acknowledgements for 1.5 s: the queue fills.
		rig.emulator.addFault({kind: "noPuback", ms: 1500, count: 5, deviceId: device.deviceId});
		const accepted = Array.from({length: 5}, (_, i) => h.hub.sendTelemetry({n: i}, {messageId: `accepted-${i}`}));
		const refused = Array.from({length: 3}, (_, i) => h.hub.sendTelemetry({n: 5 + i}, {messageId: `refused-${i}`}));
		for (const r of refused) {
			const error = await t.throwsAsync(r) as AzureIoTError;
			t.is(error.code, "queue.full");
			t.true(error.retriable);
			t.regex(error.message, /queue is full \(5 messages.*raise queueLimit/);
		}
		t.deepEqual(overflow, ["refused-0", "refused-1", "refused-2"]);
		t.is(h.hub.stats.queued, 5);
		t.deepEqual((await Promise.all(accepted)).map(a => a.messageId), ["accepted-0", "accepted-1", "accepted-2", "accepted-3", "accepted-4"]);
		// Room again once acknowledged.
		await h.hub.sendTelemetry({n: 8}, {messageId: "after"});
		const received = receivedByMessageId(rig.emulator, device.deviceId);
		t.deepEqual([...received.keys()].sort(), ["accepted-0", "accepted-1", "accepted-2", "accepted-3", "accepted-4", "after"]);
		t.is(h.hub.stats.acked, 6);
	}
	finally {
		await h.hub.close();
	}
});

test("close() with messages still queued: each one's promise rejects with hub.closed (the application is told, never silently dropped)", async t => {
	const device = await provisioned(rig, "acct-close");
	const h = hubClient(rig, device);
	await h.hub.open();
	rig.emulator.addFault({kind: "noPuback", ms: 60_000, deviceId: device.deviceId});
	const pending = [h.hub.sendTelemetry({a: 1}), h.hub.sendTelemetry({a: 2})];
	await sleep(300);
	await h.hub.close();
	for (const p of pending) t.is((await t.throwsAsync(p) as AzureIoTError).code, "hub.closed");
	t.is(h.hub.stats.acked, 0);
});
