/*
 * The controller's hardware, simulated: two temperature sensors that drift toward their
 * thermostat's target with a little noise, and a description of the device for the
 * deviceInformation component. On the ESP32 the manifest puts real sensors and the board's
 * description in its place (esp32/hardware.ts).
 */

export interface Sensor {
	/** Degrees Celsius; the target is what the thermostat heats or cools toward, if it has one. */
	read(target?: number): number;
}

/** dtmi:azure:DeviceManagement:DeviceInformation;1 without swVersion (the firmware's version). */
export interface DeviceInformation {
	manufacturer: string;
	model: string;
	osName: string;
	processorArchitecture: string;
	processorManufacturer: string;
	/** Kilobytes. */
	totalStorage: number;
	/** Kilobytes. */
	totalMemory: number;
}

/** Sensor 0 and 1 (thermostat1 and thermostat2): an object of a class, whose method stays in flash. */
class SimulatedSensor implements Sensor {
	private _celsius: number;

	constructor(which: number) {
		this._celsius = 18 + which * 4 + Math.random() * 2;
	}

	read(target?: number): number {
		if (target !== undefined) this._celsius += (target - this._celsius) / 2;
		return this._celsius += (Math.random() - 0.5) / 5;
	}
}
Object.freeze(SimulatedSensor.prototype);
Object.freeze(SimulatedSensor);

export function createSensor(which: number): Sensor {
	return new SimulatedSensor(which);
}

export function deviceInformation(): DeviceInformation {
	return {
		manufacturer: "Moddable Azure IoT examples",
		model: "temperature-controller (simulated)",
		osName: "Moddable SDK",
		processorArchitecture: "simulator",
		processorManufacturer: "none",
		totalStorage: 0,
		totalMemory: 0,
	};
}
