/*
 * What a platform lends the protocol core. The core does no I/O of its own (as in Microsoft's
 * Embedded C SDK): sockets, TLS, timers, clock, randomness, HMAC and storage all come from here,
 * so the same core runs in XS on the device and under Node in the tests.
 */

import type {Sha256} from "./adu/hash.js";

export type {Sha256} from "./adu/hash.js";

/** Where and how to open a TLS connection (or, with secure false, a plain TCP one). */
export interface ConnectOptions {
	host: string;
	port: number;
	/**
	 * Default true. false: plain TCP, for Device Update's http:// file URLs only (ADU's own are
	 * http://; what makes the image trustworthy is the signed SHA-256, not the transport).
	 */
	secure?: boolean;
	/** Trusted roots as DER. Only these may anchor the server's chain; never empty in production (unused with secure false). */
	roots: readonly Uint8Array[];
	/** Name checked against the server certificate and sent as SNI; defaults to host. */
	serverName?: string;
	/** X.509 client identity: the leaf certificate first, then any intermediates, each DER. */
	clientCertificates?: readonly Uint8Array[];
	/** The leaf's private key: unencrypted PKCS#8 DER (RSA: the SDK's TLS signs with RSA only). */
	clientKey?: Uint8Array;
}

/** Why a connection ended, as the host saw it. */
export interface HostError {
	/** "tls" (certificate, handshake), "dns", "refused", "reset", "timeout", "closed" (peer closed cleanly) or "io". */
	kind: "tls" | "dns" | "refused" | "reset" | "timeout" | "closed" | "io";
	message: string;
}

export interface ConnectionHandlers {
	/** The TLS handshake completed: bytes may now be written. */
	onConnect(): void;
	/** Bytes received. They are the core's to keep: a host never reuses or changes them after the call. */
	onData(bytes: Uint8Array): void;
	/** Called once, for any end that the core did not ask for with close(). */
	onClose(error: HostError): void;
}

export interface Connection {
	/** Queues bytes for sending; throws when the connection is gone. */
	write(bytes: Uint8Array): void;
	/** Closes at once; onClose is not called afterwards. */
	close(): void;
}

export type TimerHandle = unknown;

export interface Storage {
	get(key: string): string | undefined;
	set(key: string, value: string): void;
	delete(key: string): void;
}

/** The host adapter: everything the core needs from the platform it runs on. */
export interface HostAdapter {
	connect(options: ConnectOptions, handlers: ConnectionHandlers): Connection;
	setTimer(callback: () => void, ms: number): TimerHandle;
	clearTimer(handle: TimerHandle | undefined): void;
	/** Wall-clock milliseconds since the Unix epoch (SAS expiry depends on it). */
	now(): number;
	/** Uniform in [0, 1): backoff jitter and request ids. */
	random(): number;
	hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array;
	/** A streaming SHA-256 (Device Update: the manifest and the image). */
	sha256?(): Sha256;
	/** base^e mod n, native where the platform has it (Device Update's RSA); the core's own BigInt loop otherwise. */
	modPow?(base: bigint, e: bigint, n: bigint): bigint;
	/** Small persistent key-value store (Preference on the device). Keys at most 15 characters. */
	storage?: Storage;
	/** Diagnostic lines. Never given secrets. */
	log?(line: string): void;
}

/**
 * Where a Device Update image goes and how the device boots it: the SDK's OTA on the ESP32 (the
 * next OTA partition, ESP-IDF's app rollback), a file on the simulator (tools/sim-runner.ts boots
 * it) and on Node.
 */
export interface ImageStore {
	/** Bytes an image may take: the size of the next OTA partition. */
	readonly capacity: number;
	/** Starts a new image of `size` bytes, dropping any unfinished one. Throws when it cannot (no partition, erase failed). */
	begin(size: number): ImageSink;
	/**
	 * "pending": the running image was installed by an update and is not confirmed yet: unless
	 * confirm() is called, the next restart goes back to the previous image. Absent: no such state
	 * (the simulator's runner decides, from outside).
	 */
	runningState?(): "pending" | "confirmed";
	/** Keeps the running image (ESP-IDF: esp_ota_mark_app_valid_cancel_rollback). */
	confirm?(): void;
	/** Goes back to the previous image and restarts (esp_ota_mark_app_invalid_rollback_and_reboot); does not return on the device. */
	rollback?(): void;
	/** Restarts into the image made bootable; absent: the platform's reboot. */
	restart?(): void;
}

/** One image being written. Writes are sequential: a resumed download continues where it stopped. */
export interface ImageSink {
	write(bytes: Uint8Array): void;
	/** Reads back what was written (flash, file), so that the hash is over the image as stored; absent: over the bytes as written. */
	read?(offset: number, length: number): Uint8Array;
	/** Makes the image the one to boot next. Throws when the image is refused (ESP-IDF checks it). */
	complete(): void;
	/** Drops the image; may be called more than once, and after complete() does nothing. */
	abort(): void;
}
