/*
 * The platform (azure-iot/device's Platform) of a Moddable build, ESP32 or simulator: the host
 * adapter on the SDK, the pinned roots from the build's data resources, the settings, events as one
 * JSON line each through trace (the serial console on the ESP32, stdout under mcsim, where
 * tools/sim-runner.ts reads them), and the board (azure-iot/board: Wi-Fi, SNTP, restart).
 *
 * Settings: each has one name (src/settings.ts), used as the build value (mc/config) and as the
 * Preference key in domain "azure" (NVS on the ESP32). A non-empty Preference value wins, so one
 * firmware image serves a fleet, each device's identity in its own flash; settings marked build-only
 * (what the image is) and the trusted roots cannot be changed from storage. X.509 material is a
 * Preference blob (DER), or at build time the name of a data resource holding it.
 *
 * Preloaded, so that its code stays in flash (a module loaded at run time costs heap for each of its
 * functions and for the module map): it reads Preference only when called, never when it loads, and
 * the simulator's Preference (hosts/sim/preference.ts) reads its file on first use.
 */
import config from "mc/config";
import Preference from "preference";
import Resource from "Resource";
import {createBoard} from "azure-iot/board";
import {createModdableHost, errorText, print} from "azure-iot/moddable/host";
import {PreferenceStorage} from "azure-iot/moddable/storage";
import {SETTINGS, type SettingName} from "azure-iot/settings";
import {AzureIoTError, configError} from "azure-iot/errors";
import type {DeviceEvent, Platform, ResetInfo} from "azure-iot/device";
import type {HostAdapter, ImageStore} from "azure-iot/host";

/** What differs between the ESP32 and the simulator (hosts/esp32/board.ts, hosts/sim/board.ts). */
export interface Board {
	readonly name: string;
	connectNetwork?(network: {ssid?: string; password?: string; log?: (line: string) => void}): Promise<void>;
	syncClock?(servers: readonly string[], log?: (line: string) => void): Promise<void>;
	reboot?(): void;
	/** Why the chip last reset (ESP32), in words. */
	resetReason?(): string | undefined;
	/** Replaces Math.random for the host where that is not random enough. */
	random?(): number;
	/** Device Update: where images go (the OTA partitions on the ESP32, a file on the simulator). */
	images?(): ImageStore;
}

export interface PlatformOptions {
	/** The Preference domain of the settings; default "azure". */
	domain?: string;
	/** Diagnostic lines; default trace(). */
	log?: (line: string) => void;
	/**
	 * What an uncaught exception or unhandled rejection does: "report" (default) prints an error event
	 * and the device carries on on its own timers; "abort" leaves XS's default (the ESP32 restarts).
	 */
	unhandled?: "report" | "abort";
}

const DOMAIN = "azure";
/** Where the reason of an XS abort is kept for the next boot (Preference key, at most 15 characters). */
const LAST_ABORT = "lastAbort";

export function emit(event: DeviceEvent): void {
	trace(JSON.stringify(event) + "\n");
}

export {print};

/**
 * The roots as DER, from data resources named in a comma-separated list (the build config `roots`).
 * A missing or empty resource is a build mistake: say which one, rather than connect with fewer roots.
 */
export function loadRoots(names: string): Uint8Array[] {
	const list = names.split(",").map(name => name.trim()).filter(name => name);
	if (!list.length) throw new Error("roots: no pinned root listed. The build config `roots` names the .der data resources to trust");
	return list.map(name => {
		if (!Resource.exists(name)) throw new Error(`roots: resource ${name} is not in the firmware. Add it to the manifest "data" section`);
		// A view of the resource, not a copy: the roots stay in flash, where the SDK keeps its own (3 KB of chunks less).
		const bytes = new Uint8Array(new Resource(name) as unknown as ArrayBuffer);
		if (bytes.length < 64 || bytes[0] !== 0x30) throw new Error(`roots: resource ${name} is not a DER certificate`);
		return bytes;
	});
}

function stored(domain: string, name: string): unknown {
	try {
		return Preference.get(domain, name);
	}
	catch {
		return undefined; // no such key (some ports throw)
	}
}

function built(name: string): unknown {
	return (config as Record<string, unknown>)[name];
}

export function createPlatform(options: PlatformOptions = {}): Platform {
	const domain = options.domain ?? DOMAIN;
	const log = options.log ?? print;
	if (options.unhandled !== "abort") installAbortHook(domain);
	const board = createBoard();
	const adapter = createModdableHost({storage: new PreferenceStorage(domain, log), log, random: board.random});
	let roots: Uint8Array[] = [];
	let setupError: AzureIoTError | undefined;
	try {
		roots = loadRoots(String(built("roots") ?? ""));
	}
	catch (e) {
		// Reported by the device as a bad setting: it idles rather than connect trusting nothing.
		setupError = new AzureIoTError("config", errorText(e));
	}
	return Object.freeze(new ModdablePlatform(adapter, roots, setupError, domain, board, log));
}

/**
 * An object of a class, not a literal of closures: its methods stay in flash with the preloaded
 * module, where each closure would cost about 6 heap slots (BENCHMARKS.md).
 */
class ModdablePlatform implements Platform {
	readonly adapter: HostAdapter;
	readonly roots: readonly Uint8Array[];
	readonly setupError: AzureIoTError | undefined;
	readonly reboot: (() => void) | undefined;
	readonly images: ImageStore | undefined;
	// The module's functions themselves, not methods that call them: a stack frame fewer under every event.
	readonly emit: (event: DeviceEvent) => void = emit;
	readonly print: (line: string) => void = print;
	private _domain: string;
	private _board: Board;
	private _log: (line: string) => void;

	constructor(adapter: HostAdapter, roots: readonly Uint8Array[], setupError: AzureIoTError | undefined, domain: string, board: Board, log: (line: string) => void) {
		this.adapter = adapter;
		this.roots = roots;
		this.setupError = setupError;
		this.reboot = board.reboot;
		this.images = board.images?.();
		this._domain = domain;
		this._board = board;
		this._log = log;
		// A board without Wi-Fi or SNTP (the simulator): the device must see no such step, so these own
		// properties hide the methods below (defined, not assigned: the prototype is frozen).
		if (!board.connectNetwork) Object.defineProperty(this, "connectNetwork", {value: undefined});
		if (!board.syncClock) Object.defineProperty(this, "syncClock", {value: undefined});
	}

	setting(name: SettingName): unknown {
		const spec = SETTINGS[name];
		let value = spec.buildOnly ? undefined : stored(this._domain, name);
		if (value === undefined || value === null || value === "") {
			value = built(name);
			// Bytes at build time are the name of a data resource that holds them.
			if (spec.bytes && typeof value === "string" && value) {
				if (!Resource.exists(value)) throw configError(name, `names the resource ${value}, which is not in the firmware`, "Add the DER file to the manifest's \"data\" section, or store the bytes in Preference");
				return new Uint8Array(new Resource(value).slice(0));
			}
		}
		if (value instanceof ArrayBuffer) return new Uint8Array(value);
		return value;
	}

	connectNetwork(network: {ssid?: string; password?: string}): Promise<void> {
		return this._board.connectNetwork!({...network, log: this._log});
	}

	syncClock(servers: readonly string[]): Promise<void> {
		return this._board.syncClock!(servers, this._log);
	}

	lastReset(): ResetInfo | undefined {
		const reason = this._board.resetReason?.();
		const domain = this._domain;
		const detail = stored(domain, LAST_ABORT);
		if (typeof detail === "string" && detail) {
			try {
				Preference.delete(domain, LAST_ABORT);
			}
			catch {
				// reported again at the next boot
			}
		}
		if (!reason && !(typeof detail === "string" && detail)) return undefined;
		const info: ResetInfo = {reason: reason ?? "unknown"};
		if (typeof detail === "string" && detail) info.detail = detail;
		return info;
	}
}

Object.freeze(ModdablePlatform.prototype);
Object.freeze(ModdablePlatform);

/*
 * An unhandled rejection or exception would abort the VM (and restart the ESP32 into the same
 * state). With the xs abortHook define, XS asks globalThis.abort first: report and carry on; the
 * device retries on its own timers. What still aborts (memory full, a native stack overflow) is
 * recorded for the next boot, so that a fleet operator sees why a device restarted.
 */
function installAbortHook(domain: string): void {
	(globalThis as unknown as {abort?: (message: string, exception: unknown) => boolean}).abort = (message, exception) => {
		if (message === "unhandled exception" || message === "unhandled rejection") {
			emit({event: "error", code: "internal", message: `${message}: ${errorText(exception)}`});
			return false;
		}
		try {
			Preference.set(domain, LAST_ABORT, `XS abort: ${String(message).slice(0, 60)}`);
		}
		catch {
			// no memory left even for this: the reset reason alone will have to say it
		}
		return true;
	};
}
