/*
 * The ESP32 as a board: Wi-Fi with a timeout and retries, SNTP before any TLS, a real restart for a
 * "reboot" command, and the reason of the last reset.
 */
import type {Board} from "azure-iot/platform";
import {connectNetwork, createStation, syncClock} from "azure-iot/esp32/network";
import {resetReason, restart} from "azure-iot/esp32/system";
import {createImageStore} from "azure-iot/esp32/images";

export function createBoard(): Board {
	const station = createStation();
	return Object.freeze({
		name: "esp32",
		connectNetwork: (network: {ssid?: string; password?: string; log?: (line: string) => void}) =>
			connectNetwork(station, {ssid: network.ssid ?? "", password: network.password, log: network.log}),
		syncClock: (servers: readonly string[], log?: (line: string) => void) => syncClock({servers, log}),
		reboot: () => restart(),
		resetReason: () => resetReason(),
		images: () => createImageStore(),
	});
}
