/*
 * The device platform on Node: the same Device as the firmware, with events printed as JSON lines.
 * Used by `npm start` where the Moddable SDK is missing, by the end-to-end tests and the soak.
 */
import type {DeviceEvent, DevicePlatform} from "../../src/device/app.js";
import {createNodeHost, type NodeHostOptions} from "./host.js";

export interface NodePlatformOptions extends NodeHostOptions {
	roots: readonly Uint8Array[];
	emit?: (event: DeviceEvent) => void;
	print?: (line: string) => void;
	reboot?: () => void;
}

export function createNodePlatform(options: NodePlatformOptions): DevicePlatform {
	return {
		host: createNodeHost(options),
		roots: options.roots,
		emit: options.emit ?? (event => console.log(JSON.stringify(event))),
		print: options.print ?? (line => console.log(line)),
		reboot: options.reboot,
	};
}
