/*
 * Reads device.json (the format the README documents) for the Node-side tools: the simulator runner,
 * the ESP32 build, the Node host and `npm start`. Its fields map to the settings by the one table
 * (src/settings.ts); every problem names the field and the fix. Certificate and key fields are file
 * paths (PEM or DER) here, read into DER.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import {checkSettings, settingsFromFile, SETTINGS, type SettingName, type Settings} from "../src/settings.js";
import {readRoots} from "../hosts/node/host.js";
import type {FirmwareSettings} from "./sim-runner.js";

export interface DeviceFile {
	/** The device.json object as read, with certificate paths replaced by their DER bytes. */
	json: Record<string, unknown>;
	/** Checked. */
	settings: Settings;
	/** Paths of the roots as given (absolute). */
	rootPaths: string[];
	roots: Uint8Array[];
}

export function loadDeviceFile(file: string): DeviceFile {
	let raw: unknown;
	try {
		raw = JSON.parse(fs.readFileSync(file, "utf8"));
	}
	catch (e) {
		throw new Error(`${file}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file. Copy device.example.json and fill it in" : `not valid JSON (${(e as Error).message})`}`);
	}
	return parseDeviceFile(raw, path.dirname(path.resolve(file)));
}

/** A PEM or DER file of certificates or a key, as DER (certificates concatenated). */
function readDer(file: string, field: string, key: boolean): Uint8Array {
	if (!fs.existsSync(file)) throw new Error(`${field}: ${file} does not exist. Give the path of a PEM or DER file`);
	const data = fs.readFileSync(file);
	const text = data.toString("latin1");
	if (key) {
		if (!text.includes("-----BEGIN")) return new Uint8Array(data);
		try {
			return new Uint8Array(crypto.createPrivateKey(text).export({type: "pkcs8", format: "der"}));
		}
		catch (e) {
			throw new Error(`${field}: ${file} is not a private key (${(e as Error).message}). Give the device's unencrypted key, PEM or PKCS#8 DER`);
		}
	}
	return new Uint8Array(Buffer.concat(readRoots(file)));
}

export function parseDeviceFile(raw: unknown, baseDir: string): DeviceFile {
	if (!raw || typeof raw !== "object" || Array.isArray(raw))
		throw new Error("configuration: not an object. Give {\"dps\":{...}} as in device.example.json");
	const json = structuredClone(raw) as Record<string, any>;
	const x509 = json.dps?.x509;
	if (x509 !== undefined) {
		if (!x509 || typeof x509 !== "object") throw new Error("dps.x509: give {\"certificate\": \"file\", \"key\": \"file\", \"chain\"?: \"file\"}");
		for (const [field, key] of [["certificate", false], ["chain", false], ["key", true]] as const) {
			const value = x509[field];
			if (value === undefined) continue;
			if (typeof value !== "string") throw new Error(`dps.x509.${field}: give the path of a PEM or DER file`);
			x509[field] = readDer(path.resolve(baseDir, value), `dps.x509.${field}`, key);
		}
	}
	const byName = settingsFromFile(json);
	const settings = checkSettings(name => byName[name], "file");
	const rootList = json.tls?.roots;
	if (!Array.isArray(rootList) || rootList.length === 0 || !rootList.every((r: unknown) => typeof r === "string"))
		throw new Error(`tls.roots: give a list of root certificate files (PEM or DER), e.g. ["certs/digicert-global-root-g2.der","certs/microsoft-rsa-root-2017.der"]`);
	const rootPaths = rootList.map((r: string) => path.resolve(baseDir, r));
	const roots = rootPaths.flatMap(p => {
		if (!fs.existsSync(p)) throw new Error(`tls.roots: ${p} does not exist. Give the path of a PEM or DER root certificate`);
		return readRoots(p);
	});
	return {json, settings, rootPaths, roots};
}

/** The firmware's build values (the setting names) from a device file: what it sets, nothing else. */
export function firmwareSettings(device: DeviceFile): FirmwareSettings {
	const byName = settingsFromFile(device.json);
	const out: FirmwareSettings = {};
	for (const name of Object.keys(byName) as SettingName[]) {
		const value = byName[name];
		if (value === undefined) continue;
		if (SETTINGS[name].bytes) out[name] = value as Uint8Array;
		else if (Array.isArray(value)) out[name] = value.join(",");
		// An object (update.emulatorRootKey): mc/config holds it as its JSON text, which the setting's check reads.
		else if (value && typeof value === "object") out[name] = JSON.stringify(value);
		else out[name] = typeof value === "number" ? value : String(value);
	}
	return out;
}
