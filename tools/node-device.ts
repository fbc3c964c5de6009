/*
 * `npm run device -- [--app DIR] --config device.json`: an application on the Node host (default
 * the reference firmware's). Not the firmware: the same TypeScript the firmware runs, with Node's
 * TLS and timers in place of the SDK's, for machines without the SDK. `azure-iot/platform` and
 * `timer` resolve to hosts/node/ through tsconfig.json's paths. Device Update images are written to
 * <state>.images/ (boot.img once verified); the restart it asks for ends the process: started again,
 * the same code runs, which reports that it is not the new image (state 255, then 0 on its version).
 */
import {Command} from "commander";
import * as path from "node:path";
import {pathToFileURL} from "node:url";
import {configurePlatform} from "../hosts/node/platform.js";
import {createFileImageStore} from "../hosts/node/images.js";
import {resolveApp} from "./app.js";
import {loadDeviceFile} from "./device-config.js";

const program = new Command()
	.name("device")
	.description("Run an application on the Node host (not the firmware)")
	.requiredOption("--config <file>", "device.json")
	.option("--app <dir>", "the application's directory (default: the reference firmware)")
	.option("--state <file>", "where the device keeps its cached assignment (its Preference)", ".device-state.json")
	.parse();
const options = program.opts<{config: string; app?: string; state: string}>();

try {
	const app = resolveApp(options.app);
	const file = loadDeviceFile(options.config);
	(globalThis as {trace?: (...v: unknown[]) => void}).trace = (...values: unknown[]) => process.stdout.write(values.map(String).join(""));
	const images = createFileImageStore({dir: path.resolve(options.state) + ".images"});
	const reboot = () => {
		console.error("device: restart asked for; exiting (run it again to start the device anew)");
		process.exit(0);
	};
	configurePlatform({roots: file.roots, deviceFile: file.json, storageFile: path.resolve(options.state), images, reboot});
	process.on("SIGINT", () => process.exit(0));
	process.on("SIGTERM", () => process.exit(0));
	const module = await import(pathToFileURL(app.main).href) as {default?: unknown};
	// As on the device: a main whose default export is a function is called.
	if (typeof module.default === "function") (module.default as () => void)();
}
catch (e) {
	console.error(`device: ${(e as Error).message}`);
	process.exit(2);
}
