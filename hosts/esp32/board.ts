/*
 * The ESP32 as a board: Wi-Fi with a timeout and retries, SNTP before any TLS, and a real reboot
 * for the "reboot" direct method.
 */
import type {Board, BoardSettings} from "../moddable/platform.js";
// Bare specifiers: this module's own specifier is "board" (chosen per platform by the manifest), so
// a relative import would resolve from the top level in XS but from this directory in tsc.
import {connectNetwork, syncClock} from "hosts/esp32/network";
import restart from "hosts/esp32/restart";

export function createBoard(settings: BoardSettings): Board {
	const servers = (settings.sntp ?? "").split(",").map(s => s.trim()).filter(s => s);
	return Object.freeze({
		name: "esp32",
		connectNetwork: () => connectNetwork({ssid: settings.ssid ?? "", password: settings.password, log: settings.log}),
		syncClock: () => syncClock({servers, log: settings.log}),
		reboot: () => restart(),
	});
}
