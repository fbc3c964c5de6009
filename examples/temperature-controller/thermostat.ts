/*
 * One thermostat component of the controller (dtmi:com:example:Thermostat;1 and ;2), as
 * Microsoft's component sample has it (azure-sdk-for-c, pnp/pnp_thermostat_component.c):
 * telemetry {"temperature": t} with the component in $.sub; maxTempSinceLastReboot reported under
 * the component ({"thermostat1": {"__t": "c", ...}}); the writable targetTemperature acknowledged
 * under the component; the command <component>*getMaxMinReport. A class, so that each component
 * is one object and its methods stay in flash with the preloaded module (closures would cost heap
 * for every function of every component).
 */
import type {Acknowledgement, CommandRequest, CommandResponse, Device, WritableProperty} from "azure-iot/device";
import type {Sensor} from "./hardware.js";

const round = (n: number) => Math.round(n * 100) / 100;
/** `%Y-%m-%dT%H:%M:%SZ`, as the sample writes endTime. */
const dateTime = (ms: number) => new Date(ms).toISOString().slice(0, 19) + "Z";

export class Thermostat {
	readonly component: string;
	private _sensor: Sensor;
	private _target: number | undefined;
	private _current = 0;
	private _max = -Infinity;
	private _min = Infinity;
	private _sum = 0;
	private _count = 0;
	private _reportedMax: number | undefined;

	constructor(component: string, sensor: Sensor) {
		this.component = component;
		this._sensor = sensor;
	}

	/** Takes a reading and sends it; reports maxTempSinceLastReboot when it rose. */
	tick(device: Device): void {
		this._take();
		device.send({temperature: this._current}, {component: this.component});
		if (this._max !== this._reportedMax) {
			this._reportedMax = this._max;
			device.report({maxTempSinceLastReboot: this._max}, {component: this.component});
		}
	}

	onWritable(property: WritableProperty): Acknowledgement | undefined {
		if (property.name !== "targetTemperature") return undefined; // not in the model: no acknowledgement
		const value = property.value;
		if (typeof value !== "number" || !Number.isFinite(value))
			return {status: 400, value: this._target ?? null, description: "targetTemperature: a number of degrees Celsius"};
		this._target = value;
		return {status: 200, description: "success"};
	}

	onCommand(command: CommandRequest): CommandResponse | undefined {
		if (command.name !== "getMaxMinReport") return undefined; // 404
		const since = command.payload;
		if (typeof since !== "string" || Number.isNaN(Date.parse(since)))
			return {status: 400, payload: {message: "since: give a date and time, such as \"2024-01-01T00:00:00Z\""}};
		if (!this._count) this._take();
		return {status: 200, payload: {maxTemp: this._max, minTemp: this._min, avgTemp: round(this._sum / this._count), startTime: since, endTime: dateTime(Date.now())}};
	}

	private _take(): void {
		const current = this._current = round(this._sensor.read(this._target));
		this._max = Math.max(this._max, current);
		this._min = Math.min(this._min, current);
		this._sum += current;
		this._count++;
	}
}

Object.freeze(Thermostat.prototype);
Object.freeze(Thermostat);
