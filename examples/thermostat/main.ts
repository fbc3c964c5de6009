/*
 * IoT Plug and Play's thermostat, dtmi:com:example:Thermostat;1 (../models/thermostat-1.json), as
 * Microsoft's own sample implements it (azure-sdk-for-c, paho_iot_pnp_sample.c):
 * - telemetry {"temperature": t} every intervalMs (the setting), from the first connect on;
 * - reported maxTempSinceLastReboot, at the first connect and whenever it rises;
 * - writable targetTemperature, from the twin at each connect and from every update: the reading
 *   heads for it, and it is acknowledged {"value": t, "ac": 200, "av": <desired version>,
 *   "ad": "success"}; a value that is not a number gets 400 with the target in use;
 * - command getMaxMinReport, whose request is `since` (a date and time): 200 {maxTemp, minTemp,
 *   avgTemp, startTime, endTime} over the readings since boot (startTime is `since`, as in the
 *   sample); 400 for a `since` that is not a date and time. Any other command gets 404.
 * Temperatures go out with at most two decimals, as the Embedded C SDK writes them.
 */
import Timer from "timer";
import {Device} from "azure-iot/device";
import {createPlatform} from "azure-iot/platform";
import {createSensor} from "./sensor.js";

const MODEL_ID = "dtmi:com:example:Thermostat;1";

const round = (n: number) => Math.round(n * 100) / 100;
/** `%Y-%m-%dT%H:%M:%SZ`, as the sample writes endTime. */
const dateTime = (ms: number) => new Date(ms).toISOString().slice(0, 19) + "Z";

export default function main(): Device {
	const sensor = createSensor();
	let target: number | undefined;
	let current = 0, max = -Infinity, min = Infinity, sum = 0, count = 0;
	let reportedMax: number | undefined;
	let timer: Timer | undefined;

	const take = () => {
		current = round(sensor.read(target));
		max = Math.max(max, current);
		min = Math.min(min, current);
		sum += current;
		count++;
	};
	const tick = () => {
		take();
		device.send({temperature: current});
		if (max !== reportedMax) {
			reportedMax = max;
			device.report({maxTempSinceLastReboot: max});
		}
	};

	const device = new Device({
		platform: createPlatform(),
		modelId: MODEL_ID,
		onStateChange(state) {
			if (state === "connected" && timer === undefined) {
				tick();
				timer = Timer.repeat(tick, this.settings.intervalMs ?? 10_000);
			}
			if (state === "closed") Timer.clear(timer);
		},
		onWritable(property) {
			if (property.component !== undefined || property.name !== "targetTemperature") return; // not in the model: no acknowledgement
			const value = property.value;
			if (typeof value !== "number" || !Number.isFinite(value))
				return {status: 400, value: target ?? null, description: "targetTemperature: a number of degrees Celsius"};
			target = value;
			return {status: 200, description: "success"};
		},
		onCommand(command) {
			if (command.component !== undefined || command.name !== "getMaxMinReport") return; // 404
			const since = command.payload;
			if (typeof since !== "string" || Number.isNaN(Date.parse(since)))
				return {status: 400, payload: {message: "since: give a date and time, such as \"2024-01-01T00:00:00Z\""}};
			if (!count) take();
			return {status: 200, payload: {maxTemp: max, minTemp: min, avgTemp: round(sum / count), startTime: since, endTime: dateTime(Date.now())}};
		},
	});
	return device;
}
