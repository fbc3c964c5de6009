/*
 * Test doubles for the protocol core: a HostAdapter on a virtual clock (timers run only when a test
 * advances time), deterministic randomness, a real HMAC from node:crypto; and a scripted
 * MqttSession that records what the client asks for and lets the test answer (CONNACK, SUBACK,
 * PUBACK, incoming PUBLISH, drops). Nothing here touches the network or real timers.
 */
import * as crypto from "node:crypto";
import type {Connection, ConnectionHandlers, ConnectOptions, HostAdapter, Storage, TimerHandle} from "../../src/host.js";
import {AzureIoTError} from "../../src/errors.js";
import type {MqttClientOptions, MqttMessage, MqttSession, PublishOptions, QoS, Subscription} from "../../src/mqtt/types.js";

interface Timer {
	id: number;
	at: number;
	ms: number;
	callback: () => void;
}

/** Lets every pending promise reaction run (a macrotask turn drains the microtask queue). */
export async function settle(rounds = 3): Promise<void> {
	for (let i = 0; i < rounds; i++) await new Promise<void>(resolve => setImmediate(resolve));
}

/** mulberry32: small, seedable, good enough for jitter and ids in tests. */
export function seededRandom(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

export interface FakeHostOptions {
	/** Start of the virtual wall clock, ms since the epoch. Default 2026-01-01T00:00:00Z. */
	now?: number;
	/** Seed for random(). Default 1. */
	seed?: number;
	/** Replaces random() altogether (e.g. `() => 0` for the smallest backoff). */
	random?: () => number;
}

export class FakeHost implements HostAdapter {
	time: number;
	random: () => number;
	readonly logs: string[] = [];
	readonly store = new Map<string, string>();
	#timers: Timer[] = [];
	#nextId = 1;

	constructor(options: FakeHostOptions = {}) {
		this.time = options.now ?? Date.UTC(2026, 0, 1);
		this.random = options.random ?? seededRandom(options.seed ?? 1);
	}

	connect(_options: ConnectOptions, _handlers: ConnectionHandlers): Connection {
		throw new Error("FakeHost has no network: give the client a fake session (createSession)");
	}

	setTimer(callback: () => void, ms: number): TimerHandle {
		const timer = {id: this.#nextId++, at: this.time + Math.max(0, ms), ms, callback};
		this.#timers.push(timer);
		return timer.id;
	}

	clearTimer(handle: TimerHandle | undefined): void {
		if (handle === undefined) return;
		this.#timers = this.#timers.filter(t => t.id !== handle);
	}

	now(): number {
		return this.time;
	}

	hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
		return new Uint8Array(crypto.createHmac("sha256", key).update(message).digest());
	}

	storage: Storage = {
		get: key => this.store.get(key),
		set: (key, value) => void this.store.set(key, value),
		delete: key => void this.store.delete(key),
	};

	log(line: string): void {
		this.logs.push(line);
	}

	/** Pending timers, soonest first: {in: ms from now, ms: as requested}. */
	get timers(): {in: number; ms: number}[] {
		return [...this.#timers].sort((a, b) => a.at - b.at || a.id - b.id).map(t => ({in: t.at - this.time, ms: t.ms}));
	}

	/** Moves the clock forward by `ms`, running each timer that falls due, in order, at its own time. */
	advance(ms: number): void {
		const end = this.time + ms;
		for (let due = this.#takeDue(end); due; due = this.#takeDue(end)) due.callback();
		this.time = end;
	}

	/** As advance(), letting promise reactions run after each timer (what real event loops do). */
	async advanceAsync(ms: number): Promise<void> {
		const end = this.time + ms;
		for (;;) {
			await settle();
			const due = this.#takeDue(end);
			if (!due) break;
			due.callback();
		}
		this.time = end;
		await settle();
	}

	/** Removes the soonest timer due by `end` and moves the clock to its time. */
	#takeDue(end: number): Timer | undefined {
		const due = this.#timers.filter(t => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
		if (!due) return undefined;
		this.#timers = this.#timers.filter(t => t !== due);
		this.time = Math.max(this.time, due.at);
		return due;
	}
}

export interface RecordedPublish {
	topic: string;
	payload: Uint8Array;
	qos: QoS;
	text(): string;
	/** Completes a QoS 1 publish (PUBACK). */
	ack(): void;
	/** Fails it, as the session would. */
	fail(error: AzureIoTError): void;
	settled: boolean;
}

export interface FakeSessionOptions {
	/** Resolve subscribe() at once, granting the requested QoS. Default true. */
	autoSuback?: boolean;
}

/**
 * A scripted MqttSession: nothing happens until the test says so (connack(), refuse(), drop(),
 * deliver(), publishes[i].ack()). Behaves like src/mqtt/client.ts where it matters: pending
 * operations reject with mqtt.closed before onClose is called, onClose is called once and only for
 * ends this side did not ask for.
 */
export class FakeSession implements MqttSession {
	readonly options: MqttClientOptions;
	readonly publishes: RecordedPublish[] = [];
	readonly subscribes: {subscriptions: Subscription[]; resolve(qos: QoS[]): void; reject(e: AzureIoTError): void}[] = [];
	connected = false;
	ended: "disconnect" | "close" | "dropped" | undefined;
	#autoSuback: boolean;
	#pending = new Set<{reject(e: AzureIoTError): void}>();

	constructor(options: MqttClientOptions, fake: FakeSessionOptions = {}) {
		this.options = options;
		this.#autoSuback = fake.autoSuback ?? true;
	}

	/** As MqttClient's: publish() without a promise, done never from inside the call. */
	send(topic: string, payload: Uint8Array | string, qos: QoS, done: (error: AzureIoTError | undefined) => void): void {
		this.publish(topic, payload, {qos}).then(() => done(undefined), (e: AzureIoTError) => done(e));
	}

	publish(topic: string, payload: Uint8Array | string, options: PublishOptions = {}): Promise<void> {
		if (this.ended || !this.connected) return Promise.reject(new AzureIoTError("mqtt.closed", "fake session: not connected", {retriable: true}));
		const bytes = typeof payload === "string" ? new TextEncoder().encode(payload) : payload;
		const qos = options.qos ?? 0;
		return new Promise<void>((resolve, reject) => {
			const pending = {reject: (e: AzureIoTError) => {
				if (record.settled) return;
				record.settled = true;
				reject(e);
			}};
			const record: RecordedPublish = {
				topic, payload: bytes, qos, settled: false,
				text: () => new TextDecoder().decode(bytes),
				ack: () => {
					if (record.settled) throw new Error(`publish on ${topic} already settled`);
					record.settled = true;
					this.#pending.delete(pending);
					resolve();
				},
				fail: e => {
					this.#pending.delete(pending);
					pending.reject(e);
				},
			};
			this.publishes.push(record);
			if (qos === 0) {
				record.settled = true;
				resolve();
			}
			else this.#pending.add(pending);
		});
	}

	subscribe(subscriptions: readonly Subscription[]): Promise<QoS[]> {
		if (this.ended || !this.connected) return Promise.reject(new AzureIoTError("mqtt.closed", "fake session: not connected", {retriable: true}));
		return new Promise<QoS[]>((resolve, reject) => {
			const entry = {subscriptions: [...subscriptions], resolve, reject};
			this.subscribes.push(entry);
			this.#pending.add(entry);
			if (this.#autoSuback) resolve(subscriptions.map(s => s.qos));
		});
	}

	readonly unsubscribes: string[][] = [];

	unsubscribe(topics: readonly string[]): Promise<void> {
		if (this.ended || !this.connected) return Promise.reject(new AzureIoTError("mqtt.closed", "fake session: not connected", {retriable: true}));
		this.unsubscribes.push([...topics]);
		return Promise.resolve();
	}

	disconnect(): void {
		this.#end("disconnect");
	}

	close(): void {
		this.#end("close");
	}

	/** CONNACK 0. */
	connack(sessionPresent = false): void {
		this.connected = true;
		this.options.onConnect?.({sessionPresent});
	}

	/** CONNACK with a refusal code, as the real client reports it. */
	refuse(code: number): void {
		this.#end("dropped", new AzureIoTError("mqtt.connack", `fake hub refused the connection: CONNACK return code ${code}`, {status: code, retriable: code === 3}));
	}

	/** The link dies (or the hub closes it). */
	drop(error = new AzureIoTError("network", "fake hub: connection reset", {retriable: true})): void {
		this.#end("dropped", error);
	}

	/** An incoming PUBLISH; returns what the client's onMessage returned (the PUBACK waits for it). */
	deliver(topic: string, payload: Uint8Array | string | object = new Uint8Array(0), qos: QoS = 0): void | Promise<void> {
		const bytes = payload instanceof Uint8Array ? payload
			: new TextEncoder().encode(typeof payload === "string" ? payload : JSON.stringify(payload));
		const message: MqttMessage = {topic, payload: bytes, qos, retain: false, dup: false};
		return this.options.onMessage?.(message);
	}

	/** Publishes on topics starting with `prefix`. */
	published(prefix: string): RecordedPublish[] {
		return this.publishes.filter(p => p.topic.startsWith(prefix));
	}

	#end(how: "disconnect" | "close" | "dropped", cause?: AzureIoTError): void {
		if (this.ended) return;
		this.ended = how;
		this.connected = false;
		const pending = [...this.#pending];
		this.#pending.clear();
		for (const p of pending) p.reject(new AzureIoTError("mqtt.closed", `fake session ended (${how})`, {retriable: true}));
		if (how === "dropped" && cause) this.options.onClose?.(cause);
	}
}

/** A createSession for HubOptions / ProvisioningOptions that keeps every session it makes. */
export function sessionFactory(fake: FakeSessionOptions = {}): {sessions: FakeSession[]; createSession(options: MqttClientOptions): MqttSession; last(): FakeSession} {
	const sessions: FakeSession[] = [];
	return {
		sessions,
		createSession: (options: MqttClientOptions) => {
			const session = new FakeSession(options, fake);
			sessions.push(session);
			return session;
		},
		last: () => {
			const session = sessions.at(-1);
			if (!session) throw new Error("no session was created");
			return session;
		},
	};
}
