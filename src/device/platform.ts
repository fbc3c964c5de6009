/*
 * What a device gets from the platform it runs on (hosts/moddable/platform.ts on the ESP32 and the
 * simulator, hosts/node/platform.ts on Node): the host adapter, the pinned roots, where its settings
 * come from, where its events go, and the board's network, clock and restart.
 */
import type {HostAdapter, ImageStore} from "../host.js";
import type {AzureIoTError} from "../errors.js";
import type {SettingLabels, SettingName} from "../settings.js";

/** One line of the device's log: `{"event":"hub.connected",...}`. */
export interface DeviceEvent {
	event: string;
	[key: string]: unknown;
}

/** Why the device last started. */
export interface ResetInfo {
	/** ESP32: esp_reset_reason() in words ("power-on", "software", "panic", "brownout", "watchdog", …). */
	reason: string;
	/** What the firmware recorded before it went down, if it could (an XS abort: "memory full"). */
	detail?: string;
}

export interface Platform {
	readonly adapter: HostAdapter;
	/** The roots the build trusts (DER). Not a setting: nothing in storage can widen what the device trusts. */
	readonly roots: readonly Uint8Array[];
	/** Set when the platform could not be set up (a build mistake, such as a missing root): the device reports it and idles. */
	readonly setupError?: AzureIoTError;
	/** The raw value of a setting (build value, storage, a file), or undefined when unset; may throw a config error. */
	setting(name: SettingName): unknown;
	/** How an error names a setting; default "name". */
	readonly settingLabels?: SettingLabels;
	/** Prints one event (a JSON line on the console). */
	emit(event: DeviceEvent): void;
	/** Prints a human-readable line. */
	print?(line: string): void;
	connectNetwork?(network: {ssid?: string; password?: string}): Promise<void>;
	syncClock?(servers: readonly string[]): Promise<void>;
	reboot?(): void;
	lastReset?(): ResetInfo | undefined;
	/** Device Update: where images are written and how the device boots them (absent: the device takes no updates). */
	readonly images?: ImageStore;
}
