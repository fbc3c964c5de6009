/*
 * A simulated temperature sensor: it drifts toward the thermostat's target, with a little noise,
 * so that telemetry, maxTempSinceLastReboot and getMaxMinReport change as on a real device. On the
 * ESP32 the manifest puts a real sensor in its place (esp32/sensor.ts).
 */

export interface Sensor {
	/** Degrees Celsius; the target is what the thermostat heats or cools toward, if it has one. */
	read(target?: number): number;
}

export function createSensor(): Sensor {
	let celsius = 20 + Math.random() * 4;
	return {
		read(target) {
			if (target !== undefined) celsius += (target - celsius) / 2;
			celsius += (Math.random() - 0.5) / 5;
			return celsius;
		},
	};
}
