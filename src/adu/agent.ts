/*
 * The reported payloads of the `deviceUpdate` component, written key for key in the order of the
 * Embedded C SDK (az_iot_adu_client_get_agent_state_payload and
 * az_iot_adu_client_get_service_properties_response), so they match its bytes exactly.
 */
import {configError} from "../errors.js";
import {jsonString} from "./json.js";
import type {AgentStateValue} from "./codes.js";

export const ADU_COMPONENT = "deviceUpdate";
export const ADU_CONTRACT_MODEL_ID = "dtmi:azure:iot:deviceUpdateContractModel;2";
export const ADU_AGENT_VERSION = "DU;agent/1.0.0";
export const DEFAULT_COMPAT_PROPERTY_NAMES = "manufacturer,model";
const MAX_CUSTOM_PROPERTIES = 5;   // _az_IOT_ADU_CLIENT_MAX_DEVICE_CUSTOM_PROPERTIES
const MAX_COMPAT_PROPERTIES = 5;   // ADU documents at most 5 compatibility property names
const RESERVED_NAMES = Object.freeze(["manufacturer", "model", "contractModelId", "aduVer", "doVer"]);

export interface CustomProperty {
	readonly name: string;
	readonly value: string;
}

export interface DeviceProperties {
	readonly manufacturer: string;
	readonly model: string;
	/** Up to 5, written after model in this order. */
	readonly customProperties?: readonly CustomProperty[];
	/** Delivery Optimization agent version; written only when non-empty. */
	readonly doVer?: string;
}

export interface UpdateId {
	readonly provider: string;
	readonly name: string;
	readonly version: string;
}

export interface Workflow {
	readonly action: number;
	readonly id: string;
	readonly retryTimestamp?: string;
}

export interface StepResult {
	readonly resultCode: number;
	readonly extendedResultCode: number;
	/** Left out when empty. */
	readonly resultDetails?: string;
}

export interface InstallResult extends StepResult {
	/** One per manifest step, in step order; reported as step_0, step_1, ... */
	readonly stepResults?: readonly StepResult[];
}

export interface AgentReport {
	readonly device: DeviceProperties;
	/** Comma-separated names of the properties ADU groups devices by; defaults to "manufacturer,model". */
	readonly compatPropertyNames?: string;
	readonly state: AgentStateValue;
	/** Echoed when it has an id (az_iot_adu_client leaves it out otherwise). */
	readonly workflow?: Workflow;
	readonly lastInstallResult?: InstallResult;
	readonly installedUpdateId: UpdateId;
}

/** Checks the device's ADU identity once, at the edge; throws a config error naming the field. */
export function checkDeviceProperties(device: DeviceProperties, compatPropertyNames = DEFAULT_COMPAT_PROPERTY_NAMES): void {
	if (typeof device !== "object" || device === null) throw configError("deviceUpdate.device", "is missing", "Give the manufacturer and model the update manifests' compatibility names");
	nonEmpty(device.manufacturer, "deviceUpdate.device.manufacturer");
	nonEmpty(device.model, "deviceUpdate.device.model");
	const custom = device.customProperties ?? [];
	if (!Array.isArray(custom) || custom.length > MAX_CUSTOM_PROPERTIES)
		throw configError("deviceUpdate.device.customProperties", `must be a list of at most ${MAX_CUSTOM_PROPERTIES} {name, value}`, "Drop the extra properties");
	for (let i = 0; i < custom.length; i++) {
		const p = custom[i];
		nonEmpty(p?.name, `deviceUpdate.device.customProperties[${i}].name`);
		if (typeof p.value !== "string") throw configError(`deviceUpdate.device.customProperties[${i}].value`, "is not a string", "Report custom properties as strings");
		if (RESERVED_NAMES.includes(p.name) || custom.findIndex(q => q.name === p.name) !== i)
			throw configError(`deviceUpdate.device.customProperties[${i}].name`, `"${p.name}" is reserved or repeated`, "Give each custom property its own name");
	}
	if (device.doVer !== undefined && typeof device.doVer !== "string") throw configError("deviceUpdate.device.doVer", "is not a string", "Leave it out unless the device runs Delivery Optimization");
	if (typeof compatPropertyNames !== "string") throw configError("deviceUpdate.compatPropertyNames", "is not a string", `Leave it out for "${DEFAULT_COMPAT_PROPERTY_NAMES}"`);
	const names = compatPropertyNames.split(",");
	if (names.length > MAX_COMPAT_PROPERTIES)
		throw configError("deviceUpdate.compatPropertyNames", `names ${names.length} properties`, `ADU groups devices by at most ${MAX_COMPAT_PROPERTIES}`);
	for (const name of names)
		if (name !== "manufacturer" && name !== "model" && !custom.some(p => p.name === name))
			throw configError("deviceUpdate.compatPropertyNames", `names "${name}", which the device does not report`, "List only manufacturer, model or one of the custom properties");
}

/** `installedUpdateId`: a string that holds JSON, as ADU expects, not an object. */
export function updateIdString(id: UpdateId): string {
	return `{"provider":${jsonString(id.provider)},"name":${jsonString(id.name)},"version":${jsonString(id.version)}}`;
}

/** The reported patch `{"deviceUpdate":{"__t":"c","agent":{...}}}`. */
export function agentStatePayload(report: AgentReport): string {
	const device = report.device;
	let out = `{"deviceUpdate":{"__t":"c","agent":{"deviceProperties":{"manufacturer":${jsonString(device.manufacturer)},"model":${jsonString(device.model)}`;
	for (const p of device.customProperties ?? []) out += `,${jsonString(p.name)}:${jsonString(p.value)}`;
	out += `,"contractModelId":${jsonString(ADU_CONTRACT_MODEL_ID)},"aduVer":${jsonString(ADU_AGENT_VERSION)}`;
	if (device.doVer) out += `,"doVer":${jsonString(device.doVer)}`;
	out += `},"compatPropertyNames":${jsonString(report.compatPropertyNames ?? DEFAULT_COMPAT_PROPERTY_NAMES)}`;
	const result = report.lastInstallResult;
	if (result) {
		out += `,"lastInstallResult":{${stepResult(result, "lastInstallResult")},"stepResults":{`;
		const steps = result.stepResults ?? [];
		for (let i = 0; i < steps.length; i++) out += `${i ? "," : ""}"step_${i}":{${stepResult(steps[i], `lastInstallResult.stepResults[${i}]`)}}`;
		out += "}}";
	}
	out += `,"state":${int32(report.state, "state")}`;
	const workflow = report.workflow;
	if (workflow && workflow.id) {
		out += `,"workflow":{"action":${int32(workflow.action, "workflow.action")},"id":${jsonString(workflow.id)}`;
		if (workflow.retryTimestamp) out += `,"retryTimestamp":${jsonString(workflow.retryTimestamp)}`;
		out += "}";
	}
	return out + `,"installedUpdateId":${jsonString(updateIdString(report.installedUpdateId))}}}}`;
}

/** The writable-property acknowledgement of `service`: 200 to accept, 406 to reject; `av` is the desired $version. */
export function serviceAckPayload(version: number, accept: boolean): string {
	return `{"deviceUpdate":{"__t":"c","service":{"ac":${accept ? 200 : 406},"av":${int32(version, "av")},"value":{}}}}`;
}

function stepResult(r: StepResult, where: string): string {
	let out = `"resultCode":${int32(r.resultCode, `${where}.resultCode`)},"extendedResultCode":${int32(r.extendedResultCode, `${where}.extendedResultCode`)}`;
	if (r.resultDetails) out += `,"resultDetails":${jsonString(r.resultDetails)}`;
	return out;
}

// The C writer has int32 fields only; anything else is a bug in the caller, not data to send.
function int32(value: number, where: string): string {
	if (!Number.isInteger(value) || value < -0x80000000 || value > 0x7fffffff)
		throw new RangeError(`deviceUpdate ${where}: ${value} is not a 32-bit integer`);
	return String(value);
}

function nonEmpty(value: unknown, field: string): void {
	if (typeof value !== "string" || value === "") throw configError(field, "is missing or empty", "Set it to the value the update manifests' compatibility uses");
}

Object.freeze(checkDeviceProperties);
Object.freeze(updateIdString);
Object.freeze(agentStatePayload);
Object.freeze(serviceAckPayload);
