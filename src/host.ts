/*
 * What a platform lends the protocol core. The core does no I/O of its own (as in Microsoft's
 * Embedded C SDK): sockets, TLS, timers, clock, randomness, HMAC and storage all come from here,
 * so the same core runs in XS on the device and under Node in the tests.
 */

/** Where and how to open a TLS connection. */
export interface ConnectOptions {
	host: string;
	port: number;
	/** Trusted roots as DER. Only these may anchor the server's chain; never empty in production. */
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

export interface Host {
	connect(options: ConnectOptions, handlers: ConnectionHandlers): Connection;
	setTimer(callback: () => void, ms: number): TimerHandle;
	clearTimer(handle: TimerHandle | undefined): void;
	/** Wall-clock milliseconds since the Unix epoch (SAS expiry depends on it). */
	now(): number;
	/** Uniform in [0, 1): backoff jitter and request ids. */
	random(): number;
	hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array;
	/** Small persistent key-value store (Preference on the device). Keys at most 15 characters. */
	storage?: Storage;
	/** Diagnostic lines. Never given secrets. */
	log?(line: string): void;
}
