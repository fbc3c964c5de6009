/*
 * One thermostat component of the controller (dtmi:com:example:Thermostat;1 and ;2), as
 * Microsoft's component sample has it (azure-sdk-for-c, pnp/pnp_thermostat_component.c):
 * telemetry {"temperature": t} with the component in $.sub; maxTempSinceLastReboot reported under
 * the component ({"thermostat1": {"__t": "c", ...}}); the writable targetTemperature acknowledged
 * under the component; the command <component>*getMaxMinReport. Its state lives in the closure
 * made by createThermostat, so that the module itself holds none (it is preloaded).
 */
import type {Acknowledgement, CommandRequest, CommandResponse, Device, WritableProperty} from "azure-iot/device";
import type {Sensor} from "./hardware.js";

export interface Thermostat {
	readonly component: string;
	/** Takes a reading and sends it; reports maxTempSinceLastReboot when it rose. */
	tick(device: Device): void;
	onWritable(property: WritableProperty): Acknowledgement | undefined;
	onCommand(command: CommandRequest): CommandResponse | undefined;
}

const round = (n: number) => Math.round(n * 100) / 100;
/** `%Y-%m-%dT%H:%M:%SZ`, as the sample writes endTime. */
const dateTime = (ms: number) => new Date(ms).toISOString().slice(0, 19) + "Z";

export function createThermostat(component: string, sensor: Sensor): Thermostat {
	let target: number | undefined;
	let current = 0, max = -Infinity, min = Infinity, sum = 0, count = 0;
	let reportedMax: number | undefined;
	const take = () => {
		current = round(sensor.read(target));
		max = Math.max(max, current);
		min = Math.min(min, current);
		sum += current;
		count++;
	};
	return {
		component,
		tick(device) {
			take();
			device.send({temperature: current}, {component});
			if (max !== reportedMax) {
				reportedMax = max;
				device.report({maxTempSinceLastReboot: max}, {component});
			}
		},
		onWritable(property) {
			if (property.name !== "targetTemperature") return undefined; // not in the model: no acknowledgement
			const value = property.value;
			if (typeof value !== "number" || !Number.isFinite(value))
				return {status: 400, value: target ?? null, description: "targetTemperature: a number of degrees Celsius"};
			target = value;
			return {status: 200, description: "success"};
		},
		onCommand(command) {
			if (command.name !== "getMaxMinReport") return undefined; // 404
			const since = command.payload;
			if (typeof since !== "string" || Number.isNaN(Date.parse(since)))
				return {status: 400, payload: {message: "since: give a date and time, such as \"2024-01-01T00:00:00Z\""}};
			if (!count) take();
			return {status: 200, payload: {maxTemp: max, minTemp: min, avgTemp: round(sum / count), startTime: since, endTime: dateTime(Date.now())}};
		},
	};
}
