/*
 * One device connection. The services answer each device directly on its own connection (never
 * through broker routing, which would hand one device's twin replies to every device subscribed to
 * `$iothub/twin/res/#`), so PUBLISH packets to devices are written here with our own packet ids.
 */
import type {Client} from "aedes";
import mqttPacket from "mqtt-packet";
import type {IPublishPacket, Packet} from "mqtt-packet";
import type {ParsedSas} from "./sas.js";
import {topicMatches} from "./wire.js";
import type {PresentedChain} from "./x509.js";

export type ServiceKind = "dps" | "hub";

export class Session {
	readonly kind: ServiceKind;
	/** Registration id (DPS) or device id (hub), as sent. */
	readonly id: string;
	readonly client: Client;
	readonly clean: boolean;
	/** The SAS token, or for an X.509 connection the certificate chain the device presented. */
	readonly sas?: ParsedSas;
	readonly certificates?: PresentedChain;
	readonly modelId?: string;
	readonly connectedAt = Date.now();
	/** CONNACK 0 sent. */
	ready = false;
	closed = false;
	/** Why the service ended the connection; undefined when the device (or its network) did. */
	closeReason: string | undefined;
	/** Topic filters held, with the granted QoS. */
	readonly subscriptions = new Map<string, number>();
	/** Topic filters requested in SUBSCRIBE packets on this connection, minus those unsubscribed. */
	subscribeCount = 0;
	readonly timers = new Set<NodeJS.Timeout>();
	#nextPacketId = 1;
	#awaitingAck = new Map<number, () => void>();
	#onClose: (() => void)[] = [];

	constructor(init: {kind: ServiceKind; id: string; client: Client; clean: boolean; sas?: ParsedSas; certificates?: PresentedChain; modelId?: string}) {
		this.kind = init.kind;
		this.id = init.id;
		this.client = init.client;
		this.clean = init.clean;
		this.sas = init.sas;
		this.certificates = init.certificates;
		this.modelId = init.modelId;
	}

	/** The QoS a message on `topic` is delivered with, or undefined when not subscribed. */
	grantedQos(topic: string): number | undefined {
		let best: number | undefined;
		for (const [filter, qos] of this.subscriptions) {
			if (topicMatches(filter, topic)) best = best === undefined ? qos : Math.max(best, qos);
		}
		return best;
	}

	#packetId(): number {
		for (let i = 0; i < 65535; i++) {
			const id = this.#nextPacketId;
			this.#nextPacketId = id >= 65535 ? 1 : id + 1;
			if (!this.#awaitingAck.has(id)) return id;
		}
		throw new Error("no free packet identifier");
	}

	/** Writes a PUBLISH to this device; `onAck` runs when its PUBACK arrives (QoS 1). */
	publish(topic: string, payload: Buffer | string, qos: number, options: {dup?: boolean; onAck?: () => void} = {}): boolean {
		if (this.closed || !this.ready) return false;
		const q = qos > 0 ? 1 : 0;
		const packet: IPublishPacket = {cmd: "publish", topic, payload: typeof payload === "string" ? Buffer.from(payload, "utf8") : payload, qos: q, dup: !!options.dup && q > 0, retain: false};
		if (q > 0) {
			packet.messageId = this.#packetId();
			this.#awaitingAck.set(packet.messageId, options.onAck ?? (() => {}));
		}
		this.write(packet);
		return true;
	}

	write(packet: Packet): void {
		if (this.closed) return;
		try {
			this.client.conn.write(mqttPacket.generate(packet));
		}
		catch {
			this.close();
		}
	}

	/** A PUBACK from the device. */
	acked(messageId: number | undefined): void {
		if (messageId === undefined) return;
		const done = this.#awaitingAck.get(messageId);
		if (!done) return;
		this.#awaitingAck.delete(messageId);
		done();
	}

	timer(ms: number, fn: () => void): void {
		const t = setTimeout(() => {
			this.timers.delete(t);
			if (!this.closed) fn();
		}, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
		this.timers.add(t);
	}

	onClose(fn: () => void): void {
		if (this.closed) fn();
		else this.#onClose.push(fn);
	}

	/** Connection gone (either side). */
	ended(): void {
		if (this.closed) return;
		this.closed = true;
		for (const t of this.timers) clearTimeout(t);
		this.timers.clear();
		this.#awaitingAck.clear();
		for (const fn of this.#onClose.splice(0)) fn();
	}

	/** Closes the connection from the service side, as IoT Hub does: no DISCONNECT packet in MQTT 3.1.1. */
	close(reason = "closed by the service"): void {
		this.closeReason ??= reason;
		this.client.close();
		this.ended();
	}
}
