/*
 * Wi-Fi and clock on the ESP32, done here instead of by the SDK's setup/network, which waits for an
 * IP address forever (main never runs, nothing is reported). Here every attempt has a timeout,
 * failures are retried with backoff, and the clock is set by SNTP before any TLS connection, since
 * certificate dates and SAS expiry both depend on it.
 */
import WiFi from "wifi";
import SNTP from "sntp";
import Time from "time";
import Timer from "timer";
import {AzureIoTError} from "azure-iot/errors";

export interface NetworkOptions {
	ssid: string;
	password?: string;
	/** One attempt to associate and get an address. Default 20000. */
	attemptTimeoutMs?: number;
	/** Attempts before connectNetwork() rejects. Default 6 (about three minutes with the backoff). */
	attempts?: number;
	log?: (line: string) => void;
}

/** The clock counts as set once it is past this (2024-01-01): an ESP32 boots at 1970. */
const CLOCK_VALID_AFTER_MS = 1704067200000;

/**
 * The station and its reconnect loop. An object, not module-level variables: this module is
 * preloaded into flash, where module state would be frozen (the XS linker warns of it).
 */
class Station {
	wifi: WiFi | undefined;
	options: NetworkOptions | undefined;
	connected = false;
	reconnectTimer: Timer | undefined;
	reconnectDelay = 2000;

	/** Keeps rejoining in the background, backing off to a minute, until an address comes back. */
	scheduleReconnect(): void {
		const options = this.options;
		if (this.reconnectTimer || !options) return;
		this.reconnectTimer = Timer.set(() => {
			this.reconnectTimer = undefined;
			if (this.connected) {
				this.reconnectDelay = 2000;
				return;
			}
			try {
				WiFi.connect({ssid: options.ssid, password: options.password});
			}
			catch (e) {
				options.log?.(`wifi: reconnect failed: ${e instanceof Error ? e.message : String(e)}`);
			}
			this.reconnectDelay = Math.min(60000, this.reconnectDelay * 2);
			this.scheduleReconnect(); // checks again later; cleared by the next gotIP
		}, this.reconnectDelay);
	}

	stopReconnecting(): void {
		if (this.reconnectTimer) Timer.clear(this.reconnectTimer);
		this.reconnectTimer = undefined;
		this.reconnectDelay = 2000;
	}
}

/** One per board (hosts/esp32/board.ts). */
export function createStation(): Station {
	return new Station();
}

/**
 * Resolves once the station has an IP address. After that the connection is kept up: a lost
 * association is re-attempted in the background (the MQTT clients reconnect on their own).
 */
export function connectNetwork(station: Station, options: NetworkOptions): Promise<void> {
	if (!options.ssid)
		return Promise.reject(new AzureIoTError("config", "ssid: is empty. Set the Wi-Fi network's name (Preference azure/ssid, or build with ssid=...)"));
	station.options = options;
	const timeoutMs = options.attemptTimeoutMs ?? 20000;
	const attempts = options.attempts ?? 6;
	const log = options.log;
	return new Promise<void>((resolve, reject) => {
		let attempt = 0;
		let timer: Timer | undefined;
		let settled = false;
		let joined = false;

		const start = () => {
			attempt++;
			log?.(`wifi: connecting to "${options.ssid}" (attempt ${attempt} of ${attempts})`);
			timer = Timer.set(() => {
				timer = undefined;
				WiFi.disconnect();
				if (attempt >= attempts) {
					settled = true;
					reject(new AzureIoTError("network", `wifi: no IP address from "${options.ssid}" after ${attempts} attempts. Check the SSID, the password and the signal; 2.4 GHz networks only`, {retriable: true}));
					return;
				}
				const backoff = Math.min(60000, 2000 * 2 ** (attempt - 1));
				timer = Timer.set(() => {
					timer = undefined;
					start();
				}, backoff);
			}, timeoutMs);
			try {
				WiFi.connect({ssid: options.ssid, password: options.password});
			}
			catch (e) {
				// "ssid too long", "password too long", "esp_wifi_connect failed": no retry fixes the first two.
				Timer.clear(timer);
				timer = undefined;
				settled = true;
				const message = e instanceof Error ? e.message : String(e);
				reject(new AzureIoTError(message.includes("too long") ? "config" : "network", `wifi: ${message}. The SSID is at most 32 bytes and the password at most 64`));
			}
		};

		const onNotify = (message: string) => {
			if (message === WiFi.gotIP) {
				station.connected = true;
				joined = true;
				station.stopReconnecting();
				if (!settled) {
					settled = true;
					Timer.clear(timer);
					timer = undefined;
					resolve();
				}
			}
			else if (message === WiFi.disconnected || message === WiFi.lostIP) {
				// Only after this call's first success; until then the attempt loop above decides.
				if (joined) {
					if (station.connected) log?.(`wifi: ${message}; reconnecting`);
					station.connected = false;
					station.scheduleReconnect();
				}
			}
		};

		station.wifi?.close();
		station.stopReconnecting();
		WiFi.mode = WiFi.Mode.station;
		station.wifi = new WiFi(undefined, onNotify);
		start();
	});
}

export interface ClockOptions {
	/** Tried in turn; default pool.ntp.org, time.google.com, time.cloudflare.com. */
	servers?: readonly string[];
	/** Overall bound. Default 60000. */
	timeoutMs?: number;
	log?: (line: string) => void;
}

/** Sets the clock by SNTP, trying each server in turn; rejects when none answers in time. */
export function syncClock(options: ClockOptions = {}): Promise<void> {
	const servers = options.servers?.length ? options.servers : ["pool.ntp.org", "time.google.com", "time.cloudflare.com"];
	const log = options.log;
	return new Promise<void>((resolve, reject) => {
		let index = 0;
		let done = false;
		let client: SNTP | undefined;
		const finish = (error?: AzureIoTError) => {
			if (done) return;
			done = true;
			Timer.clear(guard);
			try {
				(client as unknown as {close?(): void} | undefined)?.close?.();
			}
			catch {
				// already closed by SNTP itself
			}
			if (error) reject(error);
			else resolve();
		};
		const guard = Timer.set(() => finish(new AzureIoTError("network", `clock: no SNTP answer from ${servers.join(", ")}. UDP port 123 must be reachable; TLS cannot work without the right time`, {retriable: true})), options.timeoutMs ?? 60000);
		log?.(`clock: asking ${servers[0]}`);
		client = new SNTP({host: servers[0]}, ((message: number, value?: number | string) => {
			if (message === SNTP.time && typeof value === "number") {
				Time.set(value);
				if (Date.now() < CLOCK_VALID_AFTER_MS) {
					finish(new AzureIoTError("network", `clock: SNTP gave an implausible time (${value})`, {retriable: true}));
					return undefined;
				}
				finish();
				return undefined;
			}
			if (message === SNTP.error) {
				log?.(`clock: ${servers[index]}: ${value}`);
				index++;
				if (index < servers.length && !done) {
					log?.(`clock: asking ${servers[index]}`);
					return servers[index]; // SNTP moves on to the host returned here
				}
				finish(new AzureIoTError("network", `clock: none of ${servers.join(", ")} answered. UDP port 123 must be reachable; TLS cannot work without the right time`, {retriable: true}));
			}
			return undefined;
		}) as unknown as ConstructorParameters<typeof SNTP>[1]);
	});
}

export function clockLooksSet(): boolean {
	return Date.now() >= CLOCK_VALID_AFTER_MS;
}
