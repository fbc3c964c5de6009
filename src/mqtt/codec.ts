/*
 * MQTT 3.1.1 packets for a client that uses QoS 0 and 1 only. Encoders build each packet in one
 * exactly sized Uint8Array; the parser takes the byte stream in whatever chunks the socket gives and
 * checks each packet's type and size before anything of its body is buffered, so that a hostile or
 * broken server cannot make a small device heap allocate what it claims: a PUBLISH over its limit
 * is consumed without being buffered (see PacketParser).
 */
import {AzureIoTError} from "../errors.js";
import {utf8Decode, utf8Encode} from "../encoding.js";
import type {QoS} from "./types.js";

/** The largest remaining length four varint bytes can express. */
export const MAX_REMAINING_LENGTH = 268435455;

export const DEFAULT_MAX_PACKET_BYTES = 262144 + 1024;

/**
 * The most topic filters one SUBSCRIBE carries, and so the most return codes a SUBACK may hold: a
 * SUBACK's body is the one other than PUBLISH whose size the server chooses, and it is allocated
 * only once that size has passed this bound.
 */
export const MAX_SUBSCRIBE_FILTERS = 64;

const CONNECT = 1, CONNACK = 2, PUBLISH = 3, PUBACK = 4, PUBREC = 5, PUBREL = 6, PUBCOMP = 7, SUBSCRIBE = 8,
	SUBACK = 9, UNSUBSCRIBE = 10, UNSUBACK = 11, PINGREQ = 12, PINGRESP = 13, DISCONNECT = 14;

// Frozen, as every table of a preloaded module: then it stays in flash instead of being copied to the heap.
const NAMES = Object.freeze(["reserved (0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE",
	"SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "reserved (15)"]);

export interface Will {
	topic: string;
	payload: Uint8Array;
	qos: QoS;
	retain: boolean;
}

export interface ConnectFields {
	clientId: string;
	username?: string;
	password?: string | Uint8Array;
	clean: boolean;
	keepAliveSeconds: number;
	will?: Will;
}

export interface PublishFields {
	topic: string | Uint8Array;
	qos: QoS;
	retain?: boolean;
	dup?: boolean;
	/** 1..65535 for QoS 1; ignored for QoS 0. */
	packetId?: number;
}

/** What a server may send to a QoS 0/1 client. */
export type ServerPacket =
	| {type: "connack"; sessionPresent: boolean; returnCode: number}
	| {type: "publish"; topic: string; payload: Uint8Array; qos: QoS; retain: boolean; dup: boolean; packetId: number; dropped?: true; size?: number}
	| {type: "puback"; packetId: number}
	| {type: "suback"; packetId: number; granted: number[]}
	| {type: "unsuback"; packetId: number}
	| {type: "pingresp"};

/* ------------------------------------------------------------------ encoding */

function varintLength(n: number): number {
	return n < 128 ? 1 : n < 16384 ? 2 : n < 2097152 ? 3 : 4;
}

/** Bytes on the wire of a packet whose remaining length is `remaining`. */
export function packetSize(remaining: number): number {
	return 1 + varintLength(remaining) + remaining;
}

function field(what: string, value: string | Uint8Array): Uint8Array {
	const bytes = typeof value === "string" ? utf8Encode(value) : value;
	if (bytes.length > 65535)
		throw new AzureIoTError("config", `${what}: ${bytes.length} bytes, but MQTT allows at most 65535. Shorten it.`);
	return bytes;
}

class Out {
	readonly bytes: Uint8Array;
	at = 0;

	constructor(first: number, remaining: number, extra = 0) {
		if (remaining > MAX_REMAINING_LENGTH)
			throw new AzureIoTError("mqtt.tooLarge", `packet of ${remaining} bytes: MQTT allows at most ${MAX_REMAINING_LENGTH}. Send less per packet.`);
		this.bytes = new Uint8Array(packetSize(remaining) - extra);
		this.bytes[this.at++] = first;
		let n = remaining;
		do {
			let b = n % 128;
			n = Math.floor(n / 128);
			if (n) b |= 128;
			this.bytes[this.at++] = b;
		} while (n);
	}
	u8(b: number) { this.bytes[this.at++] = b; }
	u16(n: number) { this.bytes[this.at++] = n >> 8; this.bytes[this.at++] = n & 255; }
	raw(b: Uint8Array) { this.bytes.set(b, this.at); this.at += b.length; }
	field(b: Uint8Array) { this.u16(b.length); this.raw(b); }
}

function checkId(packetId: number | undefined): number {
	if (packetId === undefined || !Number.isInteger(packetId) || packetId < 1 || packetId > 65535)
		throw new AzureIoTError("config", `packet id ${packetId}: must be an integer from 1 to 65535.`);
	return packetId;
}

export function encodeConnect(c: ConnectFields): Uint8Array {
	if (!Number.isInteger(c.keepAliveSeconds) || c.keepAliveSeconds < 0 || c.keepAliveSeconds > 65535)
		throw new AzureIoTError("config", `keepAliveSeconds ${c.keepAliveSeconds}: must be an integer from 0 to 65535.`);
	if (c.password !== undefined && c.username === undefined)
		throw new AzureIoTError("config", "password: given without a username, which MQTT 3.1.1 does not allow. Set username too.");
	const id = field("clientId", c.clientId);
	const user = c.username === undefined ? undefined : field("username", c.username);
	// The password's length is the only thing about it an error may mention.
	const pass = c.password === undefined ? undefined : field("password", c.password);
	const willTopic = c.will ? field("will topic", c.will.topic) : undefined;
	const willPayload = c.will ? field("will payload", c.will.payload) : undefined;
	let flags = c.clean ? 0x02 : 0;
	if (c.will) flags |= 0x04 | (c.will.qos << 3) | (c.will.retain ? 0x20 : 0);
	if (user) flags |= 0x80;
	if (pass) flags |= 0x40;
	const remaining = 10 + 2 + id.length + (willTopic && willPayload ? 4 + willTopic.length + willPayload.length : 0) +
		(user ? 2 + user.length : 0) + (pass ? 2 + pass.length : 0);
	const out = new Out(CONNECT << 4, remaining);
	out.u16(4);
	out.u8(0x4d); out.u8(0x51); out.u8(0x54); out.u8(0x54); // "MQTT"
	out.u8(4); // protocol level 3.1.1
	out.u8(flags);
	out.u16(c.keepAliveSeconds);
	out.field(id);
	if (willTopic && willPayload) { out.field(willTopic); out.field(willPayload); }
	if (user) out.field(user);
	if (pass) out.field(pass);
	return out.bytes;
}

function publishStart(p: PublishFields, payloadLength: number, headerOnly: boolean): Out {
	if (p.qos !== 0 && p.qos !== 1) throw new AzureIoTError("config", `qos ${p.qos}: this client publishes at QoS 0 or 1 only.`);
	const topic = field("topic", p.topic);
	const first = (PUBLISH << 4) | (p.dup ? 8 : 0) | (p.qos << 1) | (p.retain ? 1 : 0);
	const out = new Out(first, 2 + topic.length + (p.qos ? 2 : 0) + payloadLength, headerOnly ? payloadLength : 0);
	out.field(topic);
	if (p.qos) out.u16(checkId(p.packetId));
	return out;
}

export function encodePublish(p: PublishFields & {payload: Uint8Array}): Uint8Array {
	const out = publishStart(p, p.payload.length, false);
	out.raw(p.payload);
	return out.bytes;
}

/** Everything of a PUBLISH but its payload, which can then be written as it is, without a copy. */
export function encodePublishHeader(p: PublishFields, payloadLength: number): Uint8Array {
	return publishStart(p, payloadLength, true).bytes;
}

export function encodePuback(packetId: number): Uint8Array {
	const out = new Out(PUBACK << 4, 2);
	out.u16(checkId(packetId));
	return out.bytes;
}

export function encodeSubscribe(packetId: number, subscriptions: readonly {topic: string; qos: QoS}[]): Uint8Array {
	if (!subscriptions.length) throw new AzureIoTError("config", "subscriptions: empty. Give at least one topic filter.");
	if (subscriptions.length > MAX_SUBSCRIBE_FILTERS)
		throw new AzureIoTError("config", `subscriptions: ${subscriptions.length} topic filters, more than the ${MAX_SUBSCRIBE_FILTERS} one SUBSCRIBE may carry here. Subscribe in several calls.`);
	const topics = subscriptions.map(s => field("topic filter", s.topic));
	let remaining = 2;
	for (const t of topics) remaining += 3 + t.length;
	const out = new Out((SUBSCRIBE << 4) | 2, remaining);
	out.u16(checkId(packetId));
	topics.forEach((t, i) => {
		const qos = subscriptions[i].qos;
		if (qos !== 0 && qos !== 1) throw new AzureIoTError("config", `qos ${qos}: this client subscribes at QoS 0 or 1 only.`);
		out.field(t);
		out.u8(qos);
	});
	return out.bytes;
}

export function encodeUnsubscribe(packetId: number, topicFilters: readonly string[]): Uint8Array {
	if (!topicFilters.length) throw new AzureIoTError("config", "topics: empty. Give at least one topic filter.");
	const topics = topicFilters.map(t => field("topic filter", t));
	let remaining = 2;
	for (const t of topics) remaining += 2 + t.length;
	const out = new Out((UNSUBSCRIBE << 4) | 2, remaining);
	out.u16(checkId(packetId));
	for (const t of topics) out.field(t);
	return out.bytes;
}

export function encodePingreq(): Uint8Array {
	return Uint8Array.of(PINGREQ << 4, 0);
}

export function encodeDisconnect(): Uint8Array {
	return Uint8Array.of(DISCONNECT << 4, 0);
}

/* ------------------------------------------------------------------ decoding */

function protocolError(problem: string): AzureIoTError {
	return new AzureIoTError("mqtt.protocol",
		`${problem}. The server does not speak MQTT 3.1.1 as a broker must: check that server.host and port point at an MQTT 3.1.1 broker.`);
}

/** Checks the first byte of a packet from the server; returns the packet type. */
function checkFirstByte(b: number): number {
	const type = b >> 4, flags = b & 15;
	switch (type) {
	case CONNACK: case PUBACK: case SUBACK: case UNSUBACK: case PINGRESP:
		if (flags) throw protocolError(`the server sent a ${NAMES[type]} with reserved flags 0x${flags.toString(16)} set`);
		return type;
	case PUBLISH: {
		const qos = (flags >> 1) & 3;
		if (qos === 3) throw protocolError("the server sent a PUBLISH with QoS 3, which does not exist");
		if (qos === 2) throw protocolError("the server sent a QoS 2 PUBLISH, though this client subscribes at QoS 0 or 1 only");
		return type;
	}
	case PUBREC: case PUBREL: case PUBCOMP:
		throw protocolError(`the server sent ${NAMES[type]}, part of a QoS 2 exchange this client never starts`);
	case CONNECT: case SUBSCRIBE: case UNSUBSCRIBE: case PINGREQ: case DISCONNECT:
		throw protocolError(`the server sent ${NAMES[type]}, which only clients send`);
	default:
		throw protocolError(`the server sent a packet of reserved type ${type}`);
	}
}

/** Checks a remaining length against the packet type before the body is read. */
function checkRemaining(first: number, remaining: number): void {
	const type = first >> 4;
	const fixed = type === CONNACK || type === PUBACK || type === UNSUBACK ? 2 : type === PINGRESP ? 0 : -1;
	if (fixed >= 0 && remaining !== fixed)
		throw protocolError(`the server sent a ${NAMES[type]} with remaining length ${remaining}, not ${fixed}`);
	if (type === SUBACK && remaining < 3)
		throw protocolError(`the server sent a SUBACK with remaining length ${remaining}, less than the 3 it needs`);
	if (type === SUBACK && remaining > 2 + MAX_SUBSCRIBE_FILTERS)
		throw protocolError(`the server sent a SUBACK with remaining length ${remaining}, more return codes than the ${MAX_SUBSCRIBE_FILTERS} topic filters a SUBSCRIBE carries`);
	if (type === PUBLISH && remaining < 3 + (first & 6 ? 2 : 0))
		throw protocolError(`the server sent a PUBLISH with remaining length ${remaining}, too short for a topic${first & 6 ? " and packet id" : ""}`);
}

function u16(b: Uint8Array, at: number): number {
	return (b[at] << 8) | b[at + 1];
}

function nonZeroId(body: Uint8Array, at: number, type: number): number {
	const id = u16(body, at);
	if (!id) throw protocolError(`the server sent a ${NAMES[type]} with packet id 0`);
	return id;
}

/** Decodes the complete body of a packet other than PUBLISH (PUBLISH is read as it streams: PacketParser). */
function decode(first: number, body: Uint8Array): ServerPacket {
	const type = first >> 4;
	switch (type) {
	case CONNACK: {
		if (body[0] & 0xfe) throw protocolError(`the server sent a CONNACK with reserved acknowledge flags 0x${body[0].toString(16)}`);
		const sessionPresent = (body[0] & 1) === 1;
		if (sessionPresent && body[1] !== 0) throw protocolError(`the server sent a CONNACK refusing (code ${body[1]}) yet with session present set`);
		return {type: "connack", sessionPresent, returnCode: body[1]};
	}
	case PUBACK:
		return {type: "puback", packetId: nonZeroId(body, 0, type)};
	case UNSUBACK:
		return {type: "unsuback", packetId: nonZeroId(body, 0, type)};
	case SUBACK: {
		const packetId = nonZeroId(body, 0, type);
		const granted: number[] = [];
		for (let i = 2; i < body.length; i++) {
			const code = body[i];
			if (code > 2 && code !== 0x80) throw protocolError(`the server sent a SUBACK with return code 0x${code.toString(16)}, not 0, 1, 2 or 0x80`);
			granted.push(code);
		}
		return {type: "suback", packetId, granted};
	}
	default: // PINGRESP: checkFirstByte lets nothing else through
		return {type: "pingresp"};
	}
}

/** A plain copy: Buffer#slice (a host may hand us Buffers) would share memory instead. */
export function copy(bytes: Uint8Array): Uint8Array {
	const out = new Uint8Array(bytes.length);
	out.set(bytes);
	return out;
}

const EMPTY = new Uint8Array(0);
const FIRST = 0, LENGTH = 1, BODY = 2, TOPIC_LENGTH = 3, TOPIC = 4, PACKET_ID = 5, PAYLOAD = 6, SKIP = 7;

/** Topics longer than this are not buffered: their PUBLISH is skipped, and reported dropped with an empty topic. */
export const DEFAULT_MAX_TOPIC_BYTES = 4096;

export interface ParserOptions {
	/**
	 * The largest PUBLISH payload to buffer for a topic. A larger one is consumed without being
	 * buffered (skipped as it streams in) and delivered as a publish with `dropped: true`, its size,
	 * and an empty payload, so that the session can acknowledge it and go on: closing the connection
	 * instead would only have the server deliver it again after the reconnect. Default: no limit below the packet limit.
	 */
	payloadLimit?(topic: string): number;
	/** Default DEFAULT_MAX_TOPIC_BYTES. */
	maxTopicBytes?: number;
}

/**
 * Incremental parser of the server's byte stream. push() queues a chunk (kept by reference, not
 * copied); next() returns the next complete packet or undefined when more bytes are needed.
 *
 * Two limits. maxPacketBytes bounds every packet: more than the server may ever send (IoT Hub sends
 * nothing above 256 KB), so a larger one fails with mqtt.tooLarge and ends the session. Below it,
 * payloadLimit(topic) is what the device takes of a PUBLISH: a larger one is skipped as it streams
 * in, so that the session can acknowledge it and go on.
 *
 * Memory: nothing is allocated by a size the server claims before that size has passed the limits.
 * A PUBLISH is read field by field as it streams in, and its payload is assembled in one buffer of
 * its own (one copy, whatever number of chunks it spans; none when it is skipped).
 * Errors are AzureIoTError "mqtt.protocol" or "mqtt.tooLarge"; after one, the parser stays failed.
 */
export class PacketParser {
	readonly maxPacketBytes: number;
	private _payloadLimit: ((topic: string) => number) | undefined;
	private _maxTopic: number;
	private _chunks: Uint8Array[] = [];
	private _offset = 0; // into _chunks[0]
	private _state = FIRST;
	private _first = 0;
	private _remaining = 0;
	private _lengthBytes = 0;
	private _multiplier = 1;
	/** The buffer being filled (a non-PUBLISH body, a topic or a payload) and how much of it is. */
	private _body: Uint8Array = EMPTY;
	private _filled = 0;
	/** PUBLISH fields read so far; _left counts the bytes of the packet still to come. */
	private _left = 0;
	private _topicLength = 0;
	/** Bytes of a topic too long to buffer still to skip. */
	private _topicLeft = 0;
	private _topic = "";
	private _packetId = 0;
	private _idHigh = -1;
	private _size = 0;
	private _error: AzureIoTError | undefined;

	constructor(maxPacketBytes: number = DEFAULT_MAX_PACKET_BYTES, options: ParserOptions = {}) {
		if (!Number.isInteger(maxPacketBytes) || maxPacketBytes < 2)
			throw new AzureIoTError("config", `maxPacketBytes ${maxPacketBytes}: must be an integer of at least 2.`);
		this.maxPacketBytes = maxPacketBytes;
		this._payloadLimit = options.payloadLimit;
		this._maxTopic = options.maxTopicBytes ?? DEFAULT_MAX_TOPIC_BYTES;
	}

	push(chunk: Uint8Array): void {
		if (this._error || !chunk.length) return;
		this._chunks.push(chunk);
	}

	/** Bytes held: queued chunks not yet consumed plus the buffer being filled. */
	get buffered(): number {
		let n = this._body.length;
		for (let i = 0; i < this._chunks.length; i++) n += this._chunks[i].length - (i ? 0 : this._offset);
		return n;
	}

	/**
	 * Consumes what it can of a PUBLISH payload being assembled or skipped, without completing a
	 * packet (that is next()'s): the host's chunks are then released as they arrive, not held until
	 * the read job runs (a 16 KB TLS record arrives as 16 chunks in one turn). Calls nothing.
	 */
	absorb(): void {
		if (this._error) return;
		if (this._state === PAYLOAD) this._fill();
		else if (this._state === SKIP) this._left -= this._skipUpTo(this._left);
	}

	/** Whether pushed bytes wait to be consumed by next(). */
	get pending(): boolean {
		return this._chunks.length > 0;
	}

	next(): ServerPacket | undefined {
		if (this._error) throw this._error;
		try {
			return this._step();
		}
		catch (e) {
			this._error = e instanceof AzureIoTError ? e : protocolError(`undecodable packet (${String(e)})`);
			this._chunks = [];
			this._body = EMPTY;
			throw this._error;
		}
	}

	private _byte(): number {
		const head = this._chunks[0];
		if (!head) return -1;
		const b = head[this._offset++];
		if (this._offset >= head.length) this._advance();
		return b;
	}

	private _advance(): void {
		this._chunks.shift();
		this._offset = 0;
	}

	/** Copies queued bytes into _body until it is full; false when more bytes are needed. */
	private _fill(): boolean {
		while (this._filled < this._body.length) {
			const head = this._chunks[0];
			if (!head) return false;
			const n = Math.min(head.length - this._offset, this._body.length - this._filled);
			this._body.set(head.subarray(this._offset, this._offset + n), this._filled);
			this._filled += n;
			this._offset += n;
			if (this._offset >= head.length) this._advance();
		}
		return true;
	}

	/** Drops at most `count` queued bytes; returns how many it dropped. */
	private _skipUpTo(count: number): number {
		let skipped = 0;
		while (skipped < count) {
			const head = this._chunks[0];
			if (!head) break;
			const n = Math.min(head.length - this._offset, count - skipped);
			skipped += n;
			this._offset += n;
			if (this._offset >= head.length) this._advance();
		}
		return skipped;
	}

	private _start(buffer: Uint8Array, state: number): void {
		this._body = buffer;
		this._filled = 0;
		this._state = state;
	}

	private _step(): ServerPacket | undefined {
		for (;;) {
			switch (this._state) {
			case FIRST: {
				const b = this._byte();
				if (b < 0) return undefined;
				checkFirstByte(b);
				this._first = b;
				this._remaining = 0;
				this._lengthBytes = 0;
				this._multiplier = 1;
				this._state = LENGTH;
				break;
			}
			case LENGTH: {
				const b = this._byte();
				if (b < 0) return undefined;
				this._remaining += (b & 127) * this._multiplier;
				this._multiplier *= 128;
				this._lengthBytes++;
				const publish = this._first >> 4 === PUBLISH;
				if (1 + this._lengthBytes + this._remaining > this.maxPacketBytes)
					throw new AzureIoTError("mqtt.tooLarge",
						`the server sent a ${NAMES[this._first >> 4]} of at least ${1 + this._lengthBytes + this._remaining} bytes, over the ${this.maxPacketBytes}-byte limit (maxIncomingPacketBytes), more than the server should ever send. Raise the limit if it is right to.`);
				if (b & 128) {
					if (this._lengthBytes === 4) throw protocolError("the server sent a remaining length longer than 4 bytes");
					break;
				}
				checkRemaining(this._first, this._remaining);
				if (publish) {
					this._left = this._remaining;
					this._start(new Uint8Array(2), TOPIC_LENGTH);
					break;
				}
				this._state = FIRST;
				if (!this._remaining) return decode(this._first, EMPTY);
				this._start(new Uint8Array(this._remaining), BODY);
				break;
			}
			case BODY: {
				if (!this._fill()) return undefined;
				const body = this._body;
				this._body = EMPTY;
				this._state = FIRST;
				return decode(this._first, body);
			}
			case TOPIC_LENGTH: {
				if (!this._fill()) return undefined;
				const length = u16(this._body, 0);
				const qos = (this._first >> 1) & 3;
				this._left -= 2;
				if (!length) throw protocolError("the server sent a PUBLISH with an empty topic");
				if (length + (qos ? 2 : 0) > this._left)
					throw protocolError(`the server sent a PUBLISH whose ${length}-byte topic runs past the end of the packet`);
				this._topicLength = length;
				this._topic = "";
				this._packetId = 0;
				this._idHigh = -1;
				if (length > this._maxTopic) {
					// Not buffered: the topic's bytes are skipped, and the packet with them.
					this._body = EMPTY;
					this._topicLeft = length;
					this._state = TOPIC;
					break;
				}
				this._start(new Uint8Array(length), TOPIC);
				break;
			}
			case TOPIC: {
				if (this._body.length) {
					if (!this._fill()) return undefined;
					const bytes = this._body;
					for (let i = 0; i < bytes.length; i++) {
						const c = bytes[i];
						// Bytes, not characters: UTF-8 never encodes other characters with these byte values.
						if (c === 0x2b || c === 0x23 || c === 0) throw protocolError("the server sent a PUBLISH whose topic contains a wildcard or NUL");
					}
					this._topic = utf8Decode(bytes);
					this._body = EMPTY;
					this._left -= this._topicLength;
				}
				else {
					const n = this._skipUpTo(this._topicLeft);
					this._topicLeft -= n;
					this._left -= n;
					if (this._topicLeft) return undefined;
				}
				this._state = PACKET_ID;
				break;
			}
			case PACKET_ID: {
				if ((this._first >> 1) & 3) {
					while (this._packetId === 0) {
						const b = this._byte();
						if (b < 0) return undefined;
						if (this._idHigh < 0) {
							this._idHigh = b;
							continue;
						}
						this._packetId = (this._idHigh << 8) | b;
						this._left -= 2;
						if (!this._packetId) throw protocolError("the server sent a PUBLISH with packet id 0");
					}
				}
				this._size = this._left;
				const known = this._topic !== "";
				const limit = !known ? -1 : this._payloadLimit ? this._payloadLimit(this._topic) : this.maxPacketBytes;
				if (this._size > limit) {
					this._state = SKIP;
					break;
				}
				this._start(this._size ? new Uint8Array(this._size) : EMPTY, PAYLOAD);
				break;
			}
			case PAYLOAD: {
				if (!this._fill()) return undefined;
				const payload = this._body;
				this._body = EMPTY;
				this._left = 0;
				this._state = FIRST;
				return this._publish(payload, false);
			}
			default: { // SKIP
				this._left -= this._skipUpTo(this._left);
				if (this._left) return undefined;
				this._state = FIRST;
				return this._publish(EMPTY, true);
			}
			}
		}
	}

	private _publish(payload: Uint8Array, dropped: boolean): ServerPacket {
		const first = this._first;
		const packet: Extract<ServerPacket, {type: "publish"}> = {
			type: "publish", topic: this._topic, payload, qos: ((first >> 1) & 3) as QoS,
			retain: (first & 1) === 1, dup: (first & 8) === 8, packetId: this._packetId,
		};
		if (dropped) {
			packet.dropped = true;
			packet.size = this._size;
		}
		this._topic = "";
		return packet;
	}
}
