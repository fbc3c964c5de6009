/*
 * The firmware entry (ESP32 and simulator). It gathers the configuration, checks it as a whole,
 * builds the platform and runs the Device.
 *
 * Configuration: every setting has one name, used both as a build-time `mc/config` value (the
 * manifest, or `mcconfig ... idScope=0ne...`; these arrive as strings) and as a Preference key in
 * domain "azure" (NVS on the ESP32, set in the field without rebuilding). A non-empty Preference
 * value wins over the build value, so one firmware image can be provisioned per device.
 *
 *   dpsHost dpsPort idScope registrationId symmetricKey modelId hubPort intervalMs queueLimit (the device)
 *   ssid password sntp                                                            (the ESP32 board)
 *   roots firmwareVersion                                      (build only: what the image trusts)
 *
 * The trusted roots are build-time only on purpose: nothing written into Preference can widen
 * what the device trusts.
 *
 * A configuration error prints one {"event":"error","code":"config",...} line and stops here: the
 * device idles rather than crash-looping until someone fixes the setting.
 */
import config from "mc/config";
import Preference from "preference";
import {Device} from "./device/app.js";
import {validateDeviceConfig} from "./device/config.js";
import {AzureIoTError} from "./errors.js";
import {createModdableHost, errorText} from "../hosts/moddable/host.js";
import {PreferenceStorage} from "../hosts/moddable/storage.js";
import {emit, loadRoots, print} from "../hosts/moddable/platform.js";
import {createBoard} from "board";

const DOMAIN = "azure";

function setting(name: string): string | undefined {
	let value: unknown;
	try {
		value = Preference.get(DOMAIN, name);
	}
	catch {
		value = undefined; // no such key (some ports throw)
	}
	if (value === undefined || value === null || value === "") value = (config as Record<string, unknown>)[name];
	if (value === undefined || value === null || value === "") return undefined;
	return typeof value === "string" ? value : String(value);
}

/*
 * An unhandled rejection or exception would abort the VM (and reboot the ESP32 into the same
 * state). With the xs abortHook define, XS asks globalThis.abort first: report and carry on; the
 * Device retries on its own timers. Out of memory and stack overflows still abort.
 */
(globalThis as unknown as {abort?: (message: string, exception: unknown) => boolean}).abort = (message, exception) => {
	if (message !== "unhandled exception" && message !== "unhandled rejection") return true;
	emit({event: "error", code: "internal", message: `${message}: ${errorText(exception)}`});
	return false;
};

function start(): void {
	const log = (line: string) => trace(line + "\n");
	let device: Device;
	try {
		const deviceConfig = validateDeviceConfig({
			dps: {
				host: setting("dpsHost"),
				port: setting("dpsPort"),
				idScope: setting("idScope"),
				registrationId: setting("registrationId"),
				symmetricKey: setting("symmetricKey"),
				modelId: setting("modelId"),
			},
			hub: {port: setting("hubPort")},
			telemetry: {intervalMs: setting("intervalMs"), queueLimit: setting("queueLimit")},
			firmwareVersion: (config as Record<string, unknown>).firmwareVersion ?? "0.0.0",
		});
		const board = createBoard({ssid: setting("ssid"), password: setting("password"), sntp: setting("sntp"), log});
		if (board.connectNetwork && !setting("ssid"))
			throw new AzureIoTError("config", "ssid: is not set. Give the Wi-Fi network: Preference azure/ssid, or build with ssid=... password=...");
		let roots: Uint8Array[];
		try {
			roots = loadRoots(String((config as Record<string, unknown>).roots ?? ""));
		}
		catch (e) {
			throw new AzureIoTError("config", errorText(e));
		}
		const host = createModdableHost({storage: new PreferenceStorage(DOMAIN, log), log, random: board.random});
		device = new Device({
			platform: {
				host,
				roots,
				emit,
				print,
				connectNetwork: board.connectNetwork,
				syncClock: board.syncClock,
				reboot: board.reboot,
			},
			config: deviceConfig,
		});
	}
	catch (e) {
		const code = e instanceof AzureIoTError ? e.code : "config";
		emit({event: "error", code, message: errorText(e)});
		return;
	}
	device.start().catch(e => emit({event: "error", code: e instanceof AzureIoTError ? e.code : "internal", message: errorText(e)}));
}

export default start;
