/*
 * Storage (src/host.ts) on Preference: NVS on the ESP32, a file on the simulator. Preloaded, like
 * every Preference module of the builds (the simulator's reads its file on first use): nothing here
 * reads storage when the module loads, which for a preloaded module is on the build machine.
 */
import Preference from "preference";
import type {Storage} from "azure-iot/host";
import {errorText} from "azure-iot/moddable/host";

/** Preference (NVS on the ESP32) in one domain, with the ESP32's limits enforced everywhere. */
export class PreferenceStorage implements Storage {
	private readonly _domain: string;
	private readonly _log: ((line: string) => void) | undefined;

	constructor(domain: string, log?: (line: string) => void) {
		checkName("domain", domain);
		this._domain = domain;
		this._log = log;
	}

	get(key: string): string | undefined {
		checkName("key", key);
		const value = Preference.get(this._domain, key);
		return typeof value === "string" ? value : undefined;
	}

	set(key: string, value: string): void {
		checkName("key", key);
		if (value.length > MAX_VALUE_CHARS) throw new Error(`storage value for ${key} is ${value.length} characters: at most ${MAX_VALUE_CHARS} fit in one NVS entry`);
		try {
			Preference.set(this._domain, key, value);
		}
		catch (e) {
			// The cache is an optimisation: a full NVS partition must not stop the device.
			this._log?.(`storage: cannot save ${key}: ${errorText(e)}`);
		}
	}

	delete(key: string): void {
		checkName("key", key);
		try {
			Preference.delete(this._domain, key);
		}
		catch (e) {
			this._log?.(`storage: cannot delete ${key}: ${errorText(e)}`);
		}
	}
}

/** NVS: names of at most 15 characters; values up to 4000 bytes (UTF-8: stay well below in characters). */
const MAX_NAME = 15;
const MAX_VALUE_CHARS = 1300;

function checkName(what: string, name: string): void {
	if (!name || name.length > MAX_NAME) throw new Error(`storage ${what} "${name}" must be 1 to ${MAX_NAME} characters (ESP32 NVS limit)`);
}

