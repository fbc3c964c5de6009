/*
 * Where a real sensor plugs in on the ESP32: a TI TMP102 on I2C (the manifest maps the module
 * "sensor" here on esp32 builds, and to ../sensor.ts, a simulation, elsewhere). The wiring comes
 * from the manifest's config: sensor.sda, sensor.scl (GPIO 21 and 22 on an ESP32 DevKit) and
 * sensor.address (0x48, ADD0 to ground). Another sensor only has to implement read(). Without one
 * answering, it says so once and carries on simulated, so a bare board still shows the flow.
 */
import I2C from "pins/i2c";
import config from "mc/config";
import {createSensor as createSimulated, type Sensor} from "simulated-sensor";

export type {Sensor};

const TEMPERATURE_REGISTER = 0;

export function createSensor(): Sensor {
	const wiring = (config as {sensor?: {sda?: number; scl?: number; address?: number}}).sensor ?? {};
	let i2c: I2C | undefined;
	let simulated: Sensor | undefined;
	let last: number | undefined;
	try {
		i2c = new I2C({sda: wiring.sda ?? 21, scl: wiring.scl ?? 22, address: wiring.address ?? 0x48, hz: 400_000});
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
			trace(`sensor: no TMP102 at 0x${(wiring.address ?? 0x48).toString(16)} on SDA ${wiring.sda ?? 21}, SCL ${wiring.scl ?? 22}; simulated readings\n`);
			i2c?.close();
			simulated = createSimulated();
			return simulated.read(target);
		},
	};
}
