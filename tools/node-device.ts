/*
 * `npm run device -- --config device.json`: the device logic (src/device) on the Node host. Not the
 * firmware: the same TypeScript the firmware runs, with Node's TLS, for machines without the SDK.
 */
import {Command} from "commander";
import * as path from "node:path";
import {Device} from "../src/device/app.js";
import {createNodePlatform} from "../hosts/node/platform.js";
import {loadDeviceFile} from "./device-config.js";

const program = new Command()
	.name("device")
	.description("Run the device logic on the Node host (not the firmware)")
	.requiredOption("--config <file>", "device.json")
	.option("--state <file>", "where the device keeps its cached assignment (its Preference)", ".device-state.json")
	.parse();
const options = program.opts<{config: string; state: string}>();

try {
	const file = loadDeviceFile(options.config);
	const device = new Device({platform: createNodePlatform({roots: file.roots, storageFile: path.resolve(options.state)}), config: file.config});
	const stop = () => void device.stop().finally(() => process.exit(0));
	process.on("SIGINT", stop);
	process.on("SIGTERM", stop);
	await device.start();
}
catch (e) {
	console.error(`device: ${(e as Error).message}`);
	process.exit(2);
}
