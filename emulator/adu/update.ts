/*
 * Importing an update: a firmware file plus its identity becomes a signed update manifest in the
 * form Device Update sends to devices. Input is checked as ADU's import schema checks it.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import {EmulatorHttpError} from "../registry.js";
import {isPlainObject} from "../wire.js";

export interface UpdateId {
	provider: string;
	name: string;
	version: string;
}

export interface ImportRequest {
	provider: string;
	name: string;
	version: string;
	/** A path on the emulator's machine (relative paths resolve against the emulator's working directory). */
	file: string;
	compatibility: {manufacturer: string; model: string};
	/** Step 0's `handlerProperties.installedCriteria`; default the version. */
	installedCriteria?: string;
	/** Default "microsoft/swupdate:1" (the ESP32 sample's). */
	handler?: string;
}

/** An imported update as the emulator keeps it. */
export interface Update {
	updateId: UpdateId;
	fileId: string;
	fileName: string;
	data: Buffer;
	/** The manifest text as signed and sent: never re-serialized. */
	manifest: string;
	signature: string;
}

export const DEFAULT_HANDLER = "microsoft/swupdate:1";
/** Update files are held in memory; ESP32 application partitions are far smaller. */
export const MAX_FILE_BYTES = 64 * 1024 * 1024;
const IMPORT_KEYS = ["provider", "name", "version", "file", "compatibility", "installedCriteria", "handler"];
const ID_PART = /^[a-zA-Z0-9.-]+$/;
const HANDLER = /^\S+\/\S+:\d{1,5}$/;
const MAX_VERSION_PART = 2147483647;

function bad(message: string): never {
	throw new EmulatorHttpError(400, message);
}

function idPart(value: unknown, field: string): string {
	if (typeof value !== "string" || !ID_PART.test(value) || value.length > 64)
		bad(`"${field}" must be 1-64 characters of a-z, A-Z, 0-9, "." and "-" (got ${JSON.stringify(value)}).`);
	return value;
}

/** 2 to 4 dot-separated numbers of at most 2147483647; ADU drops leading zeros ("1.01" is "1.1"). */
export function normalizeVersion(value: unknown, field = "version"): string {
	const parts = typeof value === "string" ? value.split(".") : [];
	if (parts.length < 2 || parts.length > 4 || !parts.every(p => /^\d+$/.test(p) && Number(p) <= MAX_VERSION_PART))
		bad(`"${field}" must be 2 to 4 dot-separated numbers, each at most ${MAX_VERSION_PART}, such as "1.1" (got ${JSON.stringify(value)}).`);
	return parts.map(p => String(Number(p))).join(".");
}

/** Checks an update id given by a client (a deployment's `updateId`). */
export function parseUpdateId(value: unknown, field = "updateId"): UpdateId {
	if (!isPlainObject(value)) bad(`"${field}" must be an object {"provider","name","version"}.`);
	for (const key of Object.keys(value)) if (!["provider", "name", "version"].includes(key)) bad(`"${field}" has an unknown key "${key}": it holds "provider", "name" and "version".`);
	return {
		provider: idPart(value.provider, `${field}.provider`),
		name: idPart(value.name, `${field}.name`),
		version: normalizeVersion(value.version, `${field}.version`),
	};
}

export function updateKey(id: UpdateId): string {
	return `${id.provider}/${id.name}/${id.version}`;
}

function compatibilityValue(value: unknown, field: string): string {
	if (typeof value !== "string" || value.length < 1 || value.length > 64) bad(`"${field}" must be a string of 1-64 characters (got ${JSON.stringify(value)}).`);
	return value;
}

function readUpdateFile(file: unknown): {fileName: string; data: Buffer} {
	if (typeof file !== "string" || !file) bad("\"file\" must be the path of the update file on the emulator's machine.");
	const resolved = path.resolve(file);
	let stat: fs.Stats;
	try {
		stat = fs.statSync(resolved);
	}
	catch (error) {
		bad(`"file" ${resolved} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): give the path of the firmware image on the emulator's machine.`);
	}
	if (!stat.isFile()) bad(`"file" ${resolved} is not a regular file.`);
	if (stat.size < 1) bad(`"file" ${resolved} is empty: an update file has at least 1 byte.`);
	if (stat.size > MAX_FILE_BYTES) throw new EmulatorHttpError(413, `"file" ${resolved} has ${stat.size} bytes: the emulator serves update files of at most ${MAX_FILE_BYTES} bytes.`);
	const fileName = path.basename(resolved);
	if (fileName.length > 255) bad(`"file" has a name longer than 255 characters (ADU's limit for a file name).`);
	// Read once at import: the update stays what was signed even if the file changes later.
	return {fileName, data: fs.readFileSync(resolved)};
}

/** ADU's form: seven fraction digits ("2022-07-07T03:02:48.8449038Z"). */
function createdDateTime(now = new Date()): string {
	return now.toISOString().replace(/Z$/, "0000Z");
}

/** Validates an import request and builds the manifest string (unsigned). */
export function buildUpdate(input: unknown): Omit<Update, "signature"> {
	if (!isPlainObject(input)) bad("Expected a JSON object {\"provider\",\"name\",\"version\",\"file\",\"compatibility\":{\"manufacturer\",\"model\"},\"installedCriteria\"?,\"handler\"?}.");
	for (const key of Object.keys(input)) if (!IMPORT_KEYS.includes(key)) bad(`Unknown key "${key}" in the import request; keys: ${IMPORT_KEYS.join(", ")}.`);
	const provider = idPart(input.provider, "provider");
	const name = idPart(input.name, "name");
	const version = normalizeVersion(input.version);
	const compatibility = input.compatibility;
	if (!isPlainObject(compatibility)) bad("\"compatibility\" must be an object {\"manufacturer\",\"model\"} (the device's reported deviceProperties).");
	for (const key of Object.keys(compatibility)) if (key !== "manufacturer" && key !== "model") bad(`"compatibility" has an unknown key "${key}": it holds "manufacturer" and "model".`);
	const manufacturer = compatibilityValue(compatibility.manufacturer, "compatibility.manufacturer");
	const model = compatibilityValue(compatibility.model, "compatibility.model");
	const handler = input.handler ?? DEFAULT_HANDLER;
	if (typeof handler !== "string" || !HANDLER.test(handler) || handler.length < 5 || handler.length > 32)
		bad(`"handler" must look like "microsoft/swupdate:1" (5-32 characters, provider/name:version; got ${JSON.stringify(handler)}).`);
	const installedCriteria = input.installedCriteria ?? version;
	if (typeof installedCriteria !== "string" || !installedCriteria) bad("\"installedCriteria\" must be a non-empty string (the ESP32 sample compares it with its own version).");
	const {fileName, data} = readUpdateFile(input.file);

	const fileId = `f${crypto.randomBytes(8).toString("hex")}`;
	const updateId = {provider, name, version};
	const manifest = JSON.stringify({
		manifestVersion: "5",
		updateId,
		compatibility: [{deviceManufacturer: manufacturer, deviceModel: model}],
		instructions: {steps: [{handler, files: [fileId], handlerProperties: {installedCriteria}}]},
		files: {[fileId]: {fileName, sizeInBytes: data.length, hashes: {sha256: crypto.createHash("sha256").update(data).digest("base64")}}},
		createdDateTime: createdDateTime(),
	});
	return {updateId, fileId, fileName, data, manifest};
}
