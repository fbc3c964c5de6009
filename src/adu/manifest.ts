/*
 * Reading what the service asks for: the desired `deviceUpdate.service` property and the update
 * manifest inside it, then deciding whether this device takes the update.
 *
 * Tolerant of keys it does not know, everywhere (the C SDK refuses unknown keys in `service`,
 * `workflow`, `updateId`, `instructions` and file entries; the reference agent 1.1 already gets an
 * extra `rootkeyPackageUrl`). Strict about the types and limits of what it uses: a wrong type or a
 * limit passed is an error naming the field.
 */
import {base64Decode} from "../encoding.js";
import type {CustomProperty, DeviceProperties, UpdateId, Workflow} from "./agent.js";
import {Reason, ResultCode, WorkflowAction, type ReasonName} from "./codes.js";
import {field, isObject, parseJsonObject, type JsonObject} from "./json.js";
import {MAX_MANIFEST_BYTES} from "./jws.js";

// The Embedded C SDK's limits (az_iot_adu_internal.h): what one OTA image needs, with room to spare.
export const MAX_STEPS = 2;
export const MAX_FILES_PER_STEP = 2;
export const MAX_FILES = 2;
const MAX_MANIFEST_DEPTH = 16;

export const DEFAULT_HANDLER = "microsoft/swupdate:1";

export interface FileUrl {
	readonly fileId: string;
	readonly url: string;
}

export interface ServiceRequest {
	readonly workflow: Workflow;
	/** Exactly as received: the signature covers these bytes, so it is never re-serialized. */
	readonly updateManifest?: string;
	readonly updateManifestSignature?: string;
	/** In the order received; entries with a null URL are left out. */
	readonly fileUrls: readonly FileUrl[];
}

export interface ManifestFile {
	readonly id: string;
	readonly fileName: string;
	readonly sizeInBytes: number;
	/** Standard base64 of the file's SHA-256, as in the manifest. */
	readonly sha256: string;
}

export interface ManifestStep {
	/** "inline" unless the manifest says otherwise ("reference" steps point at a detached manifest). */
	readonly type: string;
	readonly handler?: string;
	readonly files: readonly string[];
	readonly installedCriteria?: string;
}

export interface UpdateManifest {
	readonly manifestVersion?: string;
	readonly updateId: UpdateId;
	/** Each entry is a set of properties a device must all match; any one entry may match. */
	readonly compatibility: readonly Readonly<Record<string, string>>[];
	readonly steps: readonly ManifestStep[];
	readonly files: readonly ManifestFile[];
	readonly createdDateTime?: string;
}

export type Parsed<T> = {readonly ok: true; readonly value: T} | {readonly ok: false; readonly message: string};

/** Reads `desired.deviceUpdate.service` (already parsed from the twin JSON). */
export function parseServiceRequest(service: unknown): Parsed<ServiceRequest> {
	if (!isObject(service)) return bad("deviceUpdate.service is not an object");
	const wf = field(service, "workflow");
	if (!isObject(wf)) return bad("deviceUpdate.service.workflow is missing or not an object");
	const action = field(wf, "action");
	if (typeof action !== "number" || !Number.isInteger(action)) return bad("deviceUpdate.service.workflow.action is not an integer");
	const id = field(wf, "id");
	if (typeof id !== "string" || id === "") return bad("deviceUpdate.service.workflow.id is missing or empty");
	const retry = field(wf, "retryTimestamp");
	if (retry !== undefined && retry !== null && typeof retry !== "string") return bad("deviceUpdate.service.workflow.retryTimestamp is not a string");
	const workflow: Workflow = retry ? Object.freeze({action, id, retryTimestamp: retry}) : Object.freeze({action, id});

	const manifest = optionalString(service, "updateManifest");
	if (manifest === false) return bad("deviceUpdate.service.updateManifest is not a string or null");
	const signature = optionalString(service, "updateManifestSignature");
	if (signature === false) return bad("deviceUpdate.service.updateManifestSignature is not a string or null");

	const fileUrls: FileUrl[] = [];
	const urls = field(service, "fileUrls");
	if (urls !== undefined && urls !== null) {
		if (!isObject(urls)) return bad("deviceUpdate.service.fileUrls is not an object or null");
		for (const fileId of Object.keys(urls)) {
			const url = urls[fileId];
			if (url === null) continue;
			if (typeof url !== "string" || url === "") return bad(`deviceUpdate.service.fileUrls.${fileId} is not a URL string or null`);
			if (fileUrls.length === MAX_FILES) return bad(`deviceUpdate.service.fileUrls has more than ${MAX_FILES} files; this device takes at most ${MAX_FILES}`);
			fileUrls.push(Object.freeze({fileId, url}));
		}
	}
	if (action === WorkflowAction.applyDeployment && (manifest === undefined || signature === undefined))
		return bad("deviceUpdate.service: action 3 (apply deployment) needs updateManifest and updateManifestSignature");

	const request: {workflow: Workflow; fileUrls: readonly FileUrl[]; updateManifest?: string; updateManifestSignature?: string} = {workflow, fileUrls: Object.freeze(fileUrls)};
	if (manifest !== undefined) request.updateManifest = manifest;
	if (signature !== undefined) request.updateManifestSignature = signature;
	return good(Object.freeze(request));
}

/** Parses the `updateManifest` string. */
export function parseUpdateManifest(text: string): Parsed<UpdateManifest> {
	if (typeof text !== "string") return bad("updateManifest is not a string");
	if (text.length > MAX_MANIFEST_BYTES) return bad(`updateManifest is ${text.length} characters long; this device reads at most ${MAX_MANIFEST_BYTES}`);
	const m = parseJsonObject(text, MAX_MANIFEST_DEPTH);
	if (typeof m === "string") return bad(`updateManifest ${m}`);

	const manifestVersion = optionalString(m, "manifestVersion");
	if (manifestVersion === false) return bad("updateManifest.manifestVersion is not a string");
	const createdDateTime = optionalString(m, "createdDateTime");
	if (createdDateTime === false) return bad("updateManifest.createdDateTime is not a string");

	const uid = field(m, "updateId");
	if (!isObject(uid)) return bad("updateManifest.updateId is missing or not an object");
	const provider = field(uid, "provider"), name = field(uid, "name"), version = field(uid, "version");
	for (const [key, value] of [["provider", provider], ["name", name], ["version", version]] as const)
		if (typeof value !== "string" || value === "") return bad(`updateManifest.updateId.${key} is missing or not a string`);
	const updateId: UpdateId = Object.freeze({provider: provider as string, name: name as string, version: version as string});

	const compatibility: Readonly<Record<string, string>>[] = [];
	const compat = field(m, "compatibility");
	if (compat !== undefined) {
		if (!Array.isArray(compat)) return bad("updateManifest.compatibility is not an array");
		for (let i = 0; i < compat.length; i++) {
			const entry: unknown = compat[i];
			if (!isObject(entry)) return bad(`updateManifest.compatibility[${i}] is not an object`);
			const pairs: [string, string][] = [];
			for (const key of Object.keys(entry)) {
				const v = entry[key];
				if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean")
					return bad(`updateManifest.compatibility[${i}].${key} is not a string`);
				pairs.push([key, String(v)]);
			}
			// fromEntries defines own properties, so a key named "__proto__" stays data.
			compatibility.push(Object.freeze(Object.fromEntries(pairs)));
		}
	}

	const files: ManifestFile[] = [];
	const fileMap = field(m, "files");
	if (!isObject(fileMap)) return bad("updateManifest.files is missing or not an object");
	for (const id of Object.keys(fileMap)) {
		if (files.length === MAX_FILES) return bad(`updateManifest.files has more than ${MAX_FILES} files; this device takes at most ${MAX_FILES}`);
		const file = parseFile(fileMap[id], `updateManifest.files.${id}`, id);
		if (typeof file === "string") return bad(file);
		files.push(file);
	}

	const instructions = field(m, "instructions");
	if (!isObject(instructions)) return bad("updateManifest.instructions is missing or not an object");
	const stepList = field(instructions, "steps");
	if (!Array.isArray(stepList) || stepList.length === 0) return bad("updateManifest.instructions.steps is missing, empty or not an array");
	if (stepList.length > MAX_STEPS) return bad(`updateManifest.instructions.steps has ${stepList.length} steps; this device takes at most ${MAX_STEPS}`);
	const steps: ManifestStep[] = [];
	for (let i = 0; i < stepList.length; i++) {
		const step = parseStep(stepList[i], `updateManifest.instructions.steps[${i}]`, files);
		if (typeof step === "string") return bad(step);
		steps.push(step);
	}

	const manifest: {-readonly [K in keyof UpdateManifest]: UpdateManifest[K]} = {
		updateId,
		compatibility: Object.freeze(compatibility),
		steps: Object.freeze(steps),
		files: Object.freeze(files),
	};
	if (manifestVersion !== undefined) manifest.manifestVersion = manifestVersion;
	if (createdDateTime !== undefined) manifest.createdDateTime = createdDateTime;
	return good(Object.freeze(manifest));
}

function parseFile(value: unknown, where: string, id: string): ManifestFile | string {
	if (!isObject(value)) return `${where} is not an object`;
	const fileName = field(value, "fileName");
	if (typeof fileName !== "string" || fileName === "") return `${where}.fileName is missing or not a string`;
	const size = field(value, "sizeInBytes");
	if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) return `${where}.sizeInBytes is not a whole number of bytes`;
	const hashes = field(value, "hashes");
	if (!isObject(hashes)) return `${where}.hashes is missing or not an object`;
	const sha256 = field(hashes, "sha256");
	const digest = typeof sha256 === "string" ? base64Decode(sha256) : undefined;
	if (!digest || digest.length !== 32) return `${where}.hashes.sha256 is not the standard base64 of 32 bytes`;
	return Object.freeze({id, fileName, sizeInBytes: size, sha256: sha256 as string});
}

function parseStep(value: unknown, where: string, files: readonly ManifestFile[]): ManifestStep | string {
	if (!isObject(value)) return `${where} is not an object`;
	const type = field(value, "type") ?? "inline";
	if (typeof type !== "string") return `${where}.type is not a string`;
	const handler = field(value, "handler");
	if (handler !== undefined && typeof handler !== "string") return `${where}.handler is not a string`;
	if (type === "inline" && !handler) return `${where}.handler is missing`;
	const list = field(value, "files") ?? [];
	if (!Array.isArray(list)) return `${where}.files is not an array`;
	if (list.length > MAX_FILES_PER_STEP) return `${where}.files lists ${list.length} files; this device takes at most ${MAX_FILES_PER_STEP} per step`;
	const stepFiles: string[] = [];
	for (let j = 0; j < list.length; j++) {
		const id: unknown = list[j];
		if (typeof id !== "string") return `${where}.files[${j}] is not a file id`;
		if (!files.some(f => f.id === id)) return `${where}.files[${j}] "${id}" is not in updateManifest.files`;
		stepFiles.push(id);
	}
	let installedCriteria: string | undefined;
	const props = field(value, "handlerProperties");
	if (props !== undefined && props !== null) {
		if (!isObject(props)) return `${where}.handlerProperties is not an object`;
		const ic = field(props, "installedCriteria");
		if (ic !== undefined && typeof ic !== "string") return `${where}.handlerProperties.installedCriteria is not a string`;
		installedCriteria = ic;
	}
	const step: {-readonly [K in keyof ManifestStep]: ManifestStep[K]} = {type, files: Object.freeze(stepFiles)};
	if (handler !== undefined) step.handler = handler;
	if (installedCriteria !== undefined) step.installedCriteria = installedCriteria;
	return Object.freeze(step);
}

/** What this device is and can take, for checkDeployment. */
export interface DeploymentTarget extends DeviceProperties {
	/** The update handler it implements; "microsoft/swupdate:1" unless set. */
	readonly handler?: string;
	/** What the running image satisfies: an update whose step says the same is already installed. */
	readonly installedCriteria: string;
	/** Bytes the image may take (the size of the next OTA partition). */
	readonly availableBytes: number;
}

/** What to download and install once an update is accepted. */
export interface InstallPlan {
	readonly updateId: UpdateId;
	readonly handler: string;
	readonly installedCriteria?: string;
	readonly fileId: string;
	readonly fileName: string;
	readonly sizeInBytes: number;
	readonly sha256: string;
	readonly url: string;
	/** Steps in the manifest, for lastInstallResult.stepResults. */
	readonly stepCount: number;
}

export type Decision =
	| {readonly accept: true; readonly plan: InstallPlan}
	| {readonly accept: false; readonly reason: ReasonName; readonly resultCode: number; readonly extendedResultCode: number; readonly message: string};

/**
 * Whether this device takes the update: it must be compatible, have one inline step with a handler
 * the device implements and one file that fits and has a URL, and not be installed already
 * (installedCriteria equal to the device's, as the ESP32 sample decides).
 */
/** An http:// or https:// URL, in any case (without RegExp: src/chars.ts says why). */
function isHttpUrl(url: string): boolean {
	const head = url.slice(0, 8).toLowerCase();
	return head.startsWith("http://") || head.startsWith("https://");
}

export function checkDeployment(manifest: UpdateManifest, device: DeploymentTarget, fileUrls: readonly FileUrl[]): Decision {
	if (!manifest.compatibility.some(entry => compatible(entry, device)))
		return refuse("incompatible", `the update is for ${describeCompat(manifest.compatibility)}, not for manufacturer ${JSON.stringify(device.manufacturer)} model ${JSON.stringify(device.model)}: deploy it to a group of matching devices, or import it with this device's compatibility`);
	if (manifest.steps.length !== 1)
		return refuse("unsupportedSteps", `the update has ${manifest.steps.length} steps; this device installs exactly one step: import one image as a single step`);
	const step = manifest.steps[0];
	if (step.type !== "inline")
		return refuse("unsupportedSteps", `step 0 is of type ${JSON.stringify(step.type)}; this device installs inline steps only (no detached manifests)`);
	const handler = device.handler ?? DEFAULT_HANDLER;
	if (step.handler !== handler)
		return refuse("unsupportedHandler", `step 0 uses handler ${JSON.stringify(step.handler)}; this device implements ${JSON.stringify(handler)}: import the update with --step handler=${handler}`);
	if (step.installedCriteria !== undefined && step.installedCriteria === device.installedCriteria)
		return refuse("alreadyInstalled", `already installed: step 0's installedCriteria ${JSON.stringify(step.installedCriteria)} is what this device runs`, ResultCode.alreadyInstalled);
	if (step.files.length !== 1)
		return refuse("unsupportedFiles", `step 0 lists ${step.files.length} files; this device installs exactly one image file`);
	const file = manifest.files.find(f => f.id === step.files[0]);
	if (!file) return refuse("unsupportedFiles", `step 0's file ${JSON.stringify(step.files[0])} is not in the manifest`);
	if (file.sizeInBytes === 0) return refuse("unsupportedFiles", `file ${JSON.stringify(file.fileName)} is empty`);
	if (!(file.sizeInBytes <= device.availableBytes))
		return refuse("tooLarge", `file ${JSON.stringify(file.fileName)} is ${file.sizeInBytes} bytes; this device has room for ${device.availableBytes}: build a smaller image or enlarge the OTA partitions`);
	const entry = fileUrls.find(u => u.fileId === file.id);
	if (!entry) return refuse("noFileUrl", `the service sent no download URL for file ${JSON.stringify(file.id)} (${file.fileName})`);
	if (!isHttpUrl(entry.url)) return refuse("noFileUrl", `the URL of file ${JSON.stringify(file.id)} is not http:// or https://`);
	const plan: {-readonly [K in keyof InstallPlan]: InstallPlan[K]} = {
		updateId: manifest.updateId, handler, fileId: file.id, fileName: file.fileName, sizeInBytes: file.sizeInBytes,
		sha256: file.sha256, url: entry.url, stepCount: manifest.steps.length,
	};
	if (step.installedCriteria !== undefined) plan.installedCriteria = step.installedCriteria;
	return Object.freeze({accept: true, plan: Object.freeze(plan)});
}

/**
 * ADU's mapping of manifest names to reported device properties is not documented (device-update.md
 * §11): deviceManufacturer and deviceModel are matched to manufacturer and model, any other name to
 * the custom property of the same name, case-sensitively. Every property of the entry must match.
 */
function compatible(entry: Readonly<Record<string, string>>, device: DeviceProperties): boolean {
	const keys = Object.keys(entry);
	if (keys.length === 0) return false;
	for (const key of keys) {
		const have = key === "deviceManufacturer" ? device.manufacturer
			: key === "deviceModel" ? device.model
			: customValue(device.customProperties, key);
		if (have !== entry[key]) return false;
	}
	return true;
}

function customValue(props: readonly CustomProperty[] | undefined, name: string): string | undefined {
	const p = props?.find(q => q.name === name);
	return p ? p.value : undefined;
}

function describeCompat(compat: readonly Readonly<Record<string, string>>[]): string {
	if (compat.length === 0) return "no device (its manifest has no compatibility)";
	return compat.map(entry => Object.keys(entry).map(k => `${k} ${JSON.stringify(entry[k])}`).join(" ")).join(" or ");
}

function refuse(reason: ReasonName, message: string, resultCode: number = ResultCode.failure): Decision {
	const decision: Decision = {accept: false, reason, resultCode, extendedResultCode: Reason[reason], message};
	return Object.freeze(decision);
}

/** undefined when absent or null, false when of another type. */
function optionalString(object: JsonObject, key: string): string | undefined | false {
	const v = field(object, key);
	if (v === undefined || v === null) return undefined;
	return typeof v === "string" ? v : false;
}

function good<T>(value: T): Parsed<T> {
	return Object.freeze({ok: true, value});
}

function bad<T>(message: string): Parsed<T> {
	return Object.freeze({ok: false, message});
}

Object.freeze(parseServiceRequest);
Object.freeze(parseUpdateManifest);
Object.freeze(checkDeployment);
