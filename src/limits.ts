/*
 * How much of what the hub sends the device takes, in one place. IoT Hub allows far more than a
 * small device can hold (cloud-to-device messages of 64 KB, method payloads of 128 KB, twin
 * documents of 32 KB per section): anything over these limits is consumed without being buffered
 * and refused the way Azure expects (src/hub/*), so the defaults follow the ESP32 firmware's heap,
 * not the hub's. Measured on the simulator with the ESP32 firmware's creation sizes
 * (docs/reliability.md, "A hostile hub"); raise them with the settings of the same names when an
 * application's heap has room (README, "Limits").
 */

export interface IncomingLimits {
	/** A cloud-to-device message's body. */
	maxMessageBytes: number;
	/** A direct method's (command's) payload. */
	maxMethodBytes: number;
	/** A twin document (the reply to a GET, desired and reported together) or a desired patch. */
	maxTwinBytes: number;
}

export const DEFAULT_LIMITS: Readonly<IncomingLimits> = Object.freeze({
	maxMessageBytes: 8192,
	maxMethodBytes: 8192,
	maxTwinBytes: 8192,
});

/** The most IoT Hub itself sends, and so the most a limit can usefully be. */
export const HUB_MAXIMUM_BYTES = 256 * 1024;
