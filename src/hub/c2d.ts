/*
 * Cloud-to-device messages. On IoT Hub the PUBACK completes a message: the session sends it once the
 * handler returns (or its promise settles), and also for a message over the device's limit, which
 * is refused (skipped unread) and reported with its size, so that the hub does not deliver it again
 * after every reconnect.
 */
import {utf8Decode} from "../encoding.js";
import type {MqttMessage} from "../mqtt/types.js";
import {parsePropertyBag} from "./topics.js";

export interface CloudMessage {
	readonly body: Uint8Array;
	text(): string;
	/** Application properties. */
	readonly properties: Readonly<Record<string, string>>;
	/** `$.mid`, `$.to`, `$.cid`, `$.ct`, `$.ce`, `$.exp`, `$.uid`, `iothub-*`: names as the hub sends them. */
	readonly systemProperties: Readonly<Record<string, string>>;
	readonly topic: string;
}

/** A cloud-to-device message the device did not take: too large for its limit. */
export interface RefusedMessage {
	readonly size: number;
	readonly limit: number;
	readonly properties: Readonly<Record<string, string>>;
	readonly systemProperties: Readonly<Record<string, string>>;
}

export interface CloudMessageHooks {
	handler?: (message: CloudMessage) => void | Promise<void>;
	refused?: (message: RefusedMessage) => void;
	failed(error: unknown): void;
	maxMessageBytes: number;
}

export function onCloudMessage(bag: string, message: MqttMessage, hooks: CloudMessageHooks): void | Promise<void> {
	const {properties, systemProperties} = parsePropertyBag(bag);
	if (message.dropped) {
		hooks.refused?.(Object.freeze({size: message.size ?? 0, limit: hooks.maxMessageBytes,
			properties: Object.freeze(properties), systemProperties: Object.freeze(systemProperties)}));
		return; // acknowledged (completed) by the session
	}
	const handler = hooks.handler;
	if (!handler) return; // completed: no one asked for cloud-to-device messages
	const body = message.payload;
	const cloudMessage: CloudMessage = Object.freeze({
		body,
		text: () => utf8Decode(body),
		properties: Object.freeze(properties),
		systemProperties: Object.freeze(systemProperties),
		topic: message.topic,
	});
	try {
		const result = handler(cloudMessage);
		if (result && typeof (result as Promise<void>).then === "function") return (result as Promise<void>).then(undefined, hooks.failed);
	}
	catch (error) {
		hooks.failed(error);
	}
}

Object.freeze(onCloudMessage);
