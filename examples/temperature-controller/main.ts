/*
 * IoT Plug and Play's temperature controller, dtmi:com:example:TemperatureController;2
 * (../models/temperaturecontroller-2.json), as Microsoft's component sample implements it
 * (azure-sdk-for-c, paho_iot_pnp_component_sample.c):
 * - components thermostat1 and thermostat2 (./thermostat.ts) and deviceInformation;
 * - at the first connect, reported serialNumber (the registration id), the deviceInformation
 *   component ({"deviceInformation": {"__t": "c", "manufacturer": ..., "swVersion": ...}}) and each
 *   thermostat's maxTempSinceLastReboot, in one patch;
 * - every intervalMs, each thermostat's temperature (with $.sub) and the root's workingSet;
 * - the root command reboot, whose request is `delay` (seconds): 200 {}, then a restart on a board
 *   that can (the ESP32), a line saying so elsewhere; <component>*getMaxMinReport for each
 *   thermostat; anything else 404.
 * Writable properties of the root and of deviceInformation are not in the model: not acknowledged.
 */
import Timer from "timer";
import {Device} from "azure-iot/device";
import {createPlatform} from "azure-iot/platform";
import {createSensor, deviceInformation} from "./hardware.js";
import {Thermostat} from "./thermostat.js";

const MODEL_ID = "dtmi:com:example:TemperatureController;2";

export default function main(): Device {
	const platform = createPlatform();
	const thermostats = [new Thermostat("thermostat1", createSensor(0)), new Thermostat("thermostat2", createSensor(1))];
	const thermostat = (component: string | undefined) => thermostats.find(t => t.component === component);
	let timer: Timer | undefined;
	let workingSet = 2000 + Math.random() * 500;

	const tick = () => {
		for (const t of thermostats) t.tick(device);
		// Simulated (KiB): the model's memory in use. A real figure needs a native call (heap_caps_get_free_size on the ESP32).
		workingSet = Math.max(1000, workingSet + (Math.random() - 0.5) * 50);
		device.send({workingSet: Math.round(workingSet)});
	};

	const device = new Device({
		platform,
		modelId: MODEL_ID,
		components: ["thermostat1", "thermostat2", "deviceInformation"],
		onStateChange(state) {
			if (state === "connected" && timer === undefined) {
				this.report({serialNumber: this.settings.registrationId});
				this.report({...deviceInformation(), swVersion: this.settings.firmwareVersion}, {component: "deviceInformation"});
				tick();
				timer = Timer.repeat(tick, this.settings.intervalMs ?? 10_000);
			}
			if (state === "closed") Timer.clear(timer);
		},
		onWritable(property) {
			return thermostat(property.component)?.onWritable(property);
		},
		onCommand(command) {
			if (command.component !== undefined) return thermostat(command.component)?.onCommand(command);
			if (command.name !== "reboot") return undefined;
			const delay = command.payload ?? 0;
			if (typeof delay !== "number" || !Number.isInteger(delay) || delay < 0 || delay > 3600)
				return {status: 400, payload: {message: "delay: a whole number of seconds from 0 to 3600"}};
			const reboot = platform.reboot;
			Timer.set(() => reboot ? reboot() : trace(`reboot: this platform cannot restart (asked after ${delay} s)\n`), delay * 1000 + 500);
			return {status: 200, payload: {}};
		},
	});
	return device;
}
