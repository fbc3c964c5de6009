/*
 * Where real sensors plug in on the ESP32: two TI TMP102 on one I2C bus (the manifest maps the
 * module "hardware" here on esp32 builds, and to ../hardware.ts, a simulation, elsewhere). The
 * wiring comes from the manifest's config: sensor.sda, sensor.scl (GPIO 21 and 22 on an ESP32
 * DevKit) and sensor.addresses (0x48 and 0x49: ADD0 to ground, ADD0 to V+); the description of the
 * board from config deviceInformation. Another sensor only has to implement read(). A sensor that
 * never answers is said once and simulated, so a bare board still shows the flow.
 */
import I2C from "pins/i2c";
import config from "mc/config";
import {createSensor as createSimulated, type DeviceInformation, type Sensor} from "simulated-hardware";

export type {DeviceInformation, Sensor};

const TEMPERATURE_REGISTER = 0;

interface Config {
	sensor?: {sda?: number; scl?: number; addresses?: string};
	deviceInformation?: Partial<DeviceInformation>;
}

export function createSensor(which: number): Sensor {
	const wiring = (config as Config).sensor ?? {};
	const address = Number((wiring.addresses ?? "72,73").split(",")[which]);
	const sda = wiring.sda ?? 21, scl = wiring.scl ?? 22;
	let i2c: I2C | undefined;
	let simulated: Sensor | undefined;
	let last: number | undefined;
	try {
		i2c = new I2C({sda, scl, address, hz: 400_000});
	}
	catch {
		i2c = undefined;
	}
	return {
		read(target) {
			if (simulated) return simulated.read(target);
			try {
				if (i2c) {
					i2c.write(TEMPERATURE_REGISTER);
					// pins/i2c returns the bytes (its typings say void), or undefined when the sensor did not answer.
					const bytes = i2c.read(2) as unknown as Uint8Array | undefined;
					// 12 bits, signed, 1/16 °C.
					if (bytes && bytes.length === 2) return last = (((bytes[0] << 8) | bytes[1]) << 16 >> 20) * 0.0625;
				}
			}
			catch {
				// no answer
			}
			// A sensor that answered before keeps its last reading through a glitch.
			if (last !== undefined) return last;
			trace(`sensor ${which}: no TMP102 at 0x${address.toString(16)} on SDA ${sda}, SCL ${scl}; simulated readings\n`);
			i2c?.close();
			simulated = createSimulated(which);
			return simulated.read(target);
		},
	};
}

export function deviceInformation(): DeviceInformation {
	const board = (config as Config).deviceInformation ?? {};
	return {
		manufacturer: board.manufacturer ?? "Espressif Systems",
		model: board.model ?? "ESP32",
		osName: "Moddable SDK on ESP-IDF",
		processorArchitecture: board.processorArchitecture ?? "Xtensa LX6",
		processorManufacturer: board.processorManufacturer ?? "Espressif Systems",
		totalStorage: board.totalStorage ?? 4096,
		totalMemory: board.totalMemory ?? 520,
	};
}
