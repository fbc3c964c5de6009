/*
 * IoT Hub's MQTT topic names and property bags, built and parsed in one place so the client never
 * concatenates topics by hand. Everything here is pure and string-based; no I/O.
 */

import {decodeComponent as decode, parseQuery} from "./query.js";

export const API_VERSION = "2021-04-12";

/** The five topics a device needs; the hub allows at most five subscriptions per device. */
export const TWIN_RESPONSES = "$iothub/twin/res/#";
export const DESIRED_PATCHES = "$iothub/twin/PATCH/properties/desired/#";
export const METHOD_REQUESTS = "$iothub/methods/POST/#";

export function c2dSubscription(deviceId: string): string {
	return `devices/${deviceId}/messages/devicebound/#`;
}

export function hubUsername(hubName: string, deviceId: string, modelId?: string): string {
	let username = `${hubName}/${deviceId}/?api-version=${API_VERSION}`;
	if (modelId) username += `&model-id=${encodeURIComponent(modelId)}`;
	return username;
}

export function telemetryTopic(deviceId: string, bag: string): string {
	return `devices/${deviceId}/messages/events/${bag}`;
}

export function twinGetTopic(rid: string): string {
	return `$iothub/twin/GET/?$rid=${rid}`;
}

export function reportedPatchTopic(rid: string): string {
	return `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`;
}

export function methodResponseTopic(status: number, rid: string): string {
	return `$iothub/methods/res/${status}/?$rid=${encodeURIComponent(rid)}`;
}

export interface TelemetryBagFields {
	messageId: string;
	correlationId?: string;
	contentType?: string;
	contentEncoding?: string;
	/** IoT Plug and Play component name, sent as `$.sub`. */
	component?: string;
	properties?: Readonly<Record<string, string>>;
}

/**
 * `$.mid=…&$.cid=…&$.ct=…&$.ce=…&$.sub=…&key=value…`: system property names are written as is
 * (as Microsoft's Embedded C SDK does), every value and every application property name is
 * URL-encoded, so `application/json` travels as `application%2Fjson`. Throws URIError for strings
 * that are not valid UTF-16 (lone surrogates); callers turn that into a config error.
 */
export function telemetryBag(fields: TelemetryBagFields): string {
	const parts: string[] = [`$.mid=${encodeURIComponent(fields.messageId)}`];
	if (fields.correlationId !== undefined) parts.push(`$.cid=${encodeURIComponent(fields.correlationId)}`);
	if (fields.contentType !== undefined) parts.push(`$.ct=${encodeURIComponent(fields.contentType)}`);
	if (fields.contentEncoding !== undefined) parts.push(`$.ce=${encodeURIComponent(fields.contentEncoding)}`);
	if (fields.component !== undefined) parts.push(`$.sub=${encodeURIComponent(fields.component)}`);
	if (fields.properties) {
		for (const key of Object.keys(fields.properties))
			parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(fields.properties[key]))}`);
	}
	return parts.join("&");
}

export interface ParsedBag {
	/** Application properties. */
	properties: Record<string, string>;
	/** `$.mid`, `$.to`, `$.cid`, `$.ct`, `$.ce`, `$.exp`, `$.uid` and `iothub-*` (e.g. `iothub-ack`), names as sent. */
	systemProperties: Record<string, string>;
}

export function isSystemProperty(name: string): boolean {
	return name.startsWith("$.") || name.startsWith("iothub-");
}

export function parsePropertyBag(bag: string): ParsedBag {
	const properties: Record<string, string> = {};
	const systemProperties: Record<string, string> = {};
	const all = parseQuery(bag.startsWith("?") ? bag.slice(1) : bag);
	for (const key of Object.keys(all)) {
		if (isSystemProperty(key)) systemProperties[key] = all[key];
		else properties[key] = all[key];
	}
	return {properties, systemProperties};
}

/** The property bag of a cloud-to-device message, or undefined if the topic is not one. */
export function c2dBag(topic: string, deviceId: string): string | undefined {
	const prefix = `devices/${deviceId}/messages/devicebound/`;
	if (topic.startsWith(prefix)) return topic.slice(prefix.length);
	// The hub percent-encodes nothing in the device id part, but be lenient about a device id that differs in case or encoding.
	const marker = "/messages/devicebound";
	const at = topic.indexOf(marker);
	if (topic.startsWith("devices/") && at > 0) {
		const rest = topic.slice(at + marker.length);
		return rest.startsWith("/") ? rest.slice(1) : rest;
	}
	return undefined;
}

function splitQuery(topic: string, prefix: string): {path: string; query: Record<string, string>} | undefined {
	if (!topic.startsWith(prefix)) return undefined;
	const rest = topic.slice(prefix.length);
	const q = rest.indexOf("?");
	const path = q < 0 ? rest : rest.slice(0, q);
	const query = parseQuery(q < 0 ? "" : rest.slice(q + 1));
	return {path: path.endsWith("/") ? path.slice(0, -1) : path, query};
}

export interface TwinResponse {
	status: number;
	rid: string;
	/** `$version` of a reported-properties patch reply. */
	version?: number;
}

/** `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`. */
export function parseTwinResponse(topic: string): TwinResponse | undefined {
	const parts = splitQuery(topic, "$iothub/twin/res/");
	if (!parts || !/^\d{3}$/.test(parts.path)) return undefined;
	const rid = parts.query["$rid"];
	if (rid === undefined) return undefined;
	const response: TwinResponse = {status: Number(parts.path), rid};
	const version = parts.query["$version"];
	if (version !== undefined && /^\d+$/.test(version)) response.version = Number(version);
	return response;
}

export function isDesiredPatch(topic: string): boolean {
	return topic.startsWith("$iothub/twin/PATCH/properties/desired/");
}

/** `$iothub/twin/PATCH/properties/desired/?$version={n}`: the version, if the topic carries one. */
export function desiredPatchVersion(topic: string): number | undefined {
	const parts = splitQuery(topic, "$iothub/twin/PATCH/properties/desired/");
	const version = parts?.query["$version"];
	return version !== undefined && /^\d+$/.test(version) ? Number(version) : undefined;
}

export interface MethodRequestTopic {
	name: string;
	rid: string;
}

/** `$iothub/methods/POST/{name}/?$rid={rid}`. */
export function parseMethodTopic(topic: string): MethodRequestTopic | undefined {
	const parts = splitQuery(topic, "$iothub/methods/POST/");
	if (!parts || !parts.path || parts.path.includes("/")) return undefined;
	const rid = parts.query["$rid"];
	if (!rid) return undefined;
	return {name: decode(parts.path), rid};
}

for (const f of [c2dSubscription, hubUsername, telemetryTopic, twinGetTopic, reportedPatchTopic, methodResponseTopic,
	telemetryBag, isSystemProperty, parsePropertyBag, c2dBag, parseTwinResponse, isDesiredPatch,
	desiredPatchVersion, parseMethodTopic])
	Object.freeze(f);
