/*
 * The MQTT 3.1.1 session the DPS and hub clients are written against. The SDK's own `mqtt` module
 * cannot serve: it is QoS 0 only in practice (PUBACK ignored, incoming QoS 1 never acknowledged,
 * subscriptions at QoS 0) and always uses a clean session, so telemetry could be lost silently and
 * cloud-to-device messages queued while offline would be dropped.
 */
import type {ConnectOptions, HostAdapter} from "../host.js";
import type {AzureIoTError} from "../errors.js";

export type QoS = 0 | 1;

export interface MqttMessage {
	/** Empty when the topic itself was too long to buffer (the message is dropped then). */
	topic: string;
	/** Empty when dropped. */
	payload: Uint8Array;
	qos: QoS;
	retain: boolean;
	dup: boolean;
	/**
	 * The payload was over the limit for its topic (incomingLimit) and was skipped as it streamed
	 * in, never buffered; `size` says how large it was. A QoS 1 message is acknowledged all the same,
	 * so that the server does not send it again.
	 */
	dropped?: true;
	size?: number;
}

export interface Subscription {
	topic: string;
	qos: QoS;
}

export interface PublishOptions {
	qos?: QoS;
	retain?: boolean;
}

export interface MqttClientOptions {
	adapter: HostAdapter;
	server: ConnectOptions;
	clientId: string;
	username?: string;
	password?: string;
	/** Default true. Azure's hub keeps queued cloud-to-device messages only with false. */
	clean?: boolean;
	/** Default 60; 0 disables keep-alive. Azure allows at most 1177. */
	keepAliveSeconds?: number;
	/** TLS handshake plus CONNACK. Default 30000. */
	connectTimeoutMs?: number;
	/** How long SUBACK, UNSUBACK, PUBACK and PINGRESP may take. Default 30000. */
	ackTimeoutMs?: number;
	/**
	 * The largest incoming packet other than PUBLISH (larger ones close the connection with
	 * mqtt.tooLarge), and the payload limit of a PUBLISH when incomingLimit is not given.
	 * Default 262144 + 1024.
	 */
	maxIncomingPacketBytes?: number;
	/**
	 * The largest payload taken for a PUBLISH on `topic`. Larger ones are consumed without being
	 * buffered and handed to onMessage with `dropped: true` (see MqttMessage).
	 */
	incomingLimit?(topic: string): number;
	/** Publishes larger than this are refused with mqtt.tooLarge. Default 262144 + 1024. */
	maxOutgoingPacketBytes?: number;
	/** CONNACK accepted. */
	onConnect?(info: {sessionPresent: boolean}): void;
	/** A PUBLISH arrived. For QoS 1 the PUBACK is sent once the returned value (or promise) settles. */
	onMessage?(message: MqttMessage): void | Promise<void>;
	/** The session ended for any reason other than this side's disconnect() or close(). Called at most once. */
	onClose?(error: AzureIoTError): void;
}

export interface MqttSession {
	readonly connected: boolean;
	/** QoS 0 resolves once written; QoS 1 once PUBACK arrives. Rejects with mqtt.closed if the session ends first. */
	publish(topic: string, payload: Uint8Array | string, options?: PublishOptions): Promise<void>;
	/** publish() without a promise (cheaper while in flight): done(undefined) when publish() would resolve, done(error) when it would reject; never from inside the call. Optional: a session without it is driven through publish(). */
	send?(topic: string, payload: Uint8Array | string, qos: QoS, done: (error: AzureIoTError | undefined) => void): void;
	/** Resolves with the granted QoS of each; rejects with mqtt.refused if any topic got 0x80. */
	subscribe(subscriptions: readonly Subscription[]): Promise<QoS[]>;
	unsubscribe(topics: readonly string[]): Promise<void>;
	/**
	 * Sends what was already asked for (a PUBLISH, an UNSUBSCRIBE not yet written), then DISCONNECT,
	 * and closes. Operations still awaiting an acknowledgement reject with mqtt.closed.
	 */
	disconnect(): void;
	/** Closes at once without DISCONNECT (a dead link, a test). */
	close(): void;
}
