/*
 * One MQTT 3.1.1 session over one TLS connection: CONNECT/CONNACK, QoS 0/1 publish with PUBACK
 * tracking, subscriptions, keep-alive. It is written here rather than taken from the SDK because the
 * SDK's `mqtt` module ignores PUBACK, never acknowledges incoming QoS 1 and always starts a clean
 * session (see types.ts). Reconnecting is the caller's business: a session ends once, with onClose.
 *
 * Host callbacks may come re-entrantly (onData from inside write on some hosts), so incoming bytes
 * are only parsed outside writes, one packet at a time, and every step re-checks whether the session
 * is still open: user callbacks run synchronously and may close it.
 */
import type {Connection, Host, HostError, TimerHandle} from "../host.js";
import {AzureIoTError, configError} from "../errors.js";
import {utf8Encode} from "../encoding.js";
import {copy, DEFAULT_MAX_PACKET_BYTES, encodeConnect, encodeDisconnect, encodePingreq, encodePuback, encodePublish,
	encodePublishHeader, encodeSubscribe, encodeUnsubscribe, packetSize, PacketParser} from "./codec.js";
import type {ServerPacket} from "./codec.js";
import type {MqttClientOptions, MqttMessage, MqttSession, PublishOptions, QoS, Subscription} from "./types.js";

const TLS = 0, CONNACK = 1, OPEN = 2, CLOSED = 3;

/** Payloads above this are written after their header rather than copied into one packet. */
const COPY_LIMIT = 1024;

const CONNACK_MEANINGS = [
	"accepted",
	"unacceptable protocol version: the server does not accept MQTT 3.1.1",
	"identifier rejected: the server does not accept this client id; check clientId",
	"server unavailable: the MQTT service is down; try again later",
	"bad user name or password: check username and password (for Azure, the SAS token, its key and its expiry)",
	"not authorized: the server refuses these credentials or this client; check the credentials and the device's permissions",
];

interface Pending {
	kind: "PUBACK" | "SUBACK" | "UNSUBACK";
	what: string;
	resolve(value: QoS[] | undefined): void;
	reject(error: AzureIoTError): void;
	timer: TimerHandle;
	requested?: QoS[];
}

/** An operation asked for before CONNACK: run once the session is open. */
interface Waiting {
	what: string;
	start(): void;
	reject(error: AzureIoTError): void;
}

interface IncomingAck {
	packetId: number;
	done: boolean;
}

function checkTopicName(topic: unknown): string | undefined {
	if (typeof topic !== "string" || !topic) return "must be a non-empty string";
	if (/[+#\u0000]/.test(topic)) return "must not contain the wildcards + or # or NUL";
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

export class MqttClient implements MqttSession {
	#host: Host;
	#options: MqttClientOptions;
	#where: string;
	#keepAliveMs: number;
	#ackTimeoutMs: number;
	#maxOutgoing: number;
	#phase = TLS;
	#conn: Connection | undefined;
	#connectPacket: Uint8Array | undefined;
	#tlsReady = false;
	#parser: PacketParser;
	#pending = new Map<number, Pending>();
	#waiting: Waiting[] = [];
	#incoming: IncomingAck[] = [];
	#nextId = 1;
	#connectTimer: TimerHandle | undefined;
	#keepAliveTimer: TimerHandle | undefined;
	#pingTimer: TimerHandle | undefined;
	#drainTimer: TimerHandle | undefined;
	#writing = false;
	#draining = false;
	#constructing = true;

	constructor(options: MqttClientOptions) {
		const host = options?.host;
		if (!host || typeof host.connect !== "function" || typeof host.setTimer !== "function")
			throw configError("host", "missing or not a Host", "Pass the platform's Host (createNodeHost() under Node)");
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
		this.#host = host;
		this.#options = options;
		this.#where = `${server.host}:${server.port}`;
		const keepAlive = positiveInteger(options, "keepAliveSeconds", 60, 0, 65535);
		this.#keepAliveMs = keepAlive * 1000;
		const connectTimeoutMs = positiveInteger(options, "connectTimeoutMs", 30000);
		this.#ackTimeoutMs = positiveInteger(options, "ackTimeoutMs", 30000);
		this.#maxOutgoing = positiveInteger(options, "maxOutgoingPacketBytes", DEFAULT_MAX_PACKET_BYTES, 2);
		this.#parser = new PacketParser(positiveInteger(options, "maxIncomingPacketBytes", DEFAULT_MAX_PACKET_BYTES, 2));
		this.#connectPacket = encodeConnect({
			clientId: options.clientId, username: options.username, password: options.password, clean, keepAliveSeconds: keepAlive,
		});

		this.#connectTimer = host.setTimer(() => {
			this.#connectTimer = undefined;
			this.#fail(new AzureIoTError("mqtt.timeout", this.#phase === TLS
				? `no TLS connection to ${this.#where} within ${connectTimeoutMs} ms. Check the host, the port and the network.`
				: `no CONNACK from ${this.#where} within ${connectTimeoutMs} ms. Check that this port speaks MQTT 3.1.1.`, {retriable: true}));
		}, connectTimeoutMs);
		let conn: Connection;
		try {
			conn = host.connect(server, {
				onConnect: () => this.#onTlsConnect(),
				onData: bytes => this.#onData(bytes),
				onClose: error => this.#onHostClose(error),
			});
		}
		catch (e) {
			this.#constructing = false;
			// Reported later, as any other failure, so that onClose never runs inside the constructor.
			const error = new AzureIoTError("network", `could not open a connection to ${this.#where}: ${e instanceof Error ? e.message : String(e)}.`, {retriable: true});
			const timer = host.setTimer(() => this.#fail(error), 0);
			this.#connectTimer = this.#swapTimer(this.#connectTimer, timer);
			return;
		}
		this.#constructing = false;
		if (this.#phase === CLOSED) { // closed inside host.connect
			try { conn.close(); } catch {}
			return;
		}
		this.#conn = conn;
		if (this.#tlsReady) this.#sendConnect();
	}

	get connected(): boolean {
		return this.#phase === OPEN;
	}

	publish(topic: string, payload: Uint8Array | string, options: PublishOptions = {}): Promise<void> {
		return new Promise<void>((resolve, reject) => {
			const what = `publish to ${typeof topic === "string" ? topic : "?"}`;
			if (this.#phase === CLOSED) return reject(this.#closedError(what));
			const problem = checkTopicName(topic);
			if (problem) return reject(configError("topic", problem, "Give the topic name to publish to"));
			const qos = options.qos ?? 0;
			if (qos !== 0 && qos !== 1) return reject(configError("qos", `${String(qos)} is not supported`, "Use 0 or 1"));
			const retain = options.retain === true;
			let topicBytes: Uint8Array, body: Uint8Array;
			try {
				topicBytes = utf8Encode(topic);
				body = typeof payload === "string" ? utf8Encode(payload) : payload;
				if (!(body instanceof Uint8Array)) return reject(configError("payload", "neither a string nor a Uint8Array", "Pass bytes or text"));
				if (topicBytes.length > 65535) return reject(configError("topic", `${topicBytes.length} bytes long`, "MQTT allows at most 65535 bytes"));
			}
			catch (e) {
				return reject(e);
			}
			const size = packetSize(2 + topicBytes.length + (qos ? 2 : 0) + body.length);
			if (size > this.#maxOutgoing)
				return reject(new AzureIoTError("mqtt.tooLarge",
					`${what}: the packet would be ${size} bytes, over the ${this.#maxOutgoing}-byte limit (maxOutgoingPacketBytes). Send less per message, or raise the limit if the server accepts more.`));
			this.#run({
				what,
				reject,
				start: () => {
					if (qos === 0) {
						if (this.#sendPublish(topicBytes, body, 0, retain, 0)) resolve();
						else reject(this.#closedError(what));
						return;
					}
					const id = this.#track("PUBACK", what, () => resolve(), reject);
					if (id) this.#sendPublish(topicBytes, body, 1, retain, id);
				},
			});
		});
	}

	subscribe(subscriptions: readonly Subscription[]): Promise<QoS[]> {
		return new Promise<QoS[]>((resolve, reject) => {
			if (!Array.isArray(subscriptions) || !subscriptions.length)
				return reject(configError("subscriptions", "empty", "Give at least one {topic, qos}"));
			const what = `subscribe to ${subscriptions.map(s => s?.topic).join(", ")}`;
			if (this.#phase === CLOSED) return reject(this.#closedError(what));
			const requested: QoS[] = [];
			for (const s of subscriptions) {
				const problem = checkTopicFilter(s?.topic);
				if (problem) return reject(configError("topic filter", `${String(s?.topic)} ${problem}`, "Fix the topic filter"));
				if (s.qos !== 0 && s.qos !== 1) return reject(configError("qos", `${String(s.qos)} for ${s.topic} is not supported`, "Use 0 or 1"));
				requested.push(s.qos);
			}
			const copy = subscriptions.map(s => ({topic: s.topic, qos: s.qos}));
			this.#run({
				what,
				reject,
				start: () => {
					const id = this.#track("SUBACK", what, granted => resolve(granted!), reject, requested);
					if (id) this.#sendPacket(() => encodeSubscribe(id, copy), id);
				},
			});
		});
	}

	unsubscribe(topics: readonly string[]): Promise<void> {
		return new Promise<void>((resolve, reject) => {
			if (!Array.isArray(topics) || !topics.length) return reject(configError("topics", "empty", "Give at least one topic filter"));
			const what = `unsubscribe from ${topics.join(", ")}`;
			if (this.#phase === CLOSED) return reject(this.#closedError(what));
			for (const t of topics) {
				const problem = checkTopicFilter(t);
				if (problem) return reject(configError("topic filter", `${String(t)} ${problem}`, "Fix the topic filter"));
			}
			const copy = topics.slice();
			this.#run({
				what,
				reject,
				start: () => {
					const id = this.#track("UNSUBACK", what, () => resolve(), reject);
					if (id) this.#sendPacket(() => encodeUnsubscribe(id, copy), id);
				},
			});
		});
	}

	disconnect(): void {
		if (this.#phase === CLOSED) return;
		const conn = this.#conn;
		const polite = this.#phase !== TLS && conn !== undefined && !this.#writing;
		this.#end(undefined, false);
		if (polite) {
			// Written after #end so that a failing write cannot call onClose; the host still flushes it before closing.
			try { conn.write(encodeDisconnect()); } catch {}
		}
		try { conn?.close(); } catch {}
	}

	close(): void {
		if (this.#phase === CLOSED) return;
		const conn = this.#conn;
		this.#end(undefined, false);
		try { conn?.close(); } catch {}
	}

	/* -------------------------------------------------------------- connection events */

	#onTlsConnect(): void {
		if (this.#phase !== TLS) return;
		this.#phase = CONNACK;
		this.#tlsReady = true;
		if (this.#conn) this.#sendConnect();
	}

	#sendConnect(): void {
		const packet = this.#connectPacket;
		this.#connectPacket = undefined; // it holds the password: keep it no longer than needed
		if (packet) this.#send(packet);
	}

	#onData(bytes: Uint8Array): void {
		if (this.#phase === CLOSED || this.#phase === TLS) return;
		if (this.#writing || this.#draining) {
			// Parsed after the current write or packet; the host may reuse its buffer once we return.
			this.#parser.push(copy(bytes));
			if (!this.#draining && this.#drainTimer === undefined)
				this.#drainTimer = this.#host.setTimer(() => { this.#drainTimer = undefined; this.#drain(); }, 0);
			return;
		}
		this.#parser.push(bytes);
		this.#drain();
	}

	#drain(): void {
		if (this.#draining || this.#writing) return;
		this.#draining = true;
		try {
			while (this.#phase !== CLOSED) {
				let packet: ServerPacket | undefined;
				try {
					packet = this.#parser.next();
				}
				catch (e) {
					this.#fail(e as AzureIoTError);
					break;
				}
				if (!packet) break;
				this.#handle(packet);
			}
		}
		finally {
			this.#draining = false;
		}
	}

	#onHostClose(error: HostError): void {
		if (this.#phase === CLOSED) return;
		if (this.#constructing) {
			// A host that fails inside connect(): report it later, never inside the constructor.
			const timer = this.#host.setTimer(() => this.#onHostClose(error), 0);
			this.#connectTimer = this.#swapTimer(this.#connectTimer, timer);
			return;
		}
		const where = this.#where;
		const name = this.#options.server.serverName ?? this.#options.server.host;
		if (error.kind === "tls") {
			this.#fail(new AzureIoTError("tls", this.#phase === TLS
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
			message = this.#phase === OPEN
				? `${where} closed the connection. Reconnect; if it keeps happening, check the credentials' expiry and what the client sends.`
				: `${where} closed the connection before CONNACK. Check the client id and the credentials, and that this port speaks MQTT 3.1.1.`;
			break;
		default: message = `network error with ${where}: ${error.message}. Reconnect.`;
		}
		this.#fail(new AzureIoTError("network", message, {retriable: true}));
	}

	/* -------------------------------------------------------------- incoming packets */

	#handle(packet: ServerPacket): void {
		if (this.#phase === CONNACK) {
			if (packet.type !== "connack") {
				this.#fail(new AzureIoTError("mqtt.protocol", `${this.#where} sent ${packet.type.toUpperCase()} before CONNACK. Check that this port speaks MQTT 3.1.1.`));
				return;
			}
			this.#onConnack(packet.sessionPresent, packet.returnCode);
			return;
		}
		switch (packet.type) {
		case "connack":
			this.#fail(new AzureIoTError("mqtt.protocol", `${this.#where} sent a second CONNACK. Check that this port speaks MQTT 3.1.1.`));
			return;
		case "publish":
			this.#onPublish({topic: packet.topic, payload: packet.payload, qos: packet.qos, retain: packet.retain, dup: packet.dup}, packet.packetId);
			return;
		case "puback":
		case "unsuback":
			this.#settle(packet.type === "puback" ? "PUBACK" : "UNSUBACK", packet.packetId);
			return;
		case "suback":
			this.#settle("SUBACK", packet.packetId, packet.granted);
			return;
		case "pingresp":
			this.#host.clearTimer(this.#pingTimer);
			this.#pingTimer = undefined;
			return;
		}
	}

	#onConnack(sessionPresent: boolean, code: number): void {
		this.#host.clearTimer(this.#connectTimer);
		this.#connectTimer = undefined;
		if (code !== 0) {
			const meaning = CONNACK_MEANINGS[code] ?? "a return code MQTT 3.1.1 does not define";
			this.#fail(new AzureIoTError("mqtt.connack", `${this.#where} refused the connection: CONNACK return code ${code}, ${meaning}.`,
				{status: code, retriable: code === 3}));
			return;
		}
		this.#phase = OPEN;
		this.#armKeepAlive();
		const waiting = this.#waiting;
		this.#waiting = [];
		for (const w of waiting) {
			if (this.#phase !== OPEN) {
				w.reject(this.#closedError(w.what));
				continue;
			}
			w.start();
		}
		if (this.#phase !== OPEN) return;
		try {
			this.#options.onConnect?.({sessionPresent});
		}
		catch (e) {
			this.#log(`mqtt: onConnect threw (${String(e)})`);
		}
	}

	#onPublish(message: MqttMessage, packetId: number): void {
		const onMessage = this.#options.onMessage;
		let entry: IncomingAck | undefined;
		if (message.qos === 1) {
			// PUBACKs go out in the order the PUBLISHes came (MQTT 3.1.1 §4.6), whatever order the handlers finish in.
			entry = {packetId, done: false};
			this.#incoming.push(entry);
		}
		let result: void | Promise<void> = undefined;
		try {
			result = onMessage?.(message);
		}
		catch (e) {
			this.#log(`mqtt: onMessage threw for ${message.topic} (${String(e)}); acknowledged anyway`);
		}
		if (!entry) return;
		const done = entry;
		const settle = () => {
			done.done = true;
			this.#flushAcks();
		};
		if (result && typeof (result as Promise<void>).then === "function") {
			Promise.resolve(result).then(settle, e => {
				this.#log(`mqtt: onMessage rejected for ${message.topic} (${String(e)}); acknowledged anyway`);
				settle();
			});
		}
		else settle();
	}

	#flushAcks(): void {
		while (this.#phase === OPEN && this.#incoming.length && this.#incoming[0].done) {
			const {packetId} = this.#incoming.shift()!;
			this.#send(encodePuback(packetId));
		}
	}

	#settle(kind: Pending["kind"], packetId: number, granted?: number[]): void {
		const pending = this.#pending.get(packetId);
		if (!pending) {
			this.#log(`mqtt: ${kind} for packet id ${packetId}, which is not in flight; ignored`);
			return;
		}
		if (pending.kind !== kind) {
			this.#fail(new AzureIoTError("mqtt.protocol", `${this.#where} answered packet id ${packetId} with ${kind}, not ${pending.kind}. The server does not follow MQTT 3.1.1.`));
			return;
		}
		this.#pending.delete(packetId);
		this.#host.clearTimer(pending.timer);
		if (kind !== "SUBACK") {
			pending.resolve(undefined);
			return;
		}
		const requested = pending.requested!;
		if (granted!.length !== requested.length) {
			pending.reject(new AzureIoTError("mqtt.protocol", `${pending.what}: SUBACK has ${granted!.length} return codes for ${requested.length} topics.`));
			this.#fail(new AzureIoTError("mqtt.protocol", `${this.#where} sent a SUBACK with ${granted!.length} return codes for ${requested.length} topics. The server does not follow MQTT 3.1.1.`));
			return;
		}
		const refused = granted!.findIndex(g => g === 0x80);
		if (refused >= 0) {
			pending.reject(new AzureIoTError("mqtt.refused",
				`${pending.what}: the server refused topic filter #${refused + 1} (SUBACK 0x80). Check the topic filter and the client's permissions.`));
			return;
		}
		const over = granted!.findIndex((g, i) => g > requested[i]);
		if (over >= 0) {
			pending.reject(new AzureIoTError("mqtt.protocol", `${pending.what}: SUBACK granted QoS ${granted![over]} where ${requested[over]} was asked.`));
			this.#fail(new AzureIoTError("mqtt.protocol", `${this.#where} granted a higher QoS than asked in SUBACK. The server does not follow MQTT 3.1.1.`));
			return;
		}
		pending.resolve(granted as QoS[]);
	}

	/* -------------------------------------------------------------- outgoing */

	#run(w: Waiting): void {
		if (this.#phase === OPEN) w.start();
		else this.#waiting.push(w);
	}

	/** Registers an operation awaiting an acknowledgement; returns its packet id, or 0 when it was rejected. */
	#track(kind: Pending["kind"], what: string, resolve: (value: QoS[] | undefined) => void, reject: (e: AzureIoTError) => void, requested?: QoS[]): number {
		let id = 0;
		for (let i = 0; i < 65535; i++) {
			const candidate = this.#nextId;
			this.#nextId = candidate === 65535 ? 1 : candidate + 1;
			if (!this.#pending.has(candidate)) {
				id = candidate;
				break;
			}
		}
		if (!id) {
			reject(new AzureIoTError("queue.full", `${what}: all 65535 packet ids are in flight. Wait for acknowledgements before sending more.`, {retriable: true}));
			return 0;
		}
		const timer = this.#host.setTimer(() => {
			const pending = this.#pending.get(id);
			if (!pending || pending.timer !== timer) return;
			this.#pending.delete(id);
			const error = new AzureIoTError("mqtt.timeout", `${what}: no ${kind} from ${this.#where} within ${this.#ackTimeoutMs} ms. The connection is treated as dead; reconnect and retry.`, {retriable: true});
			reject(error);
			this.#fail(error);
		}, this.#ackTimeoutMs);
		// Registered before the write: some hosts deliver the answer from inside write().
		this.#pending.set(id, {kind, what, resolve, reject, timer, requested});
		return id;
	}

	#sendPublish(topic: Uint8Array, payload: Uint8Array, qos: QoS, retain: boolean, packetId: number): boolean {
		if (payload.length <= COPY_LIMIT) return this.#send(encodePublish({topic, payload, qos, retain, packetId}));
		return this.#send(encodePublishHeader({topic, qos, retain, packetId}, payload.length), payload);
	}

	/** Encodes and sends; an encoding failure rejects the operation tracked under packetId. */
	#sendPacket(encode: () => Uint8Array, packetId: number): void {
		let bytes: Uint8Array;
		try {
			bytes = encode();
		}
		catch (e) {
			const pending = this.#pending.get(packetId);
			this.#pending.delete(packetId);
			if (pending) {
				this.#host.clearTimer(pending.timer);
				pending.reject(e as AzureIoTError);
			}
			return;
		}
		this.#send(bytes);
	}

	/** Writes one packet (in one or two parts); false when the session is, or became, closed. */
	#send(bytes: Uint8Array, rest?: Uint8Array): boolean {
		const conn = this.#conn;
		if (this.#phase === CLOSED || !conn) return false;
		this.#writing = true;
		let failure: unknown;
		try {
			conn.write(bytes);
			if (rest && this.#phase !== CLOSED) conn.write(rest);
		}
		catch (e) {
			failure = e;
		}
		finally {
			this.#writing = false;
		}
		if (failure !== undefined) {
			this.#fail(new AzureIoTError("network", `writing to ${this.#where} failed (${failure instanceof Error ? failure.message : String(failure)}). Reconnect.`, {retriable: true}));
			return false;
		}
		if (this.#phase === CLOSED) return false;
		this.#armKeepAlive();
		return true;
	}

	#armKeepAlive(): void {
		if (this.#phase !== OPEN || !this.#keepAliveMs) return;
		// Restarted on every write: the server only needs to hear from us once per interval.
		this.#keepAliveTimer = this.#swapTimer(this.#keepAliveTimer, this.#host.setTimer(() => this.#onKeepAlive(), this.#keepAliveMs));
	}

	#onKeepAlive(): void {
		this.#keepAliveTimer = undefined;
		if (this.#phase !== OPEN) return;
		if (this.#pingTimer === undefined) {
			this.#pingTimer = this.#host.setTimer(() => {
				this.#pingTimer = undefined;
				this.#fail(new AzureIoTError("mqtt.timeout", `no PINGRESP from ${this.#where} within ${this.#ackTimeoutMs} ms. The connection is treated as dead; reconnect.`, {retriable: true}));
			}, this.#ackTimeoutMs);
		}
		this.#send(encodePingreq());
	}

	/* -------------------------------------------------------------- ending */

	#fail(error: AzureIoTError): void {
		if (this.#phase === CLOSED) return;
		const conn = this.#conn;
		this.#end(error, true);
		try { conn?.close(); } catch {}
	}

	/** Marks the session closed, stops timers, rejects what is pending; `notify`: tell onClose. */
	#end(cause: AzureIoTError | undefined, notify: boolean): void {
		this.#phase = CLOSED;
		this.#conn = undefined;
		this.#connectPacket = undefined;
		for (const t of [this.#connectTimer, this.#keepAliveTimer, this.#pingTimer, this.#drainTimer]) this.#host.clearTimer(t);
		this.#connectTimer = this.#keepAliveTimer = this.#pingTimer = this.#drainTimer = undefined;
		this.#parser = new PacketParser(2); // drops any buffered body
		this.#incoming = [];
		const pending = [...this.#pending.values()];
		this.#pending.clear();
		const waiting = this.#waiting;
		this.#waiting = [];
		for (const p of pending) {
			this.#host.clearTimer(p.timer);
			p.reject(this.#closedError(p.what, cause));
		}
		for (const w of waiting) w.reject(this.#closedError(w.what, cause));
		if (!notify || !cause) return;
		try {
			this.#options.onClose?.(cause);
		}
		catch (e) {
			this.#log(`mqtt: onClose threw (${String(e)})`);
		}
	}

	#closedError(what: string, cause?: AzureIoTError): AzureIoTError {
		return new AzureIoTError("mqtt.closed", cause
			? `${what}: the connection ended before it completed (${cause.code}: ${cause.message})`
			: `${what}: the session was closed by this side (disconnect() or close()). Open a new session to retry.`, {retriable: true});
	}

	#swapTimer(old: TimerHandle | undefined, next: TimerHandle): TimerHandle {
		this.#host.clearTimer(old);
		return next;
	}

	#log(line: string): void {
		try { this.#host.log?.(line); } catch {}
	}
}
