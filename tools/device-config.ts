/*
 * Reads device.json (the format the README documents) for the Node-side tools: the simulator runner,
 * the Node-host device and `npm start`. Every problem names the field and the fix.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {validateDeviceConfig, type DeviceConfig} from "../src/device/config.js";
import {readRoots} from "../hosts/node/host.js";
import type {FirmwareSettings} from "./sim-runner.js";

export interface DeviceFile {
	config: DeviceConfig;
	/** Paths of the roots as given (absolute). */
	rootPaths: string[];
	roots: Uint8Array[];
	wifi?: {ssid: string; password: string};
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

export function parseDeviceFile(raw: unknown, baseDir: string): DeviceFile {
	const config = validateDeviceConfig(raw);
	const o = raw as Record<string, any>;
	const rootList = o.tls?.roots;
	if (!Array.isArray(rootList) || rootList.length === 0 || !rootList.every(r => typeof r === "string"))
		throw new Error(`tls.roots: give a list of root certificate files (PEM or DER), e.g. ["certs/digicert-global-root-g2.der","certs/microsoft-rsa-root-2017.der"]`);
	const rootPaths = rootList.map((r: string) => path.resolve(baseDir, r));
	const roots = rootPaths.flatMap(p => {
		if (!fs.existsSync(p)) throw new Error(`tls.roots: ${p} does not exist. Give the path of a PEM or DER root certificate`);
		return readRoots(p);
	});
	let wifi;
	if (o.wifi !== undefined) {
		if (typeof o.wifi?.ssid !== "string" || (o.wifi.password !== undefined && typeof o.wifi.password !== "string"))
			throw new Error(`wifi: give {"ssid": "...", "password": "..."} as strings`);
		wifi = {ssid: o.wifi.ssid, password: o.wifi.password ?? ""};
	}
	return {config, rootPaths, roots, wifi};
}

/** The firmware's build settings (the names src/main.ts reads) from a device file. */
export function firmwareSettings(device: DeviceFile): FirmwareSettings {
	return {
		dpsHost: device.config.dps.host,
		dpsPort: device.config.dps.port,
		idScope: device.config.dps.idScope,
		registrationId: device.config.dps.registrationId,
		symmetricKey: device.config.dps.symmetricKey,
		modelId: device.config.dps.modelId ?? "",
		hubPort: device.config.hub.port,
		intervalMs: device.config.telemetry.intervalMs,
		queueLimit: device.config.telemetry.queueLimit,
		ssid: device.wifi?.ssid ?? "",
		password: device.wifi?.password ?? "",
	};
}
