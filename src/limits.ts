/*
 * How much of what the hub sends the device takes, in one place. IoT Hub allows far more than a
 * small device can hold (cloud-to-device messages of 64 KB, method payloads of 128 KB, twin
 * documents of 32 KB per section): anything over these limits is consumed without being buffered
 * and refused the way Azure expects (src/hub/*), so the defaults follow the ESP32 firmware's heap,
 * not the hub's. Raise them with the settings of the same names when an application's heap has
 * room (README, "Limits").
 *
 * Measured (bench/limits.ts) with the reference firmware on the simulator with the ESP32
 * firmware's creation sizes (48 KB of chunks, fixed; about 11 KB in use at rest): the largest
 * cloud-to-device message, method payload and desired patch it takes is 16 KB each, and 18 KB is
 * the first that runs it out of memory (what a message costs beside its own bytes is the TLS
 * record it arrives in, up to 16 KB, while it is decrypted). Each default is half of that: one
 * message at its limit leaves as much again for the application's own data and for a second
 * message arriving while the first is handled. 8 KB of twin holds an ADU deployment's desired
 * properties (about 5 KB) with the agent's reported state beside them.
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
