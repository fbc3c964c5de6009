/*
 * One error type for everything the core reports, so that applications can switch on a stable
 * `code` and people can read `message`, which always says what went wrong and how to fix it.
 * Messages never carry keys or tokens.
 */

export type ErrorCode =
	| "config"            // bad configuration: the message names the field
	| "tls"               // certificate or handshake refused
	| "network"           // DNS, refused, reset, timeout
	| "mqtt.protocol"     // malformed or unexpected packet from the server
	| "mqtt.tooLarge"     // packet over the size limit
	| "mqtt.connack"      // CONNACK refused: `status` holds the return code
	| "mqtt.closed"       // the connection ended while the operation was pending
	| "mqtt.timeout"      // no reply in time (CONNACK, SUBACK, PINGRESP, PUBACK)
	| "mqtt.refused"      // SUBACK refused a topic (0x80)
	| "dps.unauthorized"  // 401: wrong key or id scope
	| "dps.notFound"      // 404: no enrollment for this registration id
	| "dps.forbidden"     // 403
	| "dps.failed"        // registration status "failed"
	| "dps.disabled"      // enrollment disabled
	| "dps.badReply"      // malformed reply from DPS
	| "dps.timeout"       // gave up after the configured time or attempts
	| "dps.rejected"      // any other 4xx
	| "dps.closed"        // the provisioning client was closed
	| "hub.unauthorized"  // CONNACK 4/5: credentials refused or device gone: re-provision
	| "hub.unavailable"   // CONNACK 3
	| "hub.badReply"      // malformed twin or method reply
	| "hub.rejected"      // twin request answered with a non-2xx status
	| "hub.closed"        // the client was closed
	| "hub.tooLarge"      // the hub sent more than the device's limit for that kind of message: refused, not buffered
	| "device.closed"     // the Device was closed
	| "queue.full"        // the outbound queue is full: the message was not accepted
	// Device Update (src/device/update.ts): why an update was refused or failed; the reason is in the event.
	| "adu.request"       // the deployment request or its manifest could not be read
	| "adu.signature"     // the manifest's signature was refused (JWS chain, root key, hash of the manifest)
	| "adu.incompatible"  // not for this device: compatibility, steps, handler, files, no URL, refused by the application
	| "adu.alreadyInstalled" // the device runs what the update installs
	| "adu.tooLarge"      // the image does not fit the space for it
	| "adu.download"      // the download failed (after its resumes) or had the wrong size
	| "adu.hash"          // the image as written does not have the signed SHA-256
	| "adu.install"       // the image could not be made bootable
	| "adu.rolledBack";   // the new image did not reach the hub in time: the device went back to the old one

export class AzureIoTError extends Error {
	readonly code: ErrorCode;
	/** HTTP-like status from DPS or the twin, or CONNACK return code, where there was one. */
	readonly status?: number;
	/** Seconds the server asked us to wait, where it said so. */
	readonly retryAfter?: number;
	/** Whether trying again later may succeed. */
	readonly retriable: boolean;

	constructor(code: ErrorCode, message: string, extra: {status?: number; retryAfter?: number; retriable?: boolean} = {}) {
		super(message);
		this.code = code;
		if (extra.status !== undefined) this.status = extra.status;
		if (extra.retryAfter !== undefined) this.retryAfter = extra.retryAfter;
		this.retriable = extra.retriable ?? false;
	}
}

// Not `this.name = ...` in the constructor: Error.prototype is frozen in the firmware image, and
// assigning a property that a frozen prototype holds throws in XS ("set name: not writable"), which
// turned every error on the device into that one. Defined once on this class's own prototype instead.
Object.defineProperty(AzureIoTError.prototype, "name", {value: "AzureIoTError", writable: true, configurable: true});

export function configError(field: string, problem: string, fix: string): AzureIoTError {
	return new AzureIoTError("config", `${field}: ${problem}. ${fix}`);
}
