/*
 * IoT Hub's MQTT topic names and property bags, built and parsed in this one module: the rest of the
 * client never concatenates or looks into a topic string. Every topic the hub sends a device is
 * classified into one tagged result (as the Embedded C SDK's *_parse_received_topic functions do,
 * one per feature). Pure and string-based; no I/O.
 */
import {isDigits} from "../chars.js";
import {decodeComponent as decode, encodeComponent as encodeValue, parseQuery} from "../query.js";

export const API_VERSION = "2021-04-12";

/** The topics a device subscribes to; the hub allows at most five subscriptions per device. */
export const TWIN_RESPONSES = "$iothub/twin/res/#";
export const DESIRED_PATCHES = "$iothub/twin/PATCH/properties/desired/#";
export const METHOD_REQUESTS = "$iothub/methods/POST/#";

const TWIN_RESPONSE_PREFIX = "$iothub/twin/res/";
const DESIRED_PREFIX = "$iothub/twin/PATCH/properties/desired/";
const METHOD_PREFIX = "$iothub/methods/POST/";
const C2D_MARKER = "/messages/devicebound";

export function c2dSubscription(deviceId: string): string {
	return `devices/${deviceId}/messages/devicebound/#`;
}

/**
 * The hub's CONNECT user name. `clientType` is announced the way Microsoft's SDKs announce theirs
 * (`DeviceClientType=azsdk-c%2F1.5.0`): the hub keeps it for its diagnostics.
 */
export function hubUsername(hubHost: string, deviceId: string, modelId?: string, clientType?: string): string {
	let username = `${hubHost}/${deviceId}/?api-version=${API_VERSION}`;
	if (clientType) username += `&DeviceClientType=${encodeValue(clientType)}`;
	if (modelId) username += `&model-id=${encodeValue(modelId)}`;
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
 * percent-encoded as Microsoft's SDKs do, so `application/json` travels as `application%2Fjson`.
 * Throws URIError for strings that are not valid UTF-16 (lone surrogates); callers turn that into a
 * config error.
 */
export function telemetryBag(fields: TelemetryBagFields): string {
	const parts: string[] = [`$.mid=${encodeValue(fields.messageId)}`];
	if (fields.correlationId !== undefined) parts.push(`$.cid=${encodeValue(fields.correlationId)}`);
	if (fields.contentType !== undefined) parts.push(`$.ct=${encodeValue(fields.contentType)}`);
	if (fields.contentEncoding !== undefined) parts.push(`$.ce=${encodeValue(fields.contentEncoding)}`);
	if (fields.component !== undefined) parts.push(`$.sub=${encodeValue(fields.component)}`);
	if (fields.properties) {
		for (const key of Object.keys(fields.properties))
			parts.push(`${encodeValue(key)}=${encodeValue(String(fields.properties[key]))}`);
	}
	return parts.join("&");
}

/** Whether an application may not use a property name: the system properties' `$.` and `iothub-` prefixes. */
export function isSystemProperty(name: string): boolean {
	return name.startsWith("$.") || name.startsWith("iothub-");
}

export interface ParsedBag {
	/** Application properties. */
	properties: Record<string, string>;
	/** `$.mid`, `$.to`, `$.cid`, `$.ct`, `$.ce`, `$.exp`, `$.uid` and `iothub-*` (e.g. `iothub-ack`), names as sent. */
	systemProperties: Record<string, string>;
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

/** What a topic the hub sent is. */
export type HubTopic =
	/** `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`: the answer to a twin GET or reported patch. */
	| {kind: "twinResponse"; status: number; rid: string; version?: number}
	/** `$iothub/twin/PATCH/properties/desired/?$version={n}`: a desired-properties update. */
	| {kind: "desired"; version?: number}
	/** `$iothub/methods/POST/{name}/?$rid={rid}`; `component*command` names split as IoT Plug and Play does. */
	| {kind: "method"; name: string; rid: string; component?: string; command: string}
	/** `devices/{id}/messages/devicebound/{bag}`: a cloud-to-device message. */
	| {kind: "c2d"; bag: string}
	/** Anything else, or a known prefix that does not parse (a twin reply without $rid, say). */
	| {kind: "unknown"; reason: string};

export type HubTopicKind = HubTopic["kind"];

/**
 * The kind of a topic without parsing its parameters: cheap, for deciding how much of a message to
 * take before its payload arrives. Malformed topics with a known prefix get their prefix's kind
 * here and "unknown" from classifyTopic.
 */
export function topicKind(topic: string, deviceId: string): HubTopicKind {
	if (topic.startsWith(TWIN_RESPONSE_PREFIX)) return "twinResponse";
	if (topic.startsWith(DESIRED_PREFIX)) return "desired";
	if (topic.startsWith(METHOD_PREFIX)) return "method";
	return c2dBag(topic, deviceId) === undefined ? "unknown" : "c2d";
}

export function classifyTopic(topic: string, deviceId: string): HubTopic {
	if (topic.startsWith(TWIN_RESPONSE_PREFIX)) {
		const parts = splitQuery(topic, TWIN_RESPONSE_PREFIX);
		const rid = parts.query["$rid"];
		if (!(parts.path.length === 3 && isDigits(parts.path)) || rid === undefined) return {kind: "unknown", reason: "a twin response without a status or $rid"};
		const response: HubTopic = {kind: "twinResponse", status: Number(parts.path), rid};
		const version = parts.query["$version"];
		if (version !== undefined && isDigits(version)) response.version = Number(version);
		return response;
	}
	if (topic.startsWith(DESIRED_PREFIX)) {
		const version = splitQuery(topic, DESIRED_PREFIX).query["$version"];
		return version !== undefined && isDigits(version) ? {kind: "desired", version: Number(version)} : {kind: "desired"};
	}
	if (topic.startsWith(METHOD_PREFIX)) {
		const parts = splitQuery(topic, METHOD_PREFIX);
		const rid = parts.query["$rid"];
		if (!parts.path || parts.path.includes("/") || !rid) return {kind: "unknown", reason: "a method request without a name or $rid"};
		const name = decode(parts.path);
		// IoT Plug and Play: `thermostat1*getMaxMinReport`, split at the first `*` (as the Embedded C SDK does).
		const star = name.indexOf("*");
		if (star < 0) return {kind: "method", name, rid, command: name};
		// An empty component name (`*reboot`) is the root component, as there.
		if (star === 0) return {kind: "method", name, rid, command: name.slice(1)};
		return {kind: "method", name, rid, component: name.slice(0, star), command: name.slice(star + 1)};
	}
	const bag = c2dBag(topic, deviceId);
	if (bag !== undefined) return {kind: "c2d", bag};
	return {kind: "unknown", reason: "not a topic IoT Hub sends a device"};
}

/** The property bag of a cloud-to-device message, or undefined if the topic is not one. */
function c2dBag(topic: string, deviceId: string): string | undefined {
	const prefix = `devices/${deviceId}/messages/devicebound/`;
	if (topic.startsWith(prefix)) return topic.slice(prefix.length);
	// The device id part may differ in encoding from ours (the hub percent-encodes some characters).
	const at = topic.indexOf(C2D_MARKER);
	if (topic.startsWith("devices/") && at > 0 && topic.indexOf("/", "devices/".length) === at) {
		const rest = topic.slice(at + C2D_MARKER.length);
		if (rest === "") return "";
		return rest.startsWith("/") ? rest.slice(1) : undefined;
	}
	return undefined;
}

function splitQuery(topic: string, prefix: string): {path: string; query: Record<string, string>} {
	const rest = topic.slice(prefix.length);
	const q = rest.indexOf("?");
	const path = q < 0 ? rest : rest.slice(0, q);
	const query = parseQuery(q < 0 ? "" : rest.slice(q + 1));
	return {path: path.endsWith("/") ? path.slice(0, -1) : path, query};
}

for (const f of [c2dSubscription, hubUsername, telemetryTopic, twinGetTopic, reportedPatchTopic, methodResponseTopic,
	telemetryBag, isSystemProperty, parsePropertyBag, topicKind, classifyTopic])
	Object.freeze(f);
