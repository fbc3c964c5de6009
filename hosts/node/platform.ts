/*
 * The platform (azure-iot/device's Platform) on Node: the same device as the firmware, with Node's
 * TLS in place of the SDK's, settings from a device.json object (or given by name), and events
 * printed as JSON lines. Used by the tests, the soak, `npm run device` and `npm start` where the
 * Moddable SDK is missing, and by applications run on Node (tools/node-app.ts): for them
 * `azure-iot/platform` is this module (tsconfig.json's paths), and createPlatform() takes what the
 * runner configured.
 */
import type {DeviceEvent, Platform, ResetInfo} from "../../src/device/platform.js";
import type {ImageStore} from "../../src/host.js";
import {settingsFromFile, type SettingLabels, type SettingName} from "../../src/settings.js";
import {createNodeHost, type NodeHostOptions} from "./host.js";

export interface NodePlatformOptions extends NodeHostOptions {
	roots: readonly Uint8Array[];
	/** Settings by name (src/settings.ts). */
	settings?: Partial<Record<SettingName, unknown>>;
	/** Or a device.json object (errors then name its fields). */
	deviceFile?: unknown;
	emit?: (event: DeviceEvent) => void;
	print?: (line: string) => void;
	reboot?: () => void;
	lastReset?: () => ResetInfo | undefined;
	/** Device Update: where images go (hosts/node/images.ts createFileImageStore). */
	images?: ImageStore;
}

export function createNodePlatform(options: NodePlatformOptions): Platform {
	const byName: Partial<Record<SettingName, unknown>> = options.deviceFile !== undefined ? settingsFromFile(options.deviceFile) : {};
	Object.assign(byName, options.settings ?? {});
	const labels: SettingLabels = options.deviceFile !== undefined ? "file" : "name";
	return Object.freeze({
		adapter: createNodeHost(options),
		roots: options.roots,
		setting: (name: SettingName) => byName[name],
		settingLabels: labels,
		emit: options.emit ?? (event => console.log(JSON.stringify(event))),
		print: options.print ?? (line => console.log(line)),
		reboot: options.reboot,
		lastReset: options.lastReset,
		images: options.images,
	});
}

let configured: NodePlatformOptions | undefined;

/** What createPlatform() gives the application that tools/node-app.ts runs. */
export function configurePlatform(options: NodePlatformOptions): void {
	configured = options;
}

/** The same call as on the device (hosts/moddable/platform.ts): the platform the runner configured. */
export function createPlatform(): Platform {
	if (!configured) throw new Error("createPlatform(): no Node platform configured. Run the application with `npm run device -- --app <dir> --config device.json`");
	return createNodePlatform(configured);
}
