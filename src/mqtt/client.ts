/*
 * One MQTT 3.1.1 session over one TLS connection: CONNECT/CONNACK, QoS 0/1 publish with PUBACK
 * tracking, subscriptions, keep-alive. It is written here rather than taken from the SDK because the
 * SDK's `mqtt` module ignores PUBACK, never acknowledges incoming QoS 1 and always starts a clean
 * session (see types.ts). Reconnecting is the caller's business: a session ends once, with onClose.
 *
 * Reading and writing each run as a job of their own (a promise job, which XS runs from its main
 * loop on a fresh stack), never inside one another: on the ESP32 the XS stack is what runs out
 * first, and a packet handled inside the TLS read path that answers with a write through the TLS
 * write path nested both (486 slots at the peak, the SDK's default stack is 384; BENCHMARKS.md).
 * Writes asked for in one turn also leave in one TLS record. Incoming bytes are parsed one packet
 * at a time, and every step re-checks whether the session is still open: user callbacks run
 * synchronously and may close it.
 */
import {hasAnyOf} from "../chars.js";
import type {Connection, HostAdapter, HostError, TimerHandle} from "../host.js";
import {AzureIoTError, configError} from "../errors.js";
import {concatBytes, utf8Encode} from "../encoding.js";
import {DEFAULT_MAX_PACKET_BYTES, MAX_SUBSCRIBE_FILTERS, encodeConnect, encodeDisconnect, encodePingreq, encodePuback, encodePublish,
	encodePublishHeader, encodeSubscribe, encodeUnsubscribe, packetSize, PacketParser} from "./codec.js";
import type {ServerPacket} from "./codec.js";
import type {MqttClientOptions, MqttMessage, MqttSession, PublishOptions, QoS, Subscription} from "./types.js";

const TLS = 0, CONNACK = 1, OPEN = 2, CLOSED = 3;
const NO_BYTES = new Uint8Array(0);

/** Payloads above this are written after their header rather than copied into one packet. */
const COPY_LIMIT = 1024;

/**
 * Acknowledgement timeouts are kept by one timer that ticks ACK_ROUNDS times per ackTimeoutMs while
 * anything awaits an acknowledgement, not by a timer per packet (on the device each timer is a host
 * object and two closures). An operation times out after ACK_ROUNDS whole ticks: never before
 * ackTimeoutMs, at most a quarter later.
 */
const ACK_ROUNDS = 4;

/** Packets queued in one turn are joined into one write (one TLS record) up to this many bytes. */
const JOIN_LIMIT = 1024;

/** Runs `job` as a promise job: after the current callback has returned, on a fresh stack. */
function later(job: () => void): void {
	Promise.resolve().then(job);
}

/**
 * Tells an operation how it ended in a job of its own, as a promise's settling would: never from
 * inside the packet handler or the close that ended it (the session is consistent by then).
 */
function tell<A extends unknown[]>(f: (...args: A) => void, ...args: A): void {
	later(() => f(...args));
}

// Frozen, as every table of a preloaded module: then it stays in flash instead of being copied to the heap.
const CONNACK_MEANINGS = Object.freeze([
	"accepted",
	"unacceptable protocol version: the server does not accept MQTT 3.1.1",
	"identifier rejected: the server does not accept this client id; check clientId",
	"server unavailable: the MQTT service is down; try again later",
	"bad user name or password: check username and password (for Azure, the SAS token, its key and its expiry)",
	"not authorized: the server refuses these credentials or this client; check the credentials and the device's permissions",
]);

/** How an operation ends: undefined for success (with the granted QoS of a SUBSCRIBE), or the error. */
type Done = (error: AzureIoTError | undefined, granted?: QoS[]) => void;

interface Pending {
	kind: "PUBACK" | "SUBACK" | "UNSUBACK";
	what: string;
	// One function, not a promise's resolve and reject: in XS each function held costs slots for as long as the operation is in flight.
	done: Done;
	/** The acknowledgement round it was sent in (see _ackTick). */
	round: number;
	requested?: QoS[];
}

/** An operation asked for before CONNACK: run once the session is open. */
interface Waiting {
	what: string;
	start(): void;
	reject(error: AzureIoTError): void;
}

/**
 * A packet waiting for the write job: its bytes, or its fields, encoded in the job (on its fresh
 * stack rather than under the caller's frames). Fields, not a closure: a closure and its
 * environment would cost twice the heap while the packet waits.
 */
interface Queued {
	bytes?: Uint8Array;
	/** PUBLISH fields (the payload is written after the encoded header when it is large). */
	topic?: Uint8Array;
	payload?: Uint8Array;
	qos?: QoS;
	retain?: boolean;
	subscriptions?: readonly Subscription[];
	unsubscriptions?: readonly string[];
	/** The operation an encoding failure rejects (0: none). */
	packetId: number;
	/** Told once the connection took the packet (true) or it never will (false). */
	written?: (written: boolean) => void;
}

/** The bytes of a queued packet: one part, or a PUBLISH header and its payload as it is. */
function encodeQueued(q: Queued): Uint8Array | [Uint8Array, Uint8Array] {
	if (q.bytes) return q.bytes;
	if (q.subscriptions) return encodeSubscribe(q.packetId, q.subscriptions);
	if (q.unsubscriptions) return encodeUnsubscribe(q.packetId, q.unsubscriptions);
	const payload = q.payload!;
	if (payload.length <= COPY_LIMIT) return encodePublish({topic: q.topic!, qos: q.qos!, retain: q.retain, packetId: q.packetId, payload});
	return [encodePublishHeader({topic: q.topic!, qos: q.qos!, retain: q.retain, packetId: q.packetId}, payload.length), payload];
}

interface IncomingAck {
	packetId: number;
	done: boolean;
}

function checkTopicName(topic: unknown): string | undefined {
	if (typeof topic !== "string" || !topic) return "must be a non-empty string";
	if (hasAnyOf(topic, "+#\u0000")) return "must not contain the wildcards + or # or NUL";
	return undefined;
}

function checkTopicFilter(filter: unknown): string | undefined {
	if (typeof filter !== "string" || !filter) return "must be a non-empty string";
	if (filter.includes("\u0000")) return "must not contain NUL";
	const levels = filter.split("/");
	for (let i = 0; i < levels.length; i++) {
		const level = levels[i];
		if (level.includes("#") && (level !== "#" || i !== levels.length - 1)) return "may hold # only as the whole last level";
		if (level.includes("+") && level !== "+") return "may hold + only as a whole level";
	}
	return undefined;
}

function positiveInteger(options: MqttClientOptions, name: keyof MqttClientOptions, fallback: number, min = 1, max = 0x7fffffff): number {
	const value = options[name] ?? fallback;
	if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max)
		throw configError(name, `${String(value)} is not an integer from ${min} to ${max}`, `Give a value in range or leave it out for the default (${fallback})`);
	return value;
}

// State is in TypeScript-private properties, not #private names: XS copies every outer name a
// function uses, #names included, into its stack frame, so they made every method's frame larger
// (BENCHMARKS.md, finding 6). Only #options and #connectPacket (they hold the password) stay #private.
export class MqttClient implements MqttSession {
	private _host: HostAdapter;
	#options: MqttClientOptions;
	private _where: string;
	private _keepAliveMs: number;
	private _ackTimeoutMs: number;
	private _maxOutgoing: number;
	private _phase = TLS;
	private _conn: Connection | undefined;
	#connectPacket: Uint8Array | undefined;
	private _tlsReady = false;
	private _parser: PacketParser;
	private _pending = new Map<number, Pending>();
	private _waiting: Waiting[] = [];
	private _incoming: IncomingAck[] = [];
	private _nextId = 1;
	private _connectTimer: TimerHandle | undefined;
	private _keepAliveTimer: TimerHandle | undefined;
	private _pingTimer: TimerHandle | undefined;
	private _ackTimer: TimerHandle | undefined;
	private _ackRound = 0;
	/** Packets waiting for the write job, and whom to tell once they are written. */
	private _out: Queued[] = [];
	private _writeQueued = false;
	private _readQueued = false;
	/** A close the host reported while received bytes were still waiting for the read job. */
	private _closeAfterRead: HostError | undefined;
	private _writing = false;
	private _draining = false;
	private readonly _writeJob = () => this._flush();
	private readonly _readJob = () => this._drain();
	private readonly _ackTickJob = () => this._ackTick();

	constructor(options: MqttClientOptions) {
		const host = options?.adapter;
		if (!host || typeof host.connect !== "function" || typeof host.setTimer !== "function")
			throw configError("adapter", "missing or not a host adapter", "Pass the platform's HostAdapter (createNodeHost() under Node)");
		const server = options.server;
		if (!server || typeof server.host !== "string" || !server.host)
			throw configError("server.host", "missing", "Give the broker's host name");
		if (!Number.isInteger(server.port) || server.port < 1 || server.port > 65535)
			throw configError("server.port", `${String(server.port)} is not a port number`, "Give the broker's TLS port (8883 for Azure)");
		if (!Array.isArray(server.roots) || !server.roots.length)
			throw configError("server.roots", "empty", "Give the DER root certificates the server's chain must end in; there is no connection without a pinned root");
		if (typeof options.clientId !== "string")
			throw configError("clientId", "missing", "Give the client id (the device id for Azure)");
		const clean = options.clean ?? true;
		if (!clean && !options.clientId)
			throw configError("clientId", "empty with clean false", "MQTT 3.1.1 keeps a session only for a named client: give a client id");
		this._host = host;
		this.#options = options;
		this._where = `${server.host}:${server.port}`;
		const keepAlive = positiveInteger(options, "keepAliveSeconds", 60, 0, 65535);
		this._keepAliveMs = keepAlive * 1000;
		const connectTimeoutMs = positiveInteger(options, "connectTimeoutMs", 30000);
		this._ackTimeoutMs = positiveInteger(options, "ackTimeoutMs", 30000);
		this._maxOutgoing = positiveInteger(options, "maxOutgoingPacketBytes", DEFAULT_MAX_PACKET_BYTES, 2);
		if (options.incomingLimit !== undefined && typeof options.incomingLimit !== "function")
			throw configError("incomingLimit", "is not a function", "Give a function from a topic to its payload limit in bytes, or leave it out");
		this._parser = new PacketParser(positiveInteger(options, "maxIncomingPacketBytes", DEFAULT_MAX_PACKET_BYTES, 2),
			{payloadLimit: options.incomingLimit});
		this.#connectPacket = encodeConnect({
			clientId: options.clientId, username: options.username, password: options.password, clean, keepAliveSeconds: keepAlive,
		});

		this._connectTimer = host.setTimer(() => {
			this._connectTimer = undefined;
			this._fail(new AzureIoTError("mqtt.timeout", this._phase === TLS
				? `no TLS connection to ${this._where} within ${connectTimeoutMs} ms. Check the host, the port and the network.`
				: `no CONNACK from ${this._where} within ${connectTimeoutMs} ms. Check that this port speaks MQTT 3.1.1.`, {retriable: true}));
		}, connectTimeoutMs);
		// The connection opens in a job of its own: never inside the constructor (so onClose cannot
		// run there), and on a fresh stack, since the TLS client's set-up (parsing the pinned roots)
		// is deep and the constructor is often reached through several async frames.
		later(() => this._open());
	}

	private _open(): void {
		if (this._phase === CLOSED) return; // closed before the job ran
		let conn: Connection;
		try {
			conn = this._host.connect(this.#options.server, {
				onConnect: () => this._onTlsConnect(),
				onData: bytes => this._onData(bytes),
				onClose: error => this._onHostClose(error),
			});
		}
		catch (e) {
			this._fail(new AzureIoTError("network", `could not open a connection to ${this._where}: ${e instanceof Error ? e.message : String(e)}.`, {retriable: true}));
			return;
		}
		if (this._phase === CLOSED) { // closed inside host.connect
			try { conn.close(); } catch {}
			return;
		}
		this._conn = conn;
		if (this._tlsReady) this._sendConnect();
	}

	get connected(): boolean {
		return this._phase === OPEN;
	}

	publish(topic: string, payload: Uint8Array | string, options: PublishOptions = {}): Promise<void> {
		return new Promise<void>((resolve, reject) => {
			const problem = this._publish(topic, payload, options.qos ?? 0, options.retain === true, error => error ? reject(error) : resolve());
			if (problem) reject(problem);
		});
	}

	/**
	 * publish() without a promise, for the hub's telemetry and twin: a message in flight then holds
	 * one function instead of a promise and its resolving functions, which matters on a 2048-slot heap.
	 * `done` gets undefined once PUBACK arrives (QoS 1) or the packet was written (QoS 0), else the
	 * error; never from inside this call.
	 */
	send(topic: string, payload: Uint8Array | string, qos: QoS, done: (error: AzureIoTError | undefined) => void): void {
		const problem = this._publish(topic, payload, qos, false, done);
		if (problem) tell(done, problem);
	}

	/** Starts a PUBLISH; returns the error when it cannot be sent at all (and then never calls `done`). */
	private _publish(topic: string, payload: Uint8Array | string, qos: QoS, retain: boolean, done: Done): AzureIoTError | undefined {
		const what = `publish to ${typeof topic === "string" ? topic : "?"}`;
		if (this._phase === CLOSED) return this._closedError(what);
		const problem = checkTopicName(topic);
		if (problem) return configError("topic", problem, "Give the topic name to publish to");
		if (qos !== 0 && qos !== 1) return configError("qos", `${String(qos)} is not supported`, "Use 0 or 1");
		let topicBytes: Uint8Array, body: Uint8Array;
		try {
			topicBytes = utf8Encode(topic);
			body = typeof payload === "string" ? utf8Encode(payload) : payload;
		}
		catch (e) {
			return e instanceof AzureIoTError ? e : configError("topic", `cannot be encoded (${String(e)})`, "Send well-formed strings");
		}
		if (!(body instanceof Uint8Array)) return configError("payload", "neither a string nor a Uint8Array", "Pass bytes or text");
		if (topicBytes.length > 65535) return configError("topic", `${topicBytes.length} bytes long`, "MQTT allows at most 65535 bytes");
		const size = packetSize(2 + topicBytes.length + (qos ? 2 : 0) + body.length);
		if (size > this._maxOutgoing)
			return new AzureIoTError("mqtt.tooLarge",
				`${what}: the packet would be ${size} bytes, over the ${this._maxOutgoing}-byte limit (maxOutgoingPacketBytes). Send less per message, or raise the limit if the server accepts more.`);
		const start = () => {
			if (qos === 0) {
				// At most once, but never reported sent before it was handed to the connection.
				if (!this._sendPublish(topicBytes, body, 0, retain, 0, written => tell(done, written ? undefined : this._closedError(what))))
					tell(done, this._closedError(what));
				return;
			}
			const id = this._track("PUBACK", what, done);
			if (id) this._sendPublish(topicBytes, body, 1, retain, id);
		};
		// Open: started now, so that no closure waits with the message.
		if (this._phase === OPEN) start();
		else this._waiting.push({what, reject: done, start});
		return undefined;
	}

	subscribe(subscriptions: readonly Subscription[]): Promise<QoS[]> {
		return new Promise<QoS[]>((resolve, reject) => {
			if (!Array.isArray(subscriptions) || !subscriptions.length)
				return reject(configError("subscriptions", "empty", "Give at least one {topic, qos}"));
			if (subscriptions.length > MAX_SUBSCRIBE_FILTERS)
				return reject(configError("subscriptions", `${subscriptions.length} topic filters in one call`, `Subscribe to at most ${MAX_SUBSCRIBE_FILTERS} at a time`));
			const what = `subscribe to ${subscriptions.map(s => s?.topic).join(", ")}`;
			if (this._phase === CLOSED) return reject(this._closedError(what));
			const requested: QoS[] = [];
			for (const s of subscriptions) {
				const problem = checkTopicFilter(s?.topic);
				if (problem) return reject(configError("topic filter", `${String(s?.topic)} ${problem}`, "Fix the topic filter"));
				if (s.qos !== 0 && s.qos !== 1) return reject(configError("qos", `${String(s.qos)} for ${s.topic} is not supported`, "Use 0 or 1"));
				requested.push(s.qos);
			}
			const copy = subscriptions.map(s => ({topic: s.topic, qos: s.qos}));
			this._run({
				what,
				reject,
				start: () => {
					const id = this._track("SUBACK", what, (error, granted) => error ? reject(error) : resolve(granted!), requested);
					if (id) this._queue({packetId: id, subscriptions: copy});
				},
			});
		});
	}

	unsubscribe(topics: readonly string[]): Promise<void> {
		return new Promise<void>((resolve, reject) => {
			if (!Array.isArray(topics) || !topics.length) return reject(configError("topics", "empty", "Give at least one topic filter"));
			const what = `unsubscribe from ${topics.join(", ")}`;
			if (this._phase === CLOSED) return reject(this._closedError(what));
			for (const t of topics) {
				const problem = checkTopicFilter(t);
				if (problem) return reject(configError("topic filter", `${String(t)} ${problem}`, "Fix the topic filter"));
			}
			const copy = topics.slice();
			this._run({
				what,
				reject,
				start: () => {
					const id = this._track("UNSUBACK", what, error => error ? reject(error) : resolve());
					if (id) this._queue({packetId: id, unsubscriptions: copy});
				},
			});
		});
	}

	disconnect(): void {
		if (this._phase === CLOSED) return;
		const conn = this._conn;
		const polite = (this._phase === OPEN || this._phase === CONNACK) && conn !== undefined && !this._writing;
		// What was asked for before disconnect() still goes, in order, ahead of DISCONNECT (an UNSUBSCRIBE, say).
		const out = this._out;
		this._out = [];
		this._end(undefined, false);
		let told = waitingFor(out);
		let written = false;
		if (polite) {
			// Written after _end so that a failing write cannot call onClose; the host still flushes it before closing.
			try {
				told = this._writeAll([...out, {packetId: 0, bytes: encodeDisconnect()}], bytes => conn.write(bytes));
				written = true;
			}
			catch {}
		}
		// Written and closed here, not in a job of its own: with the close moved to a later job, 4 and 5
		// of the 100 simulators of the fleet benchmark crashed (SIGSEGV in mcsim) in two runs out of
		// two; with it here, none in five.
		try { conn?.close(); } catch {}
		for (const notify of told) notify(written);
	}

	close(): void {
		if (this._phase === CLOSED) return;
		const conn = this._conn;
		this._end(undefined, false);
		try { conn?.close(); } catch {}
	}

	/* -------------------------------------------------------------- connection events */

	private _onTlsConnect(): void {
		if (this._phase !== TLS) return;
		this._phase = CONNACK;
		this._tlsReady = true;
		if (this._conn) this._sendConnect();
	}

	private _sendConnect(): void {
		const packet = this.#connectPacket;
		this.#connectPacket = undefined; // it holds the password: keep it no longer than needed
		if (packet) this._send(packet);
	}

	private _onData(bytes: Uint8Array): void {
		if (this._phase === CLOSED || this._phase === TLS) return;
		// Kept, not copied: the host contract gives the bytes to the core (host.ts).
		this._parser.push(bytes);
		// A payload being assembled or skipped takes the bytes now, so the chunk is not held until the read job.
		this._parser.absorb();
		if (!this._readQueued && !this._draining) {
			this._readQueued = true;
			later(this._readJob);
		}
	}

	/** The read job: handles every complete packet received so far. */
	private _drain(): void {
		this._readQueued = false;
		if (this._draining) return;
		this._draining = true;
		try {
			while (this._phase !== CLOSED) {
				let packet: ServerPacket | undefined;
				try {
					packet = this._parser.next();
				}
				catch (e) {
					this._fail(e as AzureIoTError);
					break;
				}
				if (!packet) break;
				this._handle(packet);
			}
		}
		catch (e) {
			// _handle guards the user's callbacks; anything else here is a bug, reported as the session's end.
			this._fail(new AzureIoTError("mqtt.protocol", `handling a packet from ${this._where} failed (${e instanceof Error ? e.message : String(e)}).`));
		}
		finally {
			this._draining = false;
		}
		const close = this._closeAfterRead;
		this._closeAfterRead = undefined;
		if (close) this._onHostClose(close);
	}

	private _onHostClose(error: HostError): void {
		if (this._phase === CLOSED) return;
		if (this._readQueued || this._draining) {
			// The packets that came before the close are handled first (a last reply, a server's DISCONNECT reason).
			this._closeAfterRead = error;
			return;
		}
		const where = this._where;
		const name = this.#options.server.serverName ?? this.#options.server.host;
		if (error.kind === "tls") {
			this._fail(new AzureIoTError("tls", this._phase === TLS
				? `TLS with ${where} failed (${error.message}): the server's certificate did not chain to a pinned root, or its name did not match "${name}". Check the roots configured (server.roots), the host name (server.host, server.serverName) and the device's clock (certificates are only valid between their dates).`
				: `the TLS session with ${where} failed (${error.message}). Reconnect; if it keeps happening, check the network path.`));
			return;
		}
		let message: string;
		switch (error.kind) {
		case "dns": message = `could not resolve ${this.#options.server.host} (${error.message}). Check the host name and the network's DNS.`; break;
		case "refused": message = `${where} refused the connection (${error.message}). Check the port and that the server is running.`; break;
		case "reset": message = `the connection to ${where} was reset (${error.message}). Reconnect.`; break;
		case "timeout": message = `the connection to ${where} timed out (${error.message}). Check the network.`; break;
		case "closed":
			message = this._phase === OPEN
				? `${where} closed the connection. Reconnect; if it keeps happening, check the credentials' expiry and what the client sends.`
				: `${where} closed the connection before CONNACK. Check the client id and the credentials, and that this port speaks MQTT 3.1.1.`;
			break;
		default: message = `network error with ${where}: ${error.message}. Reconnect.`;
		}
		this._fail(new AzureIoTError("network", message, {retriable: true}));
	}

	/* -------------------------------------------------------------- incoming packets */

	private _handle(packet: ServerPacket): void {
		if (this._phase === CONNACK) {
			if (packet.type !== "connack") {
				this._fail(new AzureIoTError("mqtt.protocol", `${this._where} sent ${packet.type.toUpperCase()} before CONNACK. Check that this port speaks MQTT 3.1.1.`));
				return;
			}
			this._onConnack(packet.sessionPresent, packet.returnCode);
			return;
		}
		switch (packet.type) {
		case "connack":
			this._fail(new AzureIoTError("mqtt.protocol", `${this._where} sent a second CONNACK. Check that this port speaks MQTT 3.1.1.`));
			return;
		case "publish": {
			const message: MqttMessage = {topic: packet.topic, payload: packet.payload, qos: packet.qos, retain: packet.retain, dup: packet.dup};
			// The message holds the only reference, so a handler that has read the payload can let it go (takeText).
			packet.payload = NO_BYTES;
			if (packet.dropped) {
				message.dropped = true;
				message.size = packet.size;
			}
			this._onPublish(message, packet.packetId);
			return;
		}
		case "puback":
		case "unsuback":
			this._settle(packet.type === "puback" ? "PUBACK" : "UNSUBACK", packet.packetId);
			return;
		case "suback":
			this._settle("SUBACK", packet.packetId, packet.granted);
			return;
		case "pingresp":
			this._host.clearTimer(this._pingTimer);
			this._pingTimer = undefined;
			return;
		}
	}

	private _onConnack(sessionPresent: boolean, code: number): void {
		this._host.clearTimer(this._connectTimer);
		this._connectTimer = undefined;
		if (code !== 0) {
			const meaning = CONNACK_MEANINGS[code] ?? "a return code MQTT 3.1.1 does not define";
			this._fail(new AzureIoTError("mqtt.connack", `${this._where} refused the connection: CONNACK return code ${code}, ${meaning}.`,
				{status: code, retriable: code === 3}));
			return;
		}
		this._phase = OPEN;
		this._armKeepAlive();
		const waiting = this._waiting;
		this._waiting = [];
		for (const w of waiting) {
			if (this._phase !== OPEN) {
				tell(w.reject, this._closedError(w.what));
				continue;
			}
			w.start();
		}
		if (this._phase !== OPEN) return;
		try {
			this.#options.onConnect?.({sessionPresent});
		}
		catch (e) {
			this._log(`mqtt: onConnect threw (${String(e)})`);
		}
	}

	private _onPublish(message: MqttMessage, packetId: number): void {
		const onMessage = this.#options.onMessage;
		let entry: IncomingAck | undefined;
		if (message.qos === 1) {
			// PUBACKs go out in the order the PUBLISHes came (MQTT 3.1.1 §4.6), whatever order the handlers finish in.
			entry = {packetId, done: false};
			this._incoming.push(entry);
		}
		let result: void | Promise<void> = undefined;
		try {
			result = onMessage?.(message);
		}
		catch (e) {
			this._log(`mqtt: onMessage threw for ${message.topic} (${String(e)}); acknowledged anyway`);
		}
		if (!entry) return;
		const done = entry;
		const settle = () => {
			done.done = true;
			this._flushAcks();
		};
		if (result && typeof (result as Promise<void>).then === "function") {
			Promise.resolve(result).then(settle, e => {
				this._log(`mqtt: onMessage rejected for ${message.topic} (${String(e)}); acknowledged anyway`);
				settle();
			});
		}
		else settle();
	}

	private _flushAcks(): void {
		while (this._phase === OPEN && this._incoming.length && this._incoming[0].done) {
			const {packetId} = this._incoming.shift()!;
			this._send(encodePuback(packetId));
		}
	}

	private _settle(kind: Pending["kind"], packetId: number, granted?: number[]): void {
		const pending = this._pending.get(packetId);
		if (!pending) {
			this._log(`mqtt: ${kind} for packet id ${packetId}, which is not in flight; ignored`);
			return;
		}
		if (pending.kind !== kind) {
			this._fail(new AzureIoTError("mqtt.protocol", `${this._where} answered packet id ${packetId} with ${kind}, not ${pending.kind}. The server does not follow MQTT 3.1.1.`));
			return;
		}
		this._forget(packetId);
		if (kind !== "SUBACK") {
			tell(pending.done, undefined);
			return;
		}
		const requested = pending.requested!;
		if (granted!.length !== requested.length) {
			tell(pending.done, new AzureIoTError("mqtt.protocol", `${pending.what}: SUBACK has ${granted!.length} return codes for ${requested.length} topics.`));
			this._fail(new AzureIoTError("mqtt.protocol", `${this._where} sent a SUBACK with ${granted!.length} return codes for ${requested.length} topics. The server does not follow MQTT 3.1.1.`));
			return;
		}
		const refused = granted!.findIndex(g => g === 0x80);
		if (refused >= 0) {
			tell(pending.done, new AzureIoTError("mqtt.refused",
				`${pending.what}: the server refused topic filter #${refused + 1} (SUBACK 0x80). Check the topic filter and the client's permissions.`));
			return;
		}
		const over = granted!.findIndex((g, i) => g > requested[i]);
		if (over >= 0) {
			tell(pending.done, new AzureIoTError("mqtt.protocol", `${pending.what}: SUBACK granted QoS ${granted![over]} where ${requested[over]} was asked.`));
			this._fail(new AzureIoTError("mqtt.protocol", `${this._where} granted a higher QoS than asked in SUBACK. The server does not follow MQTT 3.1.1.`));
			return;
		}
		tell(pending.done, undefined, granted as QoS[]);
	}

	/* -------------------------------------------------------------- outgoing */

	private _run(w: Waiting): void {
		if (this._phase === OPEN) w.start();
		else this._waiting.push(w);
	}

	/** Registers an operation awaiting an acknowledgement; returns its packet id, or 0 when it was rejected. */
	private _track(kind: Pending["kind"], what: string, done: Done, requested?: QoS[]): number {
		let id = 0;
		for (let i = 0; i < 65535; i++) {
			const candidate = this._nextId;
			this._nextId = candidate === 65535 ? 1 : candidate + 1;
			if (!this._pending.has(candidate)) {
				id = candidate;
				break;
			}
		}
		if (!id) {
			const error = new AzureIoTError("queue.full", `${what}: all 65535 packet ids are in flight. Wait for acknowledgements before sending more.`, {retriable: true});
			tell(done, error);
			return 0;
		}
		// Registered before the write: some hosts deliver the answer from inside write().
		this._pending.set(id, {kind, what, done, round: this._ackRound, requested});
		if (this._ackTimer === undefined) this._ackTimer = this._host.setTimer(this._ackTickJob, this._ackTimeoutMs / ACK_ROUNDS);
		return id;
	}

	/** No longer awaits an acknowledgement for packetId; the tick stops when nothing does. */
	private _forget(packetId: number): void {
		this._pending.delete(packetId);
		if (!this._pending.size) {
			this._host.clearTimer(this._ackTimer);
			this._ackTimer = undefined;
		}
	}

	private _ackTick(): void {
		this._ackTimer = undefined;
		if (this._phase === CLOSED) return;
		const round = ++this._ackRound;
		// Oldest first (a Map keeps insertion order): the first overdue one ends the session.
		for (const [id, p] of this._pending) {
			if (round - p.round <= ACK_ROUNDS) break;
			this._pending.delete(id);
			const error = new AzureIoTError("mqtt.timeout", `${p.what}: no ${p.kind} from ${this._where} within ${this._ackTimeoutMs} ms. The connection is treated as dead; reconnect and retry.`, {retriable: true});
			tell(p.done, error);
			this._fail(error);
			return;
		}
		if (this._pending.size) this._ackTimer = this._host.setTimer(this._ackTickJob, this._ackTimeoutMs / ACK_ROUNDS);
	}

	private _sendPublish(topic: Uint8Array, payload: Uint8Array, qos: QoS, retain: boolean, packetId: number, written?: (written: boolean) => void): boolean {
		return this._queue({packetId, topic, payload, qos, retain, written});
	}

	/** Queues a packet already encoded. */
	private _send(bytes: Uint8Array): boolean {
		return this._queue({packetId: 0, bytes});
	}

	/** Queues one packet for the write job; false when the session is closed. */
	private _queue(packet: Queued): boolean {
		if (this._phase === CLOSED || !this._conn) return false;
		this._out.push(packet);
		if (!this._writeQueued) {
			this._writeQueued = true;
			later(this._writeJob);
		}
		return true;
	}

	/**
	 * Encodes the queued packets one at a time and hands them to `write` in runs of at most
	 * JOIN_LIMIT bytes (one TLS record each), so a burst (the queue re-sent after a reconnect) never
	 * holds all its encoded copies at once. A packet that cannot be encoded rejects its operation
	 * and is skipped. Returns whom to tell once the writes are done; a throwing `write` stops it.
	 */
	private _writeAll(queued: readonly Queued[], write: (bytes: Uint8Array) => void): ((written: boolean) => void)[] {
		const told: ((written: boolean) => void)[] = [];
		let run: Uint8Array[] = [], size = 0;
		for (const q of queued) {
			let bytes: Uint8Array | [Uint8Array, Uint8Array];
			try {
				bytes = encodeQueued(q);
			}
			catch (e) {
				const error = e instanceof AzureIoTError ? e : new AzureIoTError("config", `the packet could not be encoded (${String(e)})`);
				const pending = this._pending.get(q.packetId);
				if (pending) {
					this._forget(q.packetId);
					tell(pending.done, error);
				}
				else if (q.written) q.written(false);
				else this._log(`mqtt: a packet could not be encoded and was dropped (${error.message})`);
				continue;
			}
			for (const part of bytes instanceof Uint8Array ? [bytes] : bytes) {
				if (size && size + part.length > JOIN_LIMIT) {
					write(run.length === 1 ? run[0] : concatBytes(run));
					run = [];
					size = 0;
				}
				run.push(part);
				size += part.length;
			}
			if (q.written) told.push(q.written);
		}
		if (run.length) write(run.length === 1 ? run[0] : concatBytes(run));
		return told;
	}

	/** The write job: hands every queued packet to the connection. */
	private _flush(): void {
		this._writeQueued = false;
		const conn = this._conn;
		if (this._phase === CLOSED || !conn || !this._out.length) return;
		const queued = this._out;
		this._out = [];
		this._writing = true;
		let failure: unknown;
		let told: ((written: boolean) => void)[] = [];
		try {
			told = this._writeAll(queued, bytes => {
				// A rejection's handler may have closed the session: nothing more is written then.
				if (this._phase === CLOSED) throw new Error("the session closed");
				conn.write(bytes);
			});
		}
		catch (e) {
			failure = e;
			// Whoever waits for a packet of this batch learns it was not written.
			told = waitingFor(queued);
		}
		finally {
			this._writing = false;
		}
		if (failure !== undefined && this._phase !== CLOSED)
			this._fail(new AzureIoTError("network", `writing to ${this._where} failed (${failure instanceof Error ? failure.message : String(failure)}). Reconnect.`, {retriable: true}));
		const ok = this._phase !== CLOSED;
		if (ok) this._armKeepAlive();
		for (const notify of told) notify(ok);
	}

	private _armKeepAlive(): void {
		if (this._phase !== OPEN || !this._keepAliveMs) return;
		// Restarted on every write: the server only needs to hear from us once per interval.
		this._keepAliveTimer = this._swapTimer(this._keepAliveTimer, this._host.setTimer(() => this._onKeepAlive(), this._keepAliveMs));
	}

	private _onKeepAlive(): void {
		this._keepAliveTimer = undefined;
		if (this._phase !== OPEN) return;
		if (this._pingTimer === undefined) {
			this._pingTimer = this._host.setTimer(() => {
				this._pingTimer = undefined;
				this._fail(new AzureIoTError("mqtt.timeout", `no PINGRESP from ${this._where} within ${this._ackTimeoutMs} ms. The connection is treated as dead; reconnect.`, {retriable: true}));
			}, this._ackTimeoutMs);
		}
		this._send(encodePingreq());
	}

	/* -------------------------------------------------------------- ending */

	private _fail(error: AzureIoTError): void {
		if (this._phase === CLOSED) return;
		const conn = this._conn;
		this._end(error, true);
		try { conn?.close(); } catch {}
	}

	/** Marks the session closed, stops timers, rejects what is pending; `notify`: tell onClose. */
	private _end(cause: AzureIoTError | undefined, notify: boolean): void {
		this._phase = CLOSED;
		this._conn = undefined;
		this.#connectPacket = undefined;
		for (const t of [this._connectTimer, this._keepAliveTimer, this._pingTimer, this._ackTimer]) this._host.clearTimer(t);
		this._connectTimer = this._keepAliveTimer = this._pingTimer = this._ackTimer = undefined;
		this._parser = new PacketParser(2); // drops any buffered body
		this._incoming = [];
		const out = this._out;
		this._out = [];
		this._closeAfterRead = undefined;
		for (const q of out) q.written?.(false);
		const pending = [...this._pending.values()];
		this._pending.clear();
		const waiting = this._waiting;
		this._waiting = [];
		for (const p of pending) tell(p.done, this._closedError(p.what, cause));
		for (const w of waiting) tell(w.reject, this._closedError(w.what, cause));
		if (!notify || !cause) return;
		try {
			this.#options.onClose?.(cause);
		}
		catch (e) {
			this._log(`mqtt: onClose threw (${String(e)})`);
		}
	}

	private _closedError(what: string, cause?: AzureIoTError): AzureIoTError {
		return new AzureIoTError("mqtt.closed", cause
			? `${what}: the connection ended before it completed (${cause.code}: ${cause.message})`
			: `${what}: the session was closed by this side (disconnect() or close()). Open a new session to retry.`, {retriable: true});
	}

	private _swapTimer(old: TimerHandle | undefined, next: TimerHandle): TimerHandle {
		this._host.clearTimer(old);
		return next;
	}

	private _log(line: string): void {
		try { this._host.log?.(line); } catch {}
	}
}

/** Whom to tell about these queued packets. */
function waitingFor(queued: readonly Queued[]): ((written: boolean) => void)[] {
	const told: ((written: boolean) => void)[] = [];
	for (const q of queued) if (q.written) told.push(q.written);
	return told;
}
