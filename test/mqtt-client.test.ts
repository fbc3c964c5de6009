import test from "ava";
import type {ExecutionContext} from "ava";
import {spawn} from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";
import mqttPacket from "mqtt-packet";
import {createNodeHost} from "../hosts/node/host.js";
import {AzureIoTError} from "../src/errors.js";
import type {ConnectionHandlers, HostAdapter} from "../src/host.js";
import {MqttClient} from "../src/mqtt/client.js";
import type {MqttClientOptions, MqttMessage} from "../src/mqtt/types.js";
import {testPki} from "./helpers/pki.js";

const pki = testPki();
const PASSWORD = "SharedAccessSignature sr=never-show-me&sig=s3cret";

/* ---------------------------------------------------------------- small tools */

class Queue<T> {
	items: T[] = [];
	#waiters: ((item: T) => void)[] = [];
	push(item: T) {
		const w = this.#waiters.shift();
		if (w) w(item);
		else this.items.push(item);
	}
	next(what = "item", ms = 8000): Promise<T> {
		if (this.items.length) return Promise.resolve(this.items.shift()!);
		return within(new Promise<T>(resolve => this.#waiters.push(resolve)), ms, what);
	}
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
	let timer: NodeJS.Timeout;
	return Promise.race([
		promise.finally(() => clearTimeout(timer)),
		new Promise<T>((_, reject) => { timer = setTimeout(() => reject(new Error(`safety bound: no ${what} within ${ms} ms`)), ms); }),
	]);
}

function deferred<T = void>() {
	let resolve!: (v: T) => void, reject!: (e: unknown) => void;
	const promise = new Promise<T>((a, b) => { resolve = a; reject = b; });
	return {promise, resolve, reject};
}

async function rejection(promise: Promise<unknown>, what: string): Promise<AzureIoTError> {
	try {
		await within(promise, 8000, what);
	}
	catch (e) {
		if (e instanceof AzureIoTError) return e;
		throw e;
	}
	throw new Error(`${what} resolved; a rejection was expected`);
}

function generate(packet: object): Buffer {
	return mqttPacket.generate(packet as mqttPacket.Packet);
}

/* ---------------------------------------------------------------- a scripted TLS server */

class Peer {
	readonly packets = new Queue<mqttPacket.Packet>();
	readonly closed: Promise<void>;
	constructor(readonly socket: tls.TLSSocket) {
		const parser = mqttPacket.parser({protocolVersion: 4});
		parser.on("packet", p => this.packets.push(p));
		parser.on("error", e => this.packets.push({cmd: "error", message: e.message} as never));
		socket.on("data", d => parser.parse(d));
		socket.on("error", () => {});
		this.closed = new Promise(resolve => socket.on("close", () => resolve()));
	}
	async expect<C extends mqttPacket.PacketCmd>(cmd: C): Promise<Extract<mqttPacket.Packet, {cmd: C}>> {
		const p = await this.packets.next(cmd.toUpperCase());
		if (p.cmd !== cmd) throw new Error(`expected ${cmd}, got ${JSON.stringify(p)}`);
		return p as Extract<mqttPacket.Packet, {cmd: C}>;
	}
	send(...packets: (object | Uint8Array)[]) {
		this.socket.write(Buffer.concat(packets.map(p => p instanceof Uint8Array ? p : generate(p))));
	}
	/** CONNECT in, CONNACK out. */
	async accept(sessionPresent = false) {
		const connect = await this.expect("connect");
		this.send({cmd: "connack", returnCode: 0, sessionPresent});
		return connect;
	}
}

async function scripted(t: ExecutionContext) {
	const peers = new Queue<Peer>();
	const sockets = new Set<tls.TLSSocket>();
	const server = tls.createServer({key: pki.leafKeyPem, cert: pki.chainPem}, socket => {
		sockets.add(socket);
		peers.push(new Peer(socket));
	});
	server.on("tlsClientError", () => {});
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	t.teardown(() => {
		for (const s of sockets) s.destroy();
		server.close();
	});
	return {port: (server.address() as net.AddressInfo).port, peer: () => peers.next("connection"), server};
}

interface Harness {
	client: MqttClient;
	connected: Queue<{sessionPresent: boolean}>;
	closed: Queue<AzureIoTError>;
	messages: Queue<MqttMessage>;
	logs: string[];
}

function open(t: ExecutionContext, port: number, overrides: Partial<MqttClientOptions> = {}): Harness {
	const logs: string[] = [];
	const connected = new Queue<{sessionPresent: boolean}>();
	const closed = new Queue<AzureIoTError>();
	const messages = new Queue<MqttMessage>();
	const client = new MqttClient({
		adapter: createNodeHost({log: line => logs.push(line)}),
		server: {host: "127.0.0.1", port, roots: [pki.rootDer]},
		clientId: "dev-1",
		onConnect: info => connected.push(info),
		onClose: e => closed.push(e),
		onMessage: m => messages.push(m),
		...overrides,
	});
	t.teardown(() => client.close());
	return {client, connected, closed, messages, logs};
}

/* ---------------------------------------------------------------- scripted cases */

test("CONNECT carries the options; CONNACK opens the session; disconnect() sends DISCONNECT and never calls onClose", async t => {
	const s = await scripted(t);
	const h = open(t, s.port, {username: "user-1", password: PASSWORD, keepAliveSeconds: 1177});
	const peer = await s.peer();
	const connect = await peer.expect("connect");
	t.like(connect, {clientId: "dev-1", username: "user-1", clean: true, keepalive: 1177, protocolVersion: 4, protocolId: "MQTT"});
	t.is(connect.password?.toString(), PASSWORD);
	t.false(h.client.connected);
	peer.send({cmd: "connack", returnCode: 0, sessionPresent: true});
	t.deepEqual(await h.connected.next("onConnect"), {sessionPresent: true});
	t.true(h.client.connected);
	h.client.disconnect();
	t.false(h.client.connected);
	await peer.expect("disconnect");
	await within(peer.closed, 5000, "socket close");
	t.is(h.closed.items.length, 0, "onClose is not called after disconnect()");
	await t.throwsAsync(h.client.publish("a", "b"), {instanceOf: AzureIoTError, message: /closed by this side/});
});

test("clean false and keep-alive 0 are sent as given", async t => {
	const s = await scripted(t);
	open(t, s.port, {clean: false, keepAliveSeconds: 0, clientId: "persist"});
	const connect = await (await s.peer()).expect("connect");
	t.like(connect, {clientId: "persist", clean: false, keepalive: 0});
	t.is(connect.username, undefined);
});

test("CONNACK return codes 1-5 close the session with mqtt.connack naming the code, never the password", async t => {
	const s = await scripted(t);
	const meanings = [/protocol version/, /identifier rejected/, /server unavailable/, /bad user name or password/, /not authorized/];
	for (let code = 1; code <= 5; code++) {
		const h = open(t, s.port, {username: "u", password: PASSWORD});
		const peer = await s.peer();
		await peer.expect("connect");
		const pending = h.client.publish("early", "x", {qos: 1});
		peer.send({cmd: "connack", returnCode: code, sessionPresent: false});
		const e = await h.closed.next("onClose");
		t.is(e.code, "mqtt.connack");
		t.is(e.status, code);
		t.regex(e.message, meanings[code - 1]);
		t.regex(e.message, new RegExp(`code ${code}`));
		t.is(e.retriable, code === 3);
		const p = await rejection(pending, "publish queued before CONNACK");
		t.is(p.code, "mqtt.closed");
		for (const text of [e.message, p.message, ...h.logs]) t.false(text.includes("s3cret") || text.includes("never-show-me"), text);
		t.false(h.client.connected);
		t.is(h.connected.items.length, 0);
	}
});

test("QoS 1 publish resolves on PUBACK only; QoS 0 once written; in-flight ids are distinct", async t => {
	const s = await scripted(t);
	const h = open(t, s.port);
	const peer = await s.peer();
	await peer.accept();
	await h.connected.next();
	let settled = 0;
	const pubs = [0, 1, 2].map(i => h.client.publish(`t/${i}`, `m${i}`, {qos: 1}).then(() => settled++));
	const received = [await peer.expect("publish"), await peer.expect("publish"), await peer.expect("publish")];
	t.deepEqual(received.map(p => [p.topic, p.payload.toString(), p.qos, p.retain, p.dup]), [["t/0", "m0", 1, false, false], ["t/1", "m1", 1, false, false], ["t/2", "m2", 1, false, false]]);
	const ids = received.map(p => p.messageId!);
	t.is(new Set(ids).size, 3);
	t.true(ids.every(id => id >= 1 && id <= 65535));
	t.is(settled, 0, "nothing resolves before its PUBACK");
	peer.send({cmd: "puback", messageId: ids[1]});
	await pubs[1];
	t.is(settled, 1);
	peer.send({cmd: "puback", messageId: ids[0]}, {cmd: "puback", messageId: ids[2]});
	await Promise.all(pubs);
	await h.client.publish("q0", Uint8Array.of(1, 2, 3), {retain: true});
	const q0 = await peer.expect("publish");
	t.like(q0, {topic: "q0", qos: 0, retain: true});
	t.deepEqual([...q0.payload as Buffer], [1, 2, 3]);
	const big = new Uint8Array(50000).map((_, i) => i);
	const bigDone = h.client.publish("big", big, {qos: 1});
	const bigPub = await peer.expect("publish");
	t.true(Buffer.from(bigPub.payload as Buffer).equals(Buffer.from(big)), "a large payload written after its header arrives whole");
	peer.send({cmd: "puback", messageId: bigPub.messageId});
	await bigDone;
});

test("a SUBSCRIBE that cannot be encoded (a 70,000-byte filter) rejects with config; the session and the packets around it go on", async t => {
	const s = await scripted(t);
	const h = open(t, s.port);
	const peer = await s.peer();
	await peer.accept();
	await h.connected.next("onConnect");
	const before = h.client.publish("before", "1", {qos: 1});
	const bad = h.client.subscribe([{topic: "x".repeat(70_000), qos: 0}]);
	const after = h.client.subscribe([{topic: "after/#", qos: 1}]);
	const e = await rejection(bad, "the unencodable subscribe");
	t.is(e.code, "config");
	t.regex(e.message, /65535/);
	const pub = await peer.expect("publish");
	peer.send({cmd: "puback", messageId: pub.messageId});
	const sub = await peer.expect("subscribe");
	t.deepEqual(sub.subscriptions.map(x => x.topic), ["after/#"]);
	peer.send({cmd: "suback", messageId: sub.messageId, granted: [1]});
	await before;
	t.deepEqual(await after, [1]);
	t.true(h.client.connected);
	t.is(h.closed.items.length, 0);
});

test("disconnect() right after unsubscribe() and a QoS 0 publish: both go first, in order, then DISCONNECT, then the close", async t => {
	const s = await scripted(t);
	const h = open(t, s.port);
	const peer = await s.peer();
	await peer.accept();
	await h.connected.next("onConnect");
	const un = h.client.unsubscribe(["a/#"]);
	const sent = h.client.publish("last", "words");
	h.client.disconnect();
	t.false(h.client.connected);
	t.deepEqual((await peer.expect("unsubscribe")).unsubscriptions, ["a/#"]);
	t.like(await peer.expect("publish"), {topic: "last", qos: 0});
	await peer.expect("disconnect");
	await within(peer.closed, 8000, "the close");
	await sent;
	t.is((await rejection(un, "unsubscribe without UNSUBACK")).code, "mqtt.closed");
	t.is(h.closed.items.length, 0, "onClose is for ends this side did not ask for");
});

test("SUBSCRIBE resolves with the granted QoS; 0x80 rejects mqtt.refused and the session stays up; UNSUBSCRIBE resolves on UNSUBACK", async t => {
	const s = await scripted(t);
	const h = open(t, s.port);
	const peer = await s.peer();
	await peer.accept();
	const granted = h.client.subscribe([{topic: "a/#", qos: 1}, {topic: "b/+/c", qos: 1}]);
	const sub = await peer.expect("subscribe");
	t.deepEqual(sub.subscriptions.map(x => [x.topic, x.qos]), [["a/#", 1], ["b/+/c", 1]]);
	peer.send({cmd: "suback", messageId: sub.messageId, granted: [1, 0]});
	t.deepEqual(await granted, [1, 0]);

	const refused = h.client.subscribe([{topic: "ok", qos: 0}, {topic: "forbidden", qos: 1}]);
	const sub2 = await peer.expect("subscribe");
	peer.send({cmd: "suback", messageId: sub2.messageId, granted: [0, 128]});
	const e = await rejection(refused, "refused subscribe");
	t.is(e.code, "mqtt.refused");
	t.regex(e.message, /forbidden/);
	t.true(h.client.connected);

	const un = h.client.unsubscribe(["a/#"]);
	const unsub = await peer.expect("unsubscribe");
	t.deepEqual(unsub.unsubscriptions, ["a/#"]);
	peer.send({cmd: "unsuback", messageId: unsub.messageId});
	await un;

	const bad = await rejection(h.client.subscribe([{topic: "a/#/b", qos: 0}]), "bad filter");
	t.is(bad.code, "config");
	t.is((await rejection(h.client.publish("a/+", "x"), "wildcard publish")).code, "config");
	t.is((await rejection(h.client.subscribe([]), "empty subscribe")).code, "config");
	t.is(h.closed.items.length, 0);
});

test("keep-alive: PINGREQ after an idle interval; a missing PINGRESP closes with mqtt.timeout", async t => {
	const s = await scripted(t);
	const h = open(t, s.port, {keepAliveSeconds: 1, ackTimeoutMs: 400});
	const peer = await s.peer();
	await peer.accept();
	await h.connected.next();
	await peer.expect("pingreq");
	peer.send({cmd: "pingresp"});
	await peer.expect("pingreq");
	peer.send({cmd: "pingresp"});
	t.true(h.client.connected, "answered pings keep the session");
	await h.client.publish("t", "x", {qos: 0});
	await peer.expect("publish");
	await peer.expect("pingreq"); // not answered
	const e = await h.closed.next("onClose");
	t.is(e.code, "mqtt.timeout");
	t.regex(e.message, /PINGRESP/);
	await within(peer.closed, 5000, "server sees the close");
	t.false(h.client.connected);
});

test("no PUBACK within ackTimeoutMs rejects that publish with mqtt.timeout and ends the session", async t => {
	const s = await scripted(t);
	const h = open(t, s.port, {ackTimeoutMs: 300});
	const peer = await s.peer();
	await peer.accept();
	const p = h.client.publish("t", "x", {qos: 1});
	await peer.expect("publish");
	t.is((await rejection(p, "publish")).code, "mqtt.timeout");
	t.is((await h.closed.next()).code, "mqtt.timeout");
});

test("split and coalesced server writes are parsed alike", async t => {
	const s = await scripted(t);
	const h = open(t, s.port);
	const peer = await s.peer();
	await peer.expect("connect");
	const sub = h.client.subscribe([{topic: "x/#", qos: 0}]);
	// CONNACK, SUBACK and two PUBLISHes in one write: the SUBSCRIBE waited for CONNACK, so its id is the first.
	peer.send({cmd: "connack", returnCode: 0, sessionPresent: false},
		{cmd: "publish", topic: "x/1", payload: Buffer.from("one"), qos: 0},
		{cmd: "publish", topic: "x/2", payload: Buffer.alloc(20000, 2), qos: 0});
	const subscribe = await peer.expect("subscribe");
	const stream = Buffer.concat([
		generate({cmd: "suback", messageId: subscribe.messageId, granted: [0]}),
		generate({cmd: "publish", topic: "x/3", payload: Buffer.from("three"), qos: 1, messageId: 77}),
		generate({cmd: "pingresp"}),
		generate({cmd: "publish", topic: "x/4", payload: Buffer.alloc(300, 4), qos: 0}),
	]);
	// One byte per write, each flushed on its own.
	for (let i = 0; i < stream.length; i++) {
		peer.socket.write(stream.subarray(i, i + 1));
		if (i % 16 === 0) await new Promise(r => setImmediate(r));
	}
	t.deepEqual(await sub, [0]);
	const got = [await h.messages.next(), await h.messages.next(), await h.messages.next(), await h.messages.next()];
	t.deepEqual(got.map(m => [m.topic, m.payload.length, m.qos]), [["x/1", 3, 0], ["x/2", 20000, 0], ["x/3", 5, 1], ["x/4", 300, 0]]);
	t.true(got[1].payload.every(b => b === 2));
	t.like(await peer.expect("puback"), {messageId: 77});
	t.true(h.client.connected);
});

test("incoming QoS 1: PUBACK after the handler settles, in arrival order, even when it throws or rejects", async t => {
	const s = await scripted(t);
	const gates = new Map<string, {promise: Promise<void>; resolve(): void}>();
	const seen: string[] = [];
	const h = open(t, s.port, {
		onMessage: m => {
			const text = Buffer.from(m.payload).toString();
			seen.push(text);
			if (text === "throws") throw new Error("handler bug");
			if (text === "rejects") return Promise.reject(new Error("async handler bug"));
			if (text === "sync") return;
			const gate = deferred<void>();
			gates.set(text, gate);
			return gate.promise;
		},
	});
	const peer = await s.peer();
	await peer.accept();
	const publish = (id: number, text: string) => ({cmd: "publish", topic: "c2d", payload: Buffer.from(text), qos: 1, messageId: id});
	peer.send(publish(10, "a"), publish(11, "b"), publish(12, "c"));
	while (gates.size < 3) await new Promise(r => setTimeout(r, 5));
	gates.get("c")!.resolve();
	gates.get("a")!.resolve();
	t.like(await peer.expect("puback"), {messageId: 10}, "c finished first but waits for b");
	gates.get("b")!.resolve();
	t.like(await peer.expect("puback"), {messageId: 11});
	t.like(await peer.expect("puback"), {messageId: 12});
	peer.send(publish(13, "throws"), publish(14, "rejects"), publish(15, "sync"), {cmd: "publish", topic: "c2d", payload: Buffer.from("q0"), qos: 0});
	t.like(await peer.expect("puback"), {messageId: 13});
	t.like(await peer.expect("puback"), {messageId: 14});
	t.like(await peer.expect("puback"), {messageId: 15});
	t.deepEqual(seen, ["a", "b", "c", "throws", "rejects", "sync", "q0"]);
	t.true(h.client.connected);
	t.true(h.logs.some(l => l.includes("acknowledged anyway")));
});

test("the server closing mid-operation rejects everything pending with mqtt.closed and calls onClose once", async t => {
	const s = await scripted(t);
	const h = open(t, s.port);
	const peer = await s.peer();
	await peer.accept();
	const pub = h.client.publish("t", "x", {qos: 1});
	const sub = h.client.subscribe([{topic: "s", qos: 1}]);
	const unsub = h.client.unsubscribe(["s"]);
	await peer.expect("publish");
	await peer.expect("subscribe");
	await peer.expect("unsubscribe");
	peer.socket.destroy();
	const e = await h.closed.next("onClose");
	t.is(e.code, "network");
	t.true(e.retriable);
	for (const [name, p] of [["publish", pub], ["subscribe", sub], ["unsubscribe", unsub]] as const) {
		const r = await rejection(p, name);
		t.is(r.code, "mqtt.closed", name);
		t.regex(r.message, /connection ended/);
	}
	await new Promise(r => setTimeout(r, 100));
	t.is(h.closed.items.length, 0, "onClose at most once");
	t.is((await rejection(h.client.publish("t", "late"), "late publish")).code, "mqtt.closed");
});

test("close() ends at once: pending operations reject with mqtt.closed and onClose is not called", async t => {
	const s = await scripted(t);
	const h = open(t, s.port);
	const peer = await s.peer();
	await peer.accept();
	const pub = h.client.publish("t", "x", {qos: 1});
	await peer.expect("publish");
	h.client.close();
	t.is((await rejection(pub, "publish")).code, "mqtt.closed");
	await within(peer.closed, 5000, "socket close");
	t.is(peer.packets.items.length, 0, "no DISCONNECT after close()");
	await new Promise(r => setTimeout(r, 50));
	t.is(h.closed.items.length, 0);
});

test("operations asked before CONNACK are sent once it arrives, in order", async t => {
	const s = await scripted(t);
	const h = open(t, s.port);
	const sub = h.client.subscribe([{topic: "early/#", qos: 1}]);
	const pub = h.client.publish("early", "x", {qos: 0});
	const peer = await s.peer();
	await peer.expect("connect");
	await new Promise(r => setTimeout(r, 50));
	t.is(peer.packets.items.length, 0, "nothing before CONNACK");
	peer.send({cmd: "connack", returnCode: 0, sessionPresent: false});
	const subscribe = await peer.expect("subscribe");
	await peer.expect("publish");
	await pub;
	peer.send({cmd: "suback", messageId: subscribe.messageId, granted: [1]});
	t.deepEqual(await sub, [1]);
});

test("no CONNACK within connectTimeoutMs closes with mqtt.timeout", async t => {
	const s = await scripted(t);
	const h = open(t, s.port, {connectTimeoutMs: 3000});
	const peer = await s.peer();
	await peer.expect("connect");
	const e = await h.closed.next("onClose");
	t.is(e.code, "mqtt.timeout");
	t.regex(e.message, /CONNACK/);
});

test("TLS: an unpinned root or a wrong name becomes a tls error saying how to fix it", async t => {
	const s = await scripted(t);
	const wrongRoot = open(t, s.port, {server: {host: "127.0.0.1", port: s.port, roots: [pki.otherRootDer]}});
	const e1 = await wrongRoot.closed.next("onClose");
	t.is(e1.code, "tls");
	t.regex(e1.message, /pinned root/);
	t.regex(e1.message, /server\.roots/);
	t.regex(e1.message, /clock/);
	const wrongName = open(t, s.port, {server: {host: "127.0.0.1", port: s.port, roots: [pki.rootDer], serverName: "elsewhere.example"}});
	const e2 = await wrongName.closed.next("onClose");
	t.is(e2.code, "tls");
	t.regex(e2.message, /elsewhere\.example/);
	const byName = open(t, s.port, {server: {host: "localhost", port: s.port, roots: [pki.rootDer]}});
	await (await s.peer()).accept();
	await byName.connected.next("onConnect by host name");
});

test("a refused connection is a network error", async t => {
	const probe = net.createServer();
	await new Promise<void>(r => probe.listen(0, "127.0.0.1", r));
	const port = (probe.address() as net.AddressInfo).port;
	await new Promise(r => probe.close(r));
	const h = open(t, port);
	const e = await h.closed.next("onClose");
	t.is(e.code, "network");
	t.regex(e.message, /refused/);
});

test("size limits: a too-large publish is refused without closing; a too-large incoming PUBLISH is skipped unread and acknowledged, the session stays; a packet over what any server may send closes with mqtt.tooLarge", async t => {
	const s = await scripted(t);
	const limits: string[] = [];
	const h = open(t, s.port, {maxOutgoingPacketBytes: 1000, maxIncomingPacketBytes: 2 << 20, incomingLimit: topic => { limits.push(topic); return topic === "big" ? 100 : 2000; }});
	const peer = await s.peer();
	await peer.accept();
	const e = await rejection(h.client.publish("t", new Uint8Array(1000), {qos: 1}), "big publish");
	t.is(e.code, "mqtt.tooLarge");
	t.regex(e.message, /maxOutgoingPacketBytes/);
	const small = h.client.publish("t", new Uint8Array(900), {qos: 1});
	const p = await peer.expect("publish");
	peer.send({cmd: "puback", messageId: p.messageId});
	await small;
	// 1 MB at QoS 1 on a topic limited to 100 bytes, in many chunks: skipped as it streams, then acknowledged.
	const big = generate({cmd: "publish", topic: "big", payload: Buffer.alloc(1 << 20, 7), qos: 1, messageId: 77});
	for (let at = 0; at < big.length; at += 16384) peer.socket.write(big.subarray(at, at + 16384));
	const dropped = await h.messages.next("the dropped message");
	t.like(dropped, {topic: "big", qos: 1, dropped: true, size: 1 << 20});
	t.is(dropped.payload.length, 0, "nothing of the payload was kept");
	t.is((await peer.expect("puback")).messageId, 77, "acknowledged, so that the server does not send it again");
	// Under the limit: taken whole.
	peer.send({cmd: "publish", topic: "big", payload: Buffer.alloc(100, 1), qos: 0, retain: false, dup: false});
	const whole = await h.messages.next("the small message");
	t.is(whole.payload.length, 100);
	t.falsy(whole.dropped);
	t.true(h.client.connected, "the session stayed up");
	t.deepEqual(limits, ["big", "big"], "the limit is asked with the topic, before the payload is buffered");
	// Only the header of a 200 MB packet, over what any server may send: refused before its body comes.
	peer.socket.write(Uint8Array.of(0x30, 0xff, 0xff, 0xff, 0x5f));
	const closed = await h.closed.next("onClose");
	t.is(closed.code, "mqtt.tooLarge");
	t.regex(closed.message, /maxIncomingPacketBytes/);
});

test("a packet only a client may send closes with mqtt.protocol", async t => {
	const s = await scripted(t);
	const h = open(t, s.port);
	const peer = await s.peer();
	await peer.accept();
	await h.connected.next();
	peer.send({cmd: "subscribe", messageId: 1, subscriptions: [{topic: "a", qos: 0}]});
	const e = await h.closed.next("onClose");
	t.is(e.code, "mqtt.protocol");
	t.regex(e.message, /SUBSCRIBE/);
});

test("anything but CONNACK first, or a server closing before CONNACK, ends the session", async t => {
	const s = await scripted(t);
	const a = open(t, s.port);
	const peerA = await s.peer();
	await peerA.expect("connect");
	peerA.send({cmd: "pingresp"});
	t.is((await a.closed.next()).code, "mqtt.protocol");
	const b = open(t, s.port);
	const peerB = await s.peer();
	await peerB.expect("connect");
	peerB.socket.end();
	const e = await b.closed.next();
	t.is(e.code, "network");
	t.regex(e.message, /before CONNACK/);
});

test("configuration errors are thrown at construction, naming the field", t => {
	const host = createNodeHost();
	const server = {host: "127.0.0.1", port: 1, roots: [pki.rootDer]};
	const cases: [Partial<MqttClientOptions>, RegExp][] = [
		[{server: {...server, roots: []}}, /server\.roots/],
		[{server: {...server, port: 0}}, /server\.port/],
		[{clientId: "", clean: false}, /clientId/],
		[{keepAliveSeconds: 70000}, /keepAliveSeconds/],
		[{password: PASSWORD}, /password/],
	];
	for (const [o, field] of cases) {
		const e = t.throws(() => new MqttClient({adapter: host, server, clientId: "c", ...o}), {instanceOf: AzureIoTError}) as AzureIoTError;
		t.is(e.code, "config");
		t.regex(e.message, field);
		t.false(e.message.includes("s3cret"));
	}
});

/* ---------------------------------------------------------------- a host that calls back re-entrantly */

interface FakeTimer { callback: () => void; ms: number }

/** A synchronous in-memory host: the test plays the server, and may answer from inside write(). */
function fakeHost(options: {connectSync?: "open" | "fail"} = {}) {
	const timers = new Set<FakeTimer>();
	const written: Buffer[] = [];
	let handlers!: ConnectionHandlers;
	let onWrite: (bytes: Uint8Array, handlers: ConnectionHandlers) => void = () => {};
	let closed = false;
	const host: HostAdapter = {
		connect(_o, h) {
			handlers = h;
			if (options.connectSync === "open") h.onConnect();
			if (options.connectSync === "fail") h.onClose({kind: "refused", message: "refused at once"});
			return {
				write(bytes) {
					if (closed) throw new Error("closed");
					written.push(Buffer.from(bytes));
					onWrite(bytes, h);
				},
				close() { closed = true; },
			};
		},
		setTimer(callback, ms) { const timer = {callback, ms}; timers.add(timer); return timer; },
		clearTimer(handle) { timers.delete(handle as FakeTimer); },
		now: () => Date.now(),
		random: () => 0.5,
		hmacSha256: () => new Uint8Array(32),
	};
	return {
		host, timers, written,
		get handlers() { return handlers; },
		get closed() { return closed; },
		set onWrite(f: typeof onWrite) { onWrite = f; },
		sent(): mqttPacket.Packet[] {
			const parser = mqttPacket.parser({protocolVersion: 4});
			const out: mqttPacket.Packet[] = [];
			parser.on("packet", p => out.push(p));
			parser.on("error", e => { throw e; });
			parser.parse(Buffer.concat(written));
			return out;
		},
	};
}

const fakeServer = {host: "fake", port: 8883, roots: [new Uint8Array(1)]};

/** Lets the client's read and write jobs (promise jobs) run, as the host's event loop would. */
const jobs = () => new Promise<void>(resolve => setImmediate(resolve));

test("re-entrant host: answers delivered from inside write() are handled after it, and never split a packet being written", async t => {
	const fake = fakeHost();
	const messages: MqttMessage[] = [];
	const client = new MqttClient({adapter: fake.host, server: fakeServer, clientId: "r", onMessage: m => { messages.push(m); }});
	await jobs(); // the connection opens in a job of its own
	let writes = 0;
	fake.onWrite = (bytes, h) => {
		writes++;
		if (bytes[0] === 0x10) h.onData(generate({cmd: "connack", returnCode: 0, sessionPresent: false}));
		// Inside the header write of a large QoS 1 publish: a PUBACK for it and a QoS 1 PUBLISH needing our PUBACK.
		if ((bytes[0] & 0xf0) === 0x30 && bytes.length < 100) {
			h.onData(Buffer.concat([
				generate({cmd: "puback", messageId: 1}),
				generate({cmd: "publish", topic: "in", payload: Buffer.from("hi"), qos: 1, messageId: 9}),
			]));
		}
	};
	fake.handlers.onConnect();
	await jobs();
	t.true(client.connected);
	const done = client.publish("out", new Uint8Array(5000).fill(7), {qos: 1});
	await done;
	await jobs();
	t.is(messages.length, 1);
	const sent = fake.sent();
	t.deepEqual(sent.map(p => p.cmd), ["connect", "publish", "puback"], "the stream parses: nothing was written inside the PUBLISH");
	t.like(sent[2], {messageId: 9});
	t.true(writes >= 4);
	client.close();
});

test("re-entrant host: onConnect or onClose from inside connect() are handled; onClose never runs inside the constructor", async t => {
	const open = fakeHost({connectSync: "open"});
	const a = new MqttClient({adapter: open.host, server: fakeServer, clientId: "a"});
	t.is(open.written.length, 0, "nothing is written inside the constructor");
	await jobs();
	t.like(open.sent()[0], {cmd: "connect", clientId: "a"});
	a.close();

	const failing = fakeHost({connectSync: "fail"});
	const closes: AzureIoTError[] = [];
	const b = new MqttClient({adapter: failing.host, server: fakeServer, clientId: "b", onClose: e => closes.push(e)});
	t.is(closes.length, 0);
	await jobs();
	t.is(closes.length, 1);
	t.is(closes[0].code, "network");
	t.false(b.connected);
});

test("packets asked for in one turn leave together, in order, in writes of at most 1 KB (one TLS record each) unless one packet is larger", async t => {
	const fake = fakeHost();
	const client = new MqttClient({adapter: fake.host, server: fakeServer, clientId: "burst", keepAliveSeconds: 0});
	await jobs();
	fake.handlers.onConnect();
	fake.handlers.onData(generate({cmd: "connack", returnCode: 0, sessionPresent: false}));
	await jobs();
	const before = fake.written.length;
	const sends = [];
	for (let i = 0; i < 10; i++) sends.push(client.publish(`t/${i}`, "x".repeat(300)));
	sends.push(client.publish("big", "y".repeat(3000)));
	sends.push(client.publish("after", "z"));
	t.is(fake.written.length, before, "nothing is written inside publish()");
	await Promise.all(sends);
	const writes = fake.written.slice(before);
	t.true(writes.length >= 4 && writes.length <= 6, `${writes.length} writes for 12 packets`);
	for (const w of writes) t.true(w.length <= 1024 || w.length === 3000, `a write of ${w.length} bytes (the large payload goes as it is)`);
	const topics = fake.sent().filter(p => p.cmd === "publish").map(p => (p as mqttPacket.IPublishPacket).topic);
	t.deepEqual(topics, [...Array.from({length: 10}, (_, i) => `t/${i}`), "big", "after"]);
	client.close();
});

test("one timer keeps every acknowledgement timeout: never before ackTimeoutMs, at most a quarter later; gone when nothing is in flight", async t => {
	const fake = fakeHost();
	const client = new MqttClient({adapter: fake.host, server: fakeServer, clientId: "acks", ackTimeoutMs: 1000, keepAliveSeconds: 0});
	await jobs();
	fake.handlers.onConnect();
	fake.handlers.onData(generate({cmd: "connack", returnCode: 0, sessionPresent: false}));
	await jobs();
	const outcomes: string[] = [];
	const first = client.publish("t", "1", {qos: 1}).then(() => outcomes.push("1 acked"), e => outcomes.push(`1 ${e.code}`));
	const second = client.publish("t", "2", {qos: 1}).then(() => outcomes.push("2 acked"), e => outcomes.push(`2 ${e.code}`));
	await jobs();
	t.is(fake.timers.size, 1, "one timer for both");
	const tick = async () => {
		const [timer] = [...fake.timers];
		t.is(timer.ms, 250, "a quarter of ackTimeoutMs");
		fake.timers.delete(timer);
		timer.callback();
		await jobs();
	};
	fake.handlers.onData(generate({cmd: "puback", messageId: 2}));
	await jobs();
	t.deepEqual(outcomes, ["2 acked"]);
	for (let i = 0; i < 4; i++) await tick(); // 750 to 1000 ms after the send: not yet
	t.deepEqual(outcomes, ["2 acked"]);
	t.true(client.connected);
	await tick(); // 1000 to 1250 ms
	await first;
	await second;
	t.deepEqual(outcomes, ["2 acked", "1 mqtt.timeout"]);
	t.false(client.connected, "an acknowledgement timeout ends the session");
	t.is(fake.timers.size, 0);

	const quiet = fakeHost();
	const c2 = new MqttClient({adapter: quiet.host, server: fakeServer, clientId: "quiet", keepAliveSeconds: 0});
	await jobs();
	quiet.handlers.onConnect();
	quiet.handlers.onData(generate({cmd: "connack", returnCode: 0, sessionPresent: false}));
	await jobs();
	const p = c2.publish("t", "x", {qos: 1});
	await jobs();
	t.is(quiet.timers.size, 1);
	quiet.handlers.onData(generate({cmd: "puback", messageId: 1}));
	await p;
	t.is(quiet.timers.size, 0, "no timer while nothing awaits an acknowledgement");
	c2.close();
});

test("packet ids run 1..65535, wrap, and skip one still in flight", async t => {
	const fake = fakeHost();
	const client = new MqttClient({adapter: fake.host, server: fakeServer, clientId: "ids"});
	await jobs();
	fake.handlers.onConnect();
	fake.handlers.onData(generate({cmd: "connack", returnCode: 0, sessionPresent: false}));
	await jobs();
	const ids: number[] = [];
	const parser = mqttPacket.parser({protocolVersion: 4});
	parser.on("packet", p => { if (p.cmd === "publish") ids.push(p.messageId!); });
	fake.onWrite = bytes => parser.parse(Buffer.from(bytes));
	const held = client.publish("t", "held", {qos: 1}); // id 1, never acknowledged until the end
	for (let i = 0; i < 65534; i++) {
		const p = client.publish("t", "", {qos: 1});
		await null; // the write job runs first
		fake.handlers.onData(generate({cmd: "puback", messageId: ids[ids.length - 1]}));
		await p;
		if (i % 1024 === 0) await jobs(); // all promise jobs otherwise: let the other tests' I/O and timers in
	}
	const next = client.publish("t", "after wrap", {qos: 1});
	await null;
	t.is(ids[0], 1);
	t.is(ids[65534], 65535);
	t.is(ids[65535], 2, "wrapped past 65535 and skipped 1, still in flight");
	fake.handlers.onData(Buffer.concat([generate({cmd: "puback", messageId: 1}), generate({cmd: "puback", messageId: 2})]));
	await held;
	await next;
	t.is(fake.timers.size, 1, "only the keep-alive timer is left");
	client.close();
	t.is(fake.timers.size, 0);
});

/* ---------------------------------------------------------------- a real broker */

const MOSQUITTO = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"].find(p => fs.existsSync(p));
const broker = test.serial;
const brokerTest: typeof test.serial = MOSQUITTO ? broker : (broker.skip as typeof test.serial);
if (!MOSQUITTO) console.log("mosquitto not found: apt-get install mosquitto");

let mosquitto: {port: number; pid: number; dir: string; output: string[]; exited: Promise<void>} | undefined;

async function freePort(): Promise<number> {
	const probe = net.createServer();
	await new Promise<void>(r => probe.listen(0, "127.0.0.1", r));
	const port = (probe.address() as net.AddressInfo).port;
	await new Promise(r => probe.close(r));
	return port;
}

async function startMosquitto(): Promise<NonNullable<typeof mosquitto>> {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mosquitto-test-"));
	fs.writeFileSync(path.join(dir, "root.pem"), pki.rootPem);
	fs.writeFileSync(path.join(dir, "chain.pem"), pki.chainPem);
	fs.writeFileSync(path.join(dir, "key.pem"), pki.leafKeyPem, {mode: 0o600});
	const port = await freePort();
	fs.writeFileSync(path.join(dir, "mosquitto.conf"), [
		`listener ${port} 127.0.0.1`,
		`cafile ${path.join(dir, "root.pem")}`,
		`certfile ${path.join(dir, "chain.pem")}`,
		`keyfile ${path.join(dir, "key.pem")}`,
		"allow_anonymous true",
		"persistence false",
		// As root, mosquitto would switch to its own user, which cannot read these files.
		`user ${os.userInfo().username}`,
		"",
	].join("\n"));
	const child = spawn(MOSQUITTO!, ["-c", path.join(dir, "mosquitto.conf")], {stdio: ["ignore", "pipe", "pipe"]});
	const output: string[] = [];
	child.stdout.on("data", d => output.push(String(d)));
	child.stderr.on("data", d => output.push(String(d)));
	const exited = new Promise<void>(resolve => child.on("exit", () => resolve()));
	for (let i = 0; ; i++) {
		const up = await new Promise<boolean>(resolve => {
			const s = net.connect(port, "127.0.0.1", () => { s.destroy(); resolve(true); });
			s.on("error", () => resolve(false));
		});
		if (up) break;
		if (i > 100 || child.exitCode !== null) {
			child.kill();
			throw new Error(`mosquitto did not start: ${output.join("")}`);
		}
		await new Promise(r => setTimeout(r, 100));
	}
	return {port, pid: child.pid!, dir, output, exited};
}

test.before(async () => {
	if (MOSQUITTO) mosquitto = await startMosquitto();
});

test.after.always(async () => {
	if (!mosquitto) return;
	try { process.kill(mosquitto.pid, "SIGTERM"); } catch {}
	await within(mosquitto.exited, 5000, "mosquitto exit").catch(() => { try { process.kill(mosquitto!.pid, "SIGKILL"); } catch {} });
	fs.rmSync(mosquitto.dir, {recursive: true, force: true});
});

/** A Node host that also decodes every packet each way, to see PINGREQ/PINGRESP and our PUBACKs. */
function spyHost() {
	const base = createNodeHost();
	const sent: mqttPacket.Packet[] = [], received: mqttPacket.Packet[] = [];
	const host: HostAdapter = {
		...base,
		connect(o, h) {
			const up = mqttPacket.parser({protocolVersion: 4}), down = mqttPacket.parser({protocolVersion: 4});
			up.on("packet", p => sent.push(p));
			down.on("packet", p => received.push(p));
			const conn = base.connect(o, {...h, onData: bytes => { down.parse(Buffer.from(bytes)); h.onData(bytes); }});
			return {write: bytes => { up.parse(Buffer.from(bytes)); conn.write(bytes); }, close: () => conn.close()};
		},
	};
	return {host, sent, received};
}

function openBroker(t: ExecutionContext, clientId: string, overrides: Partial<MqttClientOptions> = {}): Harness {
	return open(t, mosquitto!.port, {clientId, server: {host: "localhost", port: mosquitto!.port, roots: [pki.rootDer]}, ...overrides});
}

brokerTest("mosquitto: QoS 1 in both directions, with PUBACKs each way", async t => {
	const spy = spyHost();
	const h = openBroker(t, "qos1-both", {adapter: spy.host});
	t.deepEqual(await h.connected.next("onConnect"), {sessionPresent: false});
	t.deepEqual(await h.client.subscribe([{topic: "qos1/#", qos: 1}]), [1]);
	await h.client.publish("qos1/a", "ünïcode payload", {qos: 1});
	t.true(spy.received.some(p => p.cmd === "puback"), "the broker's PUBACK resolved the publish");
	const m = await h.messages.next("message");
	t.like(m, {topic: "qos1/a", qos: 1, retain: false});
	t.is(Buffer.from(m.payload).toString(), "ünïcode payload");
	const incoming = spy.received.find(p => p.cmd === "publish") as mqttPacket.IPublishPacket;
	await within((async () => { while (!spy.sent.some(p => p.cmd === "puback")) await new Promise(r => setTimeout(r, 10)); })(), 5000, "our PUBACK");
	t.like(spy.sent.find(p => p.cmd === "puback"), {messageId: incoming.messageId});
	h.client.disconnect();
});

brokerTest("mosquitto: a persistent session keeps a QoS 1 message published while offline", async t => {
	// Start from no session, whatever an earlier run left.
	const reset = openBroker(t, "persistent-1", {clean: true});
	await reset.connected.next();
	reset.client.disconnect();

	const first = openBroker(t, "persistent-1", {clean: false});
	t.deepEqual(await first.connected.next(), {sessionPresent: false});
	t.deepEqual(await first.client.subscribe([{topic: "offline/+", qos: 1}]), [1]);
	first.client.disconnect();
	await new Promise(r => setTimeout(r, 200)); // let the broker see the DISCONNECT before the publish

	const other = openBroker(t, "publisher-1");
	await other.connected.next();
	await other.client.publish("offline/x", "kept for you", {qos: 1});
	other.client.disconnect();

	const again = openBroker(t, "persistent-1", {clean: false});
	t.deepEqual(await again.connected.next(), {sessionPresent: true});
	const m = await again.messages.next("queued message");
	t.like(m, {topic: "offline/x", qos: 1});
	t.is(Buffer.from(m.payload).toString(), "kept for you");
	again.client.disconnect();

	const cleanup = openBroker(t, "persistent-1", {clean: true});
	await cleanup.connected.next();
	cleanup.client.disconnect();
});

brokerTest("mosquitto: after unsubscribe nothing more arrives on that filter", async t => {
	const h = openBroker(t, "unsub-1");
	await h.connected.next();
	await h.client.subscribe([{topic: "gone/#", qos: 1}, {topic: "control", qos: 1}]);
	await h.client.publish("gone/1", "before", {qos: 1});
	t.is((await h.messages.next()).topic, "gone/1");
	await h.client.unsubscribe(["gone/#"]);
	await h.client.publish("gone/2", "after", {qos: 1});
	await h.client.publish("control", "marker", {qos: 1});
	// The broker delivers in order: once the marker is here, gone/2 would have been before it.
	t.is((await h.messages.next("marker")).topic, "control");
	t.is(h.messages.items.length, 0);
	h.client.disconnect();
});

brokerTest("mosquitto: keep-alive pings keep an idle session open", async t => {
	const spy = spyHost();
	const h = openBroker(t, "keepalive-1", {adapter: spy.host, keepAliveSeconds: 1, ackTimeoutMs: 2000});
	await h.connected.next();
	// Mosquitto drops a client silent for 1.5 x keep-alive; wait for several intervals.
	await within((async () => {
		while (spy.received.filter(p => p.cmd === "pingresp").length < 3) await new Promise(r => setTimeout(r, 50));
	})(), 10000, "three PINGRESPs");
	t.true(spy.sent.filter(p => p.cmd === "pingreq").length >= 3);
	t.true(h.client.connected);
	t.is(h.closed.items.length, 0);
	await h.client.publish("still/alive", "x", {qos: 1});
	h.client.disconnect();
});
