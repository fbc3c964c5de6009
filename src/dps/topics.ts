/*
 * DPS topics and reply parsing (protocol note §1), in this one module: the provisioning client
 * never builds or looks into a topic string. Pure functions, so the parsing of untrusted server
 * replies can be fed anything in tests.
 */
import {AzureIoTError} from "../errors.js";
import {encodeComponent, parseQuery} from "../query.js";

export const DPS_API_VERSION = "2019-03-31";
export const DPS_RESPONSE_FILTER = "$dps/registrations/res/#";
const RESPONSE_PREFIX = "$dps/registrations/res/";

/** `{idScope}/registrations/{registrationId}/api-version=...`, and the client's version as the Embedded C SDK adds it. */
export function dpsUsername(idScope: string, registrationId: string, clientVersion?: string): string {
	const username = `${idScope}/registrations/${registrationId}/api-version=${DPS_API_VERSION}`;
	return clientVersion ? `${username}&ClientVersion=${encodeComponent(clientVersion)}` : username;
}

export function registerTopic(rid: string): string {
	return `$dps/registrations/PUT/iotdps-register/?$rid=${encodeURIComponent(rid)}`;
}

export function pollTopic(rid: string, operationId: string): string {
	return `$dps/registrations/GET/iotdps-get-operationstatus/?$rid=${encodeURIComponent(rid)}&operationId=${encodeURIComponent(operationId)}`;
}

export interface DpsReplyTopic {
	status: number;
	rid: string;
	/** Seconds, where the server said. */
	retryAfter?: number;
}

/** Parses `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]`; undefined for other topics. */
export function parseReplyTopic(topic: string): DpsReplyTopic | undefined {
	if (!topic.startsWith(RESPONSE_PREFIX)) return undefined;
	const rest = topic.slice(RESPONSE_PREFIX.length);
	const slash = rest.indexOf("/");
	if (slash < 1) return undefined;
	const status = Number(rest.slice(0, slash));
	if (!Number.isInteger(status) || status < 100 || status > 999) return undefined;
	const query = rest.slice(slash + 1);
	const params = parseQuery(query.startsWith("?") ? query.slice(1) : query);
	const rid = params["$rid"];
	if (rid === undefined) return undefined;
	const reply: DpsReplyTopic = {status, rid};
	const retryAfter = Number(params["retry-after"]);
	if (params["retry-after"] && Number.isFinite(retryAfter) && retryAfter >= 0) reply.retryAfter = retryAfter;
	return reply;
}

export type RegistrationStatus = "unassigned" | "assigning" | "assigned" | "failed" | "disabled";

/** Everything DPS says of a registration (the fields of `registrationState`, plus the operation). */
export interface RegistrationResult {
	registrationId: string;
	operationId?: string;
	status: RegistrationStatus | string;
	assignedHub?: string;
	deviceId?: string;
	createdDateTimeUtc?: string;
	lastUpdatedDateTimeUtc?: string;
	substatus?: string;
	etag?: string;
	errorCode?: number;
	errorMessage?: string;
	payload?: unknown;
}

export interface OperationReply {
	operationId?: string;
	status: string;
	result?: RegistrationResult;
}

function badReply(what: string): AzureIoTError {
	return new AzureIoTError("dps.badReply", `DPS sent a malformed reply (${what}). This is a service-side fault; the client retries with backoff`, {retriable: true});
}

const optionalString = (o: Record<string, unknown>, k: string) => typeof o[k] === "string" ? o[k] as string : undefined;

/** Parses the JSON of a 200/202 reply; throws dps.badReply (retriable) when it is not what Azure sends. */
export function parseOperationReply(body: string, registrationId: string): OperationReply {
	let json: unknown;
	try {
		json = JSON.parse(body);
	}
	catch {
		throw badReply("not JSON");
	}
	if (!json || typeof json !== "object" || Array.isArray(json)) throw badReply("not a JSON object");
	const o = json as Record<string, unknown>;
	const status = optionalString(o, "status");
	if (!status) throw badReply("no status");
	const reply: OperationReply = {status, operationId: optionalString(o, "operationId")};
	const state = o.registrationState;
	if (state !== undefined && state !== null) {
		if (typeof state !== "object" || Array.isArray(state)) throw badReply("registrationState is not an object");
		const s = state as Record<string, unknown>;
		const result: RegistrationResult = {
			registrationId: optionalString(s, "registrationId") ?? registrationId,
			operationId: reply.operationId,
			status: optionalString(s, "status") ?? status,
		};
		for (const key of ["assignedHub", "deviceId", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", "substatus", "etag", "errorMessage"] as const) {
			const v = optionalString(s, key);
			if (v !== undefined) result[key] = v;
		}
		if (typeof s.errorCode === "number") result.errorCode = s.errorCode;
		if (s.payload !== undefined) result.payload = s.payload;
		reply.result = result;
	}
	return reply;
}

export interface DpsErrorBody {
	errorCode?: number;
	message?: string;
	trackingId?: string;
}

/** Error replies carry `{"errorCode","trackingId","message","timestampUtc"}`; anything else is tolerated. */
export function parseErrorBody(body: string): DpsErrorBody {
	try {
		const o = JSON.parse(body);
		if (o && typeof o === "object") {
			return {
				errorCode: typeof o.errorCode === "number" ? o.errorCode : undefined,
				message: typeof o.message === "string" ? o.message.slice(0, 200) : undefined,
				trackingId: typeof o.trackingId === "string" ? o.trackingId : undefined,
			};
		}
	}
	catch {
		// not JSON: the status alone says enough
	}
	return {};
}
