import test from "ava";
import mqttPacket from "mqtt-packet";
import {AzureIoTError} from "../src/errors.js";
import {encodeConnect, encodeDisconnect, encodePingreq, encodePuback, encodePublish, encodePublishHeader, encodeSubscribe,
	encodeUnsubscribe, MAX_REMAINING_LENGTH, PacketParser, packetSize} from "../src/mqtt/codec.js";
import type {ServerPacket} from "../src/mqtt/codec.js";

/** Decodes client packets with mqtt-packet, an implementation independent of ours. */
function reference(bytes: Uint8Array): mqttPacket.Packet[] {
	const parser = mqttPacket.parser({protocolVersion: 4});
	const packets: mqttPacket.Packet[] = [];
	const errors: Error[] = [];
	parser.on("packet", p => packets.push(p));
	parser.on("error", e => errors.push(e));
	const left = parser.parse(Buffer.from(bytes));
	if (errors.length) throw errors[0];
	if (left) throw new Error(`${left} bytes left over`);
	return packets;
}

function generate(packet: object): Uint8Array {
	return new Uint8Array(mqttPacket.generate(packet as mqttPacket.Packet));
}

function parseAll(chunks: Uint8Array[], max?: number): ServerPacket[] {
	const parser = new PacketParser(max);
	const out: ServerPacket[] = [];
	for (const c of chunks) {
		parser.push(c);
		for (let p; (p = parser.next());) out.push(p);
	}
	return out;
}

function throwsCode(t: any, fn: () => unknown, code: string, pattern?: RegExp): AzureIoTError {
	const error = t.throws(fn, {instanceOf: AzureIoTError}) as AzureIoTError;
	t.is(error?.code, code, error?.message);
	if (pattern) t.regex(error.message, pattern);
	return error;
}

function mulberry32(seed: number): () => number {
	return () => {
		seed = (seed + 0x6d2b79f5) | 0;
		let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
		x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
		return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
	};
}

/* ---------------------------------------------------------------- client packets */

test("CONNECT round trips through mqtt-packet and matches its bytes", t => {
	const cases = [
		{clientId: "dev1", clean: true, keepAliveSeconds: 60},
		{clientId: "dév-ü", username: "hub.azure-devices.net/dev1/?api-version=2021-04-12", password: "SharedAccessSignature sr=x&sig=y&se=1", clean: false, keepAliveSeconds: 1177},
		{clientId: "", clean: true, keepAliveSeconds: 0, username: "u"},
		{clientId: "w", clean: true, keepAliveSeconds: 5, will: {topic: "last/will", payload: Uint8Array.of(1, 2, 3), qos: 1 as const, retain: true}},
	];
	for (const c of cases) {
		const bytes = encodeConnect(c);
		const [p] = reference(bytes) as mqttPacket.IConnectPacket[];
		t.is(p.cmd, "connect");
		t.is(p.protocolId, "MQTT");
		t.is(p.protocolVersion, 4);
		t.is(p.clientId, c.clientId);
		t.is(p.clean, c.clean);
		t.is(p.keepalive, c.keepAliveSeconds);
		t.is(p.username, c.username);
		t.is(p.password?.toString(), c.password);
		if (c.will) {
			t.is(p.will?.topic, c.will.topic);
			t.deepEqual(new Uint8Array(p.will!.payload as Buffer), c.will.payload);
			t.is(p.will?.qos, 1);
			t.true(p.will?.retain);
		}
		const theirs = generate({cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId: c.clientId, clean: c.clean,
			keepalive: c.keepAliveSeconds, username: c.username, password: c.password === undefined ? undefined : Buffer.from(c.password),
			will: c.will && {topic: c.will.topic, payload: Buffer.from(c.will.payload), qos: c.will.qos, retain: c.will.retain}});
		t.deepEqual(bytes, theirs);
	}
	t.deepEqual([...encodeConnect({clientId: "a", clean: true, keepAliveSeconds: 60})],
		[0x10, 13, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 60, 0, 1, 0x61]);
});

test("CONNECT refuses what MQTT 3.1.1 cannot carry, without echoing the password", t => {
	const e = throwsCode(t, () => encodeConnect({clientId: "a", password: "s3cret-token", clean: true, keepAliveSeconds: 60}), "config");
	t.false(e.message.includes("s3cret-token"));
	throwsCode(t, () => encodeConnect({clientId: "a", clean: true, keepAliveSeconds: 70000}), "config");
	throwsCode(t, () => encodeConnect({clientId: "x".repeat(65536), clean: true, keepAliveSeconds: 1}), "config", /65535/);
	const long = throwsCode(t, () => encodeConnect({clientId: "a", username: "u", password: "p".repeat(70000), clean: true, keepAliveSeconds: 1}), "config");
	t.false(long.message.includes("ppp"));
});

test("PUBLISH QoS 0 and 1, retain and dup round trip through mqtt-packet and through our parser", t => {
	const payloads = [new Uint8Array(0), Uint8Array.of(0, 255, 7), new Uint8Array(200000).map((_, i) => i * 7)];
	for (const payload of payloads) for (const qos of [0, 1] as const) for (const retain of [false, true]) for (const dup of [false, true]) {
		const fields = {topic: "devices/dé/messages/events/a=1", qos, retain, dup, packetId: qos ? 65535 : undefined};
		const bytes = encodePublish({...fields, payload});
		const [p] = reference(bytes) as mqttPacket.IPublishPacket[];
		t.is(p.topic, fields.topic);
		t.is(p.qos, qos);
		t.is(p.retain, retain);
		t.is(p.dup, dup);
		if (qos) t.is(p.messageId, 65535);
		t.true(Buffer.from(p.payload as Buffer).equals(Buffer.from(payload)));
		const header = encodePublishHeader(fields, payload.length);
		t.deepEqual(Buffer.concat([header, payload]), Buffer.from(bytes), "header + payload equals the whole packet");
		const [mine] = parseAll([bytes]);
		t.like(mine, {type: "publish", topic: fields.topic, qos, retain, dup, packetId: qos ? 65535 : 0});
		t.deepEqual((mine as {payload: Uint8Array}).payload, payload);
	}
	throwsCode(t, () => encodePublish({topic: "a", qos: 1, payload: new Uint8Array(1)}), "config", /packet id/);
	throwsCode(t, () => encodePublish({topic: "a", qos: 1, packetId: 65536, payload: new Uint8Array(1)}), "config");
	throwsCode(t, () => encodePublish({topic: "a", qos: 2 as 1, packetId: 1, payload: new Uint8Array(1)}), "config");
	throwsCode(t, () => encodePublishHeader({topic: "a", qos: 0}, MAX_REMAINING_LENGTH), "mqtt.tooLarge");
});

test("packetSize agrees with the encoders at every varint boundary", t => {
	for (const n of [0, 1, 120, 121, 122, 16379, 16380, 16381, 200000]) {
		const bytes = encodePublish({topic: "t", qos: 0, payload: new Uint8Array(n)});
		t.is(packetSize(3 + n), bytes.length);
	}
});

test("PUBACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT round trip through mqtt-packet", t => {
	t.like(reference(encodePuback(513))[0], {cmd: "puback", messageId: 513});
	const sub = encodeSubscribe(7, [{topic: "devices/d/messages/devicebound/#", qos: 1}, {topic: "$iothub/twin/res/#", qos: 0}]);
	t.is(sub[0], 0x82, "SUBSCRIBE has flags 0010");
	const [s] = reference(sub) as mqttPacket.ISubscribePacket[];
	t.is(s.messageId, 7);
	t.deepEqual(s.subscriptions.map(x => [x.topic, x.qos]), [["devices/d/messages/devicebound/#", 1], ["$iothub/twin/res/#", 0]]);
	const unsub = encodeUnsubscribe(8, ["a/+", "b/#"]);
	t.is(unsub[0], 0xa2, "UNSUBSCRIBE has flags 0010");
	t.like(reference(unsub)[0], {cmd: "unsubscribe", messageId: 8, unsubscriptions: ["a/+", "b/#"]});
	t.like(reference(encodePingreq())[0], {cmd: "pingreq"});
	t.like(reference(encodeDisconnect())[0], {cmd: "disconnect"});
	throwsCode(t, () => encodeSubscribe(1, []), "config");
	throwsCode(t, () => encodeSubscribe(0, [{topic: "a", qos: 0}]), "config");
	throwsCode(t, () => encodeSubscribe(1, [{topic: "a", qos: 2 as 1}]), "config");
	throwsCode(t, () => encodeUnsubscribe(1, []), "config");
	throwsCode(t, () => encodePuback(0), "config");
});

/* ---------------------------------------------------------------- server packets */

const serverPackets = () => [
	generate({cmd: "connack", returnCode: 0, sessionPresent: true}),
	generate({cmd: "connack", returnCode: 5, sessionPresent: false}),
	generate({cmd: "publish", topic: "c2d/温度/😀", payload: Buffer.from("hello"), qos: 0, retain: false, dup: false}),
	generate({cmd: "publish", topic: "big", payload: Buffer.alloc(20000, 0x5a), qos: 1, messageId: 42, retain: true, dup: true}),
	generate({cmd: "puback", messageId: 65535}),
	generate({cmd: "suback", messageId: 3, granted: [0, 1, 128]}),
	generate({cmd: "unsuback", messageId: 4}),
	generate({cmd: "pingresp"}),
];

const expected: ServerPacket[] = [
	{type: "connack", sessionPresent: true, returnCode: 0},
	{type: "connack", sessionPresent: false, returnCode: 5},
	{type: "publish", topic: "c2d/温度/😀", payload: new Uint8Array(Buffer.from("hello")), qos: 0, retain: false, dup: false, packetId: 0},
	{type: "publish", topic: "big", payload: new Uint8Array(20000).fill(0x5a), qos: 1, retain: true, dup: true, packetId: 42},
	{type: "puback", packetId: 65535},
	{type: "suback", packetId: 3, granted: [0, 1, 128]},
	{type: "unsuback", packetId: 4},
	{type: "pingresp"},
];

test("every server packet type from mqtt-packet decodes", t => {
	const packets = serverPackets();
	for (let i = 0; i < packets.length; i++) t.deepEqual(parseAll([packets[i]]), [expected[i]]);
});

test("the parser gives the same packets byte by byte, coalesced, and at random splits", t => {
	const stream = Buffer.concat(serverPackets());
	t.deepEqual(parseAll([stream]), expected, "all coalesced in one chunk");
	const bytes: Uint8Array[] = [];
	for (let i = 0; i < stream.length; i++) bytes.push(stream.subarray(i, i + 1));
	t.deepEqual(parseAll(bytes), expected, "byte by byte");
	const random = mulberry32(1);
	for (let round = 0; round < 50; round++) {
		const chunks: Uint8Array[] = [];
		for (let at = 0; at < stream.length;) {
			const n = 1 + Math.floor(random() * (random() < 0.5 ? 8 : 30000));
			chunks.push(stream.subarray(at, at + n));
			at += n;
		}
		t.deepEqual(parseAll(chunks), expected, `round ${round}`);
	}
});

test("a remaining length split across chunks at every position", t => {
	const packet = generate({cmd: "publish", topic: "t", payload: Buffer.alloc(3_000_000, 1), qos: 0, retain: false, dup: false});
	t.is(packet[1] & 0x80, 0x80);
	t.is(packet[3] & 0x80, 0x80, "a four-byte varint");
	for (let split = 1; split <= 5; split++) {
		const [p] = parseAll([packet.subarray(0, split), packet.subarray(split, split + 1), packet.subarray(split + 1)], 4_000_000);
		t.is((p as {payload: Uint8Array}).payload.length, 3_000_000);
	}
});

test("the payload of a packet decoded in place does not alias the caller's chunk", t => {
	const chunk = generate({cmd: "publish", topic: "t", payload: Buffer.from("abc"), qos: 0, retain: false, dup: false});
	const [p] = parseAll([chunk]);
	chunk.fill(0);
	t.deepEqual(p, {type: "publish", topic: "t", payload: Uint8Array.of(0x61, 0x62, 0x63), qos: 0, retain: false, dup: false, packetId: 0});
	const fromBuffer = parseAll([Buffer.from(generate({cmd: "puback", messageId: 1})), Buffer.from(generate({cmd: "publish", topic: "t", payload: Buffer.from("x"), qos: 0, retain: false, dup: false}))]);
	t.is(Object.getPrototypeOf((fromBuffer[1] as {payload: Uint8Array}).payload), Uint8Array.prototype, "a plain copy even from a Buffer chunk");
});

test("a truncated packet waits for more and holds no more than its own size", t => {
	const packet = generate({cmd: "publish", topic: "t", payload: Buffer.alloc(1000, 2), qos: 1, messageId: 9, retain: false, dup: false});
	const parser = new PacketParser(2048);
	parser.push(packet.subarray(0, 600));
	t.is(parser.next(), undefined);
	t.true(parser.buffered <= packet.length);
	parser.push(packet.subarray(600, packet.length - 1));
	t.is(parser.next(), undefined);
	parser.push(packet.subarray(packet.length - 1));
	t.like(parser.next(), {type: "publish", packetId: 9});
	t.is(parser.next(), undefined);
	t.is(parser.buffered, 0);
});

test("an oversized packet is refused from its header, before its body is buffered", t => {
	// A header claiming 268 MB, with no body: a naive parser would allocate it.
	const header = Uint8Array.of(0x30, 0xff, 0xff, 0xff, 0x7f);
	const parser = new PacketParser(64 * 1024);
	const before = process.memoryUsage().arrayBuffers;
	parser.push(header);
	const e = throwsCode(t, () => parser.next(), "mqtt.tooLarge", /maxIncomingPacketBytes/);
	t.true(parser.buffered < 16, "nothing of the body is held");
	t.true(process.memoryUsage().arrayBuffers - before < 8 * 1024 * 1024, "no large allocation");
	t.is(t.throws(() => parser.next()), e, "the parser stays failed");
	parser.push(Uint8Array.of(0xd0, 0));
	t.is(t.throws(() => parser.next()), e, "and ignores what comes after");

	// The limit counts the whole packet, fixed header included.
	const limit = 300;
	const fits = encodeLike(limit);
	t.is(fits.length, limit);
	t.is(parseAll([fits], limit).length, 1);
	throwsCode(t, () => parseAll([encodeLike(limit + 1)], limit), "mqtt.tooLarge");
});

test("a PUBLISH over its topic's limit is skipped as it streams in, never buffered, and reported with its size; the stream goes on", t => {

	// A 200 KB PUBLISH against a 1 KB limit for its topic, in 1 KB chunks: one dropped packet, then the next packet.
	const limited = new PacketParser(256 * 1024, {payloadLimit: topic => topic === "devices/d/messages/devicebound/x=1" ? 1024 : 0});
	const big = encodePublish({topic: "devices/d/messages/devicebound/x=1", qos: 1, packetId: 5, payload: new Uint8Array(200_000).fill(3)});
	const stream = Buffer.concat([big, generate({cmd: "puback", messageId: 9})]);
	const out = [];
	for (let at = 0; at < stream.length; at += 1024) {
		limited.push(stream.subarray(at, at + 1024));
		for (let p; (p = limited.next());) out.push(p);
		t.true(limited.buffered <= 2048, `never more than a chunk or two held (${limited.buffered})`);
	}
	t.deepEqual(out, [
		{type: "publish", topic: "devices/d/messages/devicebound/x=1", payload: new Uint8Array(0), qos: 1, retain: false, dup: false, packetId: 5, dropped: true, size: 200_000},
		{type: "puback", packetId: 9},
	]);

	// A topic too long to buffer: skipped with its packet, reported with an empty topic.
	const longTopic = new PacketParser(64 * 1024, {maxTopicBytes: 8});
	const p = parseWith(longTopic, encodePublish({topic: "a-topic-longer-than-8", qos: 0, payload: Uint8Array.of(1, 2)}));
	t.like(p, {type: "publish", topic: "", dropped: true, size: 2});
});

function parseWith(parser: PacketParser, bytes: Uint8Array) {
	parser.push(bytes);
	return parser.next();
}

/** A server PUBLISH of exactly `size` bytes on the wire. */
function encodeLike(size: number): Uint8Array {
	const bytes = encodePublish({topic: "t", qos: 0, payload: new Uint8Array(size - 6)});
	if (bytes.length !== size) throw new Error("size arithmetic");
	return bytes;
}

test("a remaining length over four bytes is malformed", t => {
	const parser = new PacketParser(2 ** 30);
	parser.push(Uint8Array.of(0x30, 0x80, 0x80, 0x80, 0x80, 0x01));
	throwsCode(t, () => parser.next(), "mqtt.protocol", /4 bytes/);
});

test("packets a server must not send are refused", t => {
	const bad: [string, number[]][] = [
		["CONNECT", [...encodeConnect({clientId: "a", clean: true, keepAliveSeconds: 1})]],
		["SUBSCRIBE", [...encodeSubscribe(1, [{topic: "a", qos: 0}])]],
		["UNSUBSCRIBE", [...encodeUnsubscribe(1, ["a"])]],
		["PINGREQ", [0xc0, 0]],
		["DISCONNECT", [0xe0, 0]],
		["PUBREC", [0x50, 2, 0, 1]],
		["PUBREL", [0x62, 2, 0, 1]],
		["PUBCOMP", [0x70, 2, 0, 1]],
		["reserved type 0", [0x00, 0]],
		["reserved type 15", [0xf0, 0]],
		["CONNACK with header flags", [0x21, 2, 0, 0]],
		["PUBACK with header flags", [0x42, 2, 0, 1]],
		["PINGRESP with header flags", [0xd1, 0]],
		["PUBLISH QoS 3", [0x36, 5, 0, 1, 0x61, 0, 1]],
		["PUBLISH QoS 2", [0x34, 5, 0, 1, 0x61, 0, 1]],
		["CONNACK of 3 bytes", [0x20, 3, 0, 0, 0]],
		["CONNACK reserved acknowledge flags", [0x20, 2, 2, 0]],
		["CONNACK refusal with session present", [0x20, 2, 1, 5]],
		["PUBACK of 3 bytes", [0x40, 3, 0, 1, 0]],
		["PUBACK id 0", [0x40, 2, 0, 0]],
		["UNSUBACK id 0", [0xb0, 2, 0, 0]],
		["PINGRESP with a body", [0xd0, 1, 0]],
		["SUBACK without codes", [0x90, 2, 0, 1]],
		["SUBACK code 3", [0x90, 3, 0, 1, 3]],
		["SUBACK id 0", [0x90, 3, 0, 0, 1]],
		["PUBLISH too short", [0x30, 2, 0, 0]],
		["PUBLISH empty topic", [0x30, 3, 0, 0, 0x61]],
		["PUBLISH topic past the end", [0x30, 4, 0, 9, 0x61, 0x62]],
		["PUBLISH wildcard topic +", [0x30, 4, 0, 1, 0x2b, 0x61]],
		["PUBLISH wildcard topic #", [0x30, 3, 0, 1, 0x23]],
		["PUBLISH NUL in topic", [0x30, 3, 0, 1, 0]],
		["PUBLISH QoS 1 id 0", [0x32, 5, 0, 1, 0x61, 0, 0]],
		["PUBLISH QoS 1 without room for an id", [0x32, 4, 0, 1, 0x61, 0]],
	];
	for (const [name, bytes] of bad) {
		const error = t.throws(() => parseAll([Uint8Array.from(bytes)]), {instanceOf: AzureIoTError}, name) as AzureIoTError;
		t.is(error?.code, "mqtt.protocol", name);
	}
	// A refused type is refused from its first byte, whatever length follows.
	const parser = new PacketParser(100);
	parser.push(Uint8Array.of(0x10));
	throwsCode(t, () => parser.next(), "mqtt.protocol", /CONNECT/);
});

test("fuzz: random and mutated streams fail only with AzureIoTError and never grow past the limit", t => {
	const random = mulberry32(0xc0ffee);
	const valid = Buffer.concat(serverPackets().filter(p => p.length < 1000));
	const limit = 4096;
	let packets = 0, errors = 0;
	for (let round = 0; round < 4000; round++) {
		let stream: Uint8Array;
		if (round % 2) {
			stream = new Uint8Array(1 + Math.floor(random() * 300)).map(() => Math.floor(random() * 256));
			// A plausible first byte more often than chance, to get past the header checks.
			if (random() < 0.7) stream[0] = [0x20, 0x30, 0x32, 0x40, 0x90, 0xb0, 0xd0][Math.floor(random() * 7)];
		}
		else {
			stream = Uint8Array.from(valid);
			for (let k = 1 + Math.floor(random() * 4); k > 0; k--) stream[Math.floor(random() * stream.length)] = Math.floor(random() * 256);
		}
		const parser = new PacketParser(limit);
		try {
			for (let at = 0; at < stream.length;) {
				const n = 1 + Math.floor(random() * 64);
				parser.push(stream.subarray(at, at + n));
				at += n;
				while (parser.next()) packets++;
				if (parser.buffered > limit) throw new Error(`buffered ${parser.buffered}`);
			}
		}
		catch (e) {
			if (!(e instanceof AzureIoTError)) {
				t.fail(`round ${round}: ${String(e)}`);
				return;
			}
			t.true(e.code === "mqtt.protocol" || e.code === "mqtt.tooLarge");
			errors++;
		}
	}
	t.true(packets > 0 && errors > 0, `${packets} packets, ${errors} errors`);
});

test("absorb(): a payload being assembled or skipped takes each chunk as it is pushed, so none is held until next()", t => {
	// A 16 KB payload in 1 KB chunks, as a TLS record reaches the core: without absorb() all 16 would wait for the read job.
	const taken = new PacketParser(64 * 1024, {payloadLimit: () => 32 * 1024});
	const skipped = new PacketParser(64 * 1024, {payloadLimit: () => 1024});
	const packet = encodePublish({topic: "t", qos: 1, packetId: 3, payload: new Uint8Array(16 * 1024).fill(7)});
	for (const parser of [taken, skipped]) {
		parser.push(packet.subarray(0, 16));
		t.is(parser.next(), undefined, "the header and the topic are read by next()");
		for (let at = 16; at < packet.length; at += 1024) {
			parser.push(packet.subarray(at, Math.min(packet.length, at + 1024)));
			parser.absorb();
			t.false(parser.pending, "the chunk was consumed at once");
		}
	}
	t.like(taken.next(), {type: "publish", topic: "t", packetId: 3, qos: 1});
	t.like(skipped.next(), {type: "publish", topic: "t", packetId: 3, dropped: true, size: 16 * 1024});
	t.is(taken.next(), undefined);
	// Between packets absorb() leaves everything to next(): it never completes a packet itself.
	const idle = new PacketParser();
	idle.push(generate({cmd: "puback", messageId: 4}));
	idle.absorb();
	t.true(idle.pending);
	t.deepEqual(idle.next(), {type: "puback", packetId: 4});
});

test("a SUBACK with more return codes than a SUBSCRIBE carries is refused from its length, before its body is allocated", t => {
	const parser = new PacketParser();
	// 2 + 200,000 bytes claimed: under the packet limit, far over what any SUBSCRIBE of this client asks for.
	parser.push(Uint8Array.of(0x90, 0xc2, 0x9a, 0x0c));
	throwsCode(t, () => parser.next(), "mqtt.protocol", /SUBACK with remaining length 200002/);
	t.true(parser.buffered < 16);
	throwsCode(t, () => encodeSubscribe(1, Array.from({length: 65}, (_, i) => ({topic: `t/${i}`, qos: 0 as const}))), "config", /65 topic filters/);
	t.is(parseAll([generate({cmd: "suback", messageId: 2, granted: new Array(64).fill(1)})])[0].type, "suback");
});
