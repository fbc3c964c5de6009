/*
 * A whole application on the Azure IoT library: it provisions, connects, sends a reading every
 * intervalMs, takes the writable property intervalMs and answers the command ping. Settings
 * (idScope, registrationId, symmetricKey, ...) come from the build or from Preference.
 */
import Timer from "timer";
import {Device} from "azure-iot/device";
import {createPlatform} from "azure-iot/platform";

export default function main(): Device {
	let timer: Timer | undefined;
	let intervalMs = 0, count = 0;
	const every = (ms: number) => {
		intervalMs = ms;
		Timer.clear(timer);
		timer = Timer.repeat(() => device.send({count: ++count}), ms);
	};
	const device = new Device({
		platform: createPlatform(),
		onStateChange(state, info) {
			trace(`state: ${state}${info.error ? ` (${info.error.message})` : ""}\n`);
			if (state === "connected" && timer === undefined) every(this.settings.intervalMs ?? 10_000);
			if (state === "closed") Timer.clear(timer);
		},
		onWritable(property) {
			// Not ours: no acknowledgement.
			if (property.component !== undefined || property.name !== "intervalMs") return;
			const ms = property.value;
			if (typeof ms !== "number" || ms < 1000) return {status: 400, value: intervalMs, description: "a number of ms, 1000 or more"};
			every(ms);
			return 200; // reported as {"intervalMs": {"value": ms, "ac": 200, "av": <desired version>}}
		},
		onCommand(command) {
			// Anything else gets 404 and a message.
			if (command.name === "ping") return {status: 200, payload: {pong: count}};
		},
		onMessage(message) {
			trace(`message: ${message.text()}\n`);
		},
	});
	return device;
}
