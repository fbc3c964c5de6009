/*
 * A raw MQTT client for examining the emulator, with its own minimal SAS computation: it shares
 * nothing with src/ so that a mistake there cannot hide one in the emulator.
 */
import * as crypto from "node:crypto";
import mqtt, {type IClientOptions, type MqttClient} from "mqtt";
import type {Emulator} from "../../emulator/index.js";

export function sign(keyBase64: string, sr: string, se: number): string {
	return crypto.createHmac("sha256", Buffer.from(keyBase64, "base64")).update(`${sr}\n${se}`).digest("base64");
}

/** `SharedAccessSignature sr=...&sig=...&se=...[&skn=...]` with an URL-encoded sr, signed as sent. */
export function sasToken(resource: string, keyBase64: string, se: number, skn?: string): string {
	const sr = encodeURIComponent(resource);
	return `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sign(keyBase64, sr, se))}&se=${se}${skn ? `&skn=${skn}` : ""}`;
}

export function deriveKey(groupKeyBase64: string, registrationId: string): string {
	return crypto.createHmac("sha256", Buffer.from(groupKeyBase64, "base64")).update(registrationId).digest("base64");
}

export const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

let counter = 0;
export function uniqueId(prefix: string): string {
	return `${prefix}-${process.pid}-${++counter}`;
}

export interface RawConnect {
	clientId: string;
	username: string;
	/** Absent for X.509 (the client certificate goes in the TLS options). */
	password?: string;
	clean?: boolean;
	keepalive?: number;
	ca?: string;
	protocolVersion?: 4 | 5;
}

export class ConnackError extends Error {
	constructor(readonly returnCode: number) {
		super(`CONNACK ${returnCode}`);
	}
}

const closedClients = new WeakSet<MqttClient>();

/** Connects once (no reconnects); rejects with ConnackError on a refused CONNACK. */
export function connect(emulator: Emulator, c: RawConnect, extra: IClientOptions = {}): Promise<MqttClient> {
	return new Promise((resolve, reject) => {
		const client = mqtt.connect(`mqtts://localhost:${emulator.port}`, {
			ca: c.ca ?? emulator.caPem,
			servername: "localhost",
			clientId: c.clientId,
			username: c.username,
			password: c.password,
			clean: c.clean ?? true,
			keepalive: c.keepalive ?? 60,
			protocolVersion: c.protocolVersion ?? 4,
			reconnectPeriod: 0,
			connectTimeout: 10_000,
			...extra,
		});
		const fail = (error: Error & {code?: unknown}) => {
			client.end(true);
			reject(typeof error.code === "number" ? new ConnackError(error.code) : error);
		};
		client.once("error", fail);
		client.once("close", () => fail(new Error("closed before CONNACK")));
		client.once("connect", () => {
			client.removeAllListeners("error");
			client.removeAllListeners("close");
			client.on("error", () => {});
			client.once("close", () => closedClients.add(client));
			resolve(client);
		});
	});
}

export function dpsCredentials(emulator: Emulator, registrationId: string, key: string, se = inAnHour()): RawConnect {
	return {
		clientId: registrationId,
		username: `${emulator.idScope}/registrations/${registrationId}/api-version=2019-03-31`,
		password: sasToken(`${emulator.idScope}/registrations/${registrationId}`, key, se, "registration"),
	};
}

export function hubCredentials(emulator: Emulator, deviceId: string, key: string, options: {se?: number; modelId?: string; clean?: boolean} = {}): RawConnect {
	return {
		clientId: deviceId,
		username: `${emulator.hubName}/${deviceId}/?api-version=2021-04-12${options.modelId ? `&model-id=${encodeURIComponent(options.modelId)}` : ""}`,
		password: sasToken(`${emulator.hubName}/devices/${deviceId}`, key, options.se ?? inAnHour()),
		clean: options.clean ?? true,
	};
}

export interface Received {
	topic: string;
	payload: Buffer;
	packet: {qos: number; dup: boolean; messageId?: number};
}

/** Resolves with the next message (already received ones first) matching `match`. */
export class Inbox {
	readonly messages: Received[] = [];
	#waiters: {match: (m: Received) => boolean; resolve: (m: Received) => void}[] = [];

	constructor(client: MqttClient) {
		client.on("message", (topic, payload, packet) => {
			const m: Received = {topic, payload, packet: {qos: packet.qos, dup: packet.dup, messageId: packet.messageId}};
			const waiter = this.#waiters.find(w => w.match(m));
			if (waiter) {
				this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
				waiter.resolve(m);
			}
			else this.messages.push(m);
		});
	}

	next(match: (m: Received) => boolean = () => true, timeoutMs = 10_000): Promise<Received> {
		const index = this.messages.findIndex(match);
		if (index >= 0) return Promise.resolve(this.messages.splice(index, 1)[0]);
		return new Promise((resolve, reject) => {
			const waiter = {match, resolve: (m: Received) => { clearTimeout(timer); resolve(m); }};
			const timer = setTimeout(() => {
				this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
				reject(new Error(`no matching message within ${timeoutMs} ms`));
			}, timeoutMs);
			this.#waiters.push(waiter);
		});
	}
}

/** Resolves when the server closes the connection (rejects after the safety bound). */
export function closed(client: MqttClient, timeoutMs = 10_000): Promise<void> {
	if (closedClients.has(client)) return Promise.resolve();
	return new Promise((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
		client.once("close", () => {
			clearTimeout(timer);
			resolve();
		});
	});
}

export function subscribe(client: MqttClient, topic: string, qos: 0 | 1 = 1): Promise<number> {
	return new Promise((resolve, reject) => {
		client.subscribe(topic, {qos}, (error, granted) => (error ? reject(error) : resolve(granted?.[0]?.qos ?? -1)));
	});
}

export function publish(client: MqttClient, topic: string, payload: string | Buffer, qos: 0 | 1 | 2 = 1): Promise<void> {
	return new Promise((resolve, reject) => client.publish(topic, payload, {qos}, error => (error ? reject(error) : resolve())));
}

/** Closes the client; mqtt.js never calls back for a connection the server already closed. */
export function end(client: MqttClient | undefined): Promise<void> {
	if (!client) return Promise.resolve();
	return new Promise(resolve => {
		const timer = setTimeout(resolve, 1000);
		client.end(true, {}, () => {
			clearTimeout(timer);
			resolve();
		});
		if (closedClients.has(client)) {
			clearTimeout(timer);
			resolve();
		}
	});
}

/** Polls `check` until true (a safety bound, not a timing assertion). */
export async function eventually(check: () => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
	const until = Date.now() + timeoutMs;
	while (!check()) {
		if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
		await new Promise(r => setTimeout(r, 20));
	}
}

export interface DpsReply {
	status: number;
	query: URLSearchParams;
	body: any;
	text: string;
}

export function parseDpsReply(m: Received): DpsReply {
	const match = /^\$dps\/registrations\/res\/(\d+)\/\?(.*)$/.exec(m.topic);
	if (!match) throw new Error(`unexpected DPS topic ${m.topic}`);
	const text = m.payload.toString("utf8");
	let body: unknown;
	try {
		body = JSON.parse(text);
	}
	catch {
		body = undefined;
	}
	return {status: Number(match[1]), query: new URLSearchParams(match[2]), body, text};
}

/** A DPS session over the raw client: subscribe, then register/poll requests one at a time. */
export class DpsSession {
	#rid = 0;
	private constructor(readonly client: MqttClient, readonly inbox: Inbox) {}

	static async open(emulator: Emulator, registrationId: string, key: string, se?: number): Promise<DpsSession> {
		const client = await connect(emulator, dpsCredentials(emulator, registrationId, key, se));
		const inbox = new Inbox(client);
		await subscribe(client, "$dps/registrations/res/#");
		return new DpsSession(client, inbox);
	}

	async request(topic: string, body: string): Promise<DpsReply> {
		const rid = String(++this.#rid);
		await publish(this.client, topic.replace("{rid}", rid), body);
		return parseDpsReply(await this.inbox.next(m => new URLSearchParams(m.topic.split("?")[1]).get("$rid") === rid));
	}

	register(registrationId: string, payload?: unknown): Promise<DpsReply> {
		return this.request("$dps/registrations/PUT/iotdps-register/?$rid={rid}", JSON.stringify(payload === undefined ? {registrationId} : {registrationId, payload}));
	}

	poll(operationId: string): Promise<DpsReply> {
		return this.request(`$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId=${encodeURIComponent(operationId)}`, "");
	}

	/** register, then poll until a 200 (bounded). */
	async provision(registrationId: string, payload?: unknown): Promise<DpsReply> {
		const first = await this.register(registrationId, payload);
		if (first.status !== 202) return first;
		for (let i = 0; i < 10; i++) {
			const reply = await this.poll(first.body.operationId);
			if (reply.status !== 202) return reply;
		}
		throw new Error("still assigning after 10 polls");
	}

	close(): Promise<void> {
		return end(this.client);
	}
}

/** Provisions over raw MQTT and returns the assigned device id. */
export async function provision(emulator: Emulator, registrationId: string, key: string): Promise<string> {
	const dps = await DpsSession.open(emulator, registrationId, key);
	try {
		const reply = await dps.provision(registrationId);
		if (reply.status !== 200 || reply.body?.status !== "assigned") throw new Error(`provisioning failed: ${reply.status} ${reply.text}`);
		return reply.body.registrationState.deviceId;
	}
	finally {
		await dps.close();
	}
}
