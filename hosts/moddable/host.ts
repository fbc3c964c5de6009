/*
 * The host adapter (src/host.ts) on the Moddable SDK: the same for the ESP32 and the Linux simulator.
 *
 * TLS is the SDK's SecureSocket (its JS TLS 1.2 over the `socket` module). It is used rather than
 * the ECMA-419 TLS socket because a certificate failure there escapes as an unhandled exception and
 * aborts the VM; SecureSocket catches it and reports socket error -2, which this file turns into
 * onClose({kind: "tls"}) with the reason.
 *
 * Trust: the roots of each ConnectOptions are registered on that session's own CertificateManager,
 * never globally (CertificateManager.register would pile up across connections, so a test root
 * could outlive the connection that asked for it). The manifest ships no caN.der store files, so
 * the SDK's built-in index (ca.ski) can match nothing: only the given roots anchor a chain.
 *
 * X.509: ConnectOptions.clientCertificates/clientKey go to the SDK's TLS as they are (leaf first, RSA
 * PKCS#8 key), checked beforehand by src/x509.ts. Such a connection never resumes a TLS session:
 * see SESSION CACHE below.
 *
 * This module is preloaded (built at build time, kept in flash), so it must not read anything of the
 * device when it loads: Preference is used only from ./storage and ./platform, when called. It imports the core by its
 * module specifiers (azure-iot/...): the core itself never imports a host.
 */
import config from "mc/config";
import SecureSocket from "securesocket";
import {Socket} from "socket";
import Timer from "timer";
import {Digest} from "crypt";
import HMAC from "hmac";
import Modular from "modular";
import type {Connection, ConnectionHandlers, ConnectOptions, HostAdapter, HostError, Sha256, Storage, TimerHandle} from "azure-iot/host";

// Socket callback messages (modules/network/socket/socket.js).
const CONNECTED = 1, READABLE = 2, WRITABLE = 3, DISCONNECTED = -1;

/**
 * Writes are cut to this size at most: each chunk becomes one TLS record, and on the ESP32 a write
 * larger than the free lwIP send buffer throws "can't write all data" (CONFIG_LWIP_TCP_SND_BUF_DEFAULT
 * is 8192, less whatever is still unacknowledged).
 */
const MAX_CHUNK = 2048;
/** Plain TCP reads are taken at most this much at a time (a TLS record is at most 16 KB; a plain read has no such bound). */
const MAX_READ = 4096;

/** What SecureSocket has beyond its published typings: the members this file relies on. */
interface SecureSocketInternals {
	callback: (message: number, value?: number) => void;
	handshaking?: boolean;
	closing?: boolean | number;
	sock?: TcpSocket;
	ssl?: {certificateManager: {register(certificate: ArrayBuffer): void}};
	messageHandler(bytesAvailable: number): void;
	read(type: typeof ArrayBuffer): ArrayBuffer;
	write(): number;
	write(data: ArrayBufferLike | Uint8Array): void;
	close(): void;
}
const SecureSocketBase = SecureSocket as unknown as new (dictionary: Record<string, unknown>) => SecureSocketInternals;

/** The SDK's TCP socket as SecureSocket's TLS uses it: read(ArrayBuffer, n), read() for the count, write() for the room. */
interface TcpSocket {
	callback: (message: number, value?: number) => void;
	read(...args: unknown[]): unknown;
	write(): number;
	write(data: ArrayBuffer): void;
	close(): void;
}

/**
 * Set by hosts/sim/manifest.json only. The simulators' socket (modules/network/socket/lin/modSocket.c,
 * and the mac and win ones) copies each write into a fixed 1,024-byte buffer and throws "can't write
 * all data" for anything larger, while SecureSocket writes each TLS handshake message as one record
 * (ssl/session doProtocol). A Certificate message with a leaf and its intermediate is about 2 KB, so
 * the handshake died there and the server saw the client hang up. The ESP32's lwIP socket takes a
 * write up to its free send buffer (8 KB, all but free at that point of the handshake), so there
 * SecureSocket keeps the socket it made.
 */
const SPLIT_SOCKET_WRITES = (config as Record<string, unknown>).socketSplitWrites === true;

/**
 * Puts itself between SecureSocket and its TCP socket and cuts each write into pieces the
 * simulator's 1 KB buffer takes. The simulator sends every piece at once (send() on a socket whose
 * kernel buffer is far larger), so its buffer is empty again after each one and the pieces follow
 * each other in the same turn. Reads, close and the callback are the socket's own.
 */
class SplitWritesSocket implements TcpSocket {
	private _socket: TcpSocket;

	constructor(socket: TcpSocket) {
		this._socket = socket;
	}

	get callback(): (message: number, value?: number) => void {
		return this._socket.callback;
	}

	set callback(callback: (message: number, value?: number) => void) {
		this._socket.callback = callback;
	}

	read(...args: unknown[]): unknown {
		return this._socket.read(...args);
	}

	write(): number;
	write(data: ArrayBuffer): void;
	write(data?: ArrayBuffer): number | void {
		if (data === undefined) return this._socket.write();
		const bytes = new Uint8Array(data);
		for (let offset = 0; offset < bytes.length;) {
			// With no room at all, the socket's own write throws, as it would have without this class.
			const size = Math.min(bytes.length - offset, Math.max(1, this._socket.write()));
			this._socket.write(size === bytes.length ? data : bytes.slice(offset, offset + size).buffer);
			offset += size;
		}
	}

	close(): void {
		this._socket.close();
	}
}

/**
 * Records what SecureSocket swallows: whether TCP came up (the handshake starts on the first
 * messageHandler call) and the exception that ended the session, so the error can say why.
 */
class PinnedSecureSocket extends SecureSocketBase {
	tcpUp = false;
	/** Bytes came from the server: without them a failure cannot be about its certificate. */
	received = false;
	failure: string | undefined;

	constructor(dictionary: Record<string, unknown>, roots: readonly Uint8Array[]) {
		super(dictionary);
		// Before any write: the TCP connection only comes up in a later turn, and SecureSocket reads
		// this.sock afresh for every read and write.
		if (SPLIT_SOCKET_WRITES && this.sock) this.sock = new SplitWritesSocket(this.sock);
		try {
			for (const root of roots)
				this.ssl!.certificateManager.register(exactBuffer(root));
		}
		catch (e) {
			super.close();
			throw e;
		}
	}

	/**
	 * Closes the TCP socket on the next turn, never inside a socket callback: the Linux socket
	 * (modules/network/socket/lin/modSocket.c) releases its host object after the callback returns,
	 * and a socket closed inside the callback may be collected by then, which crashes mcsim
	 * (SIGSEGV in socketConnected; seen when a refused connect() reports "connected" and the
	 * first write fails). SecureSocket ignores every later callback once `closing` is set.
	 */
	override close(): void {
		const sock = this.sock;
		this.closing = true;
		delete this.ssl;
		delete this.sock;
		if (sock) Timer.set(() => {
			try {
				sock.close();
			}
			catch {
				// the socket had already been torn down underneath (peer closed)
			}
		});
	}

	override messageHandler(bytesAvailable: number): void {
		if (this.handshaking) this.tcpUp = true;
		if (bytesAvailable > 0) this.received = true;
		try {
			super.messageHandler(bytesAvailable);
		}
		catch (e) {
			this.failure ??= errorText(e);
			throw e;
		}
	}
}

class ModdableConnection implements Connection {
	private _socket: PinnedSecureSocket | undefined;
	private _handlers: ConnectionHandlers;
	private _options: ConnectOptions;
	private _queue: Uint8Array[] = [];
	private _established = false;
	/** onConnect has been delivered: data before that waits in _early. */
	private _ready = false;
	private _early: Uint8Array[] = [];
	private _closed = false;
	private _log: ((line: string) => void) | undefined;

	constructor(options: ConnectOptions, handlers: ConnectionHandlers, log: ((line: string) => void) | undefined) {
		this._handlers = handlers;
		this._options = options;
		this._log = log;
		if (!options.roots.length) throw new Error("no trusted roots given: refusing to connect without a pinned root");
		try {
			const secure: Record<string, unknown> = {
				serverName: options.serverName ?? options.host,
				protocolVersion: 0x303,
			};
			if (options.clientCertificates?.length) {
				// The SDK's TLS sends these in this order and signs with the key only for certificates[0]
				// (ssl_cert.js getKey compares the buffers), so exact buffers, the leaf first.
				secure.clientCertificates = options.clientCertificates.map(exactBuffer);
				if (options.clientKey) secure.clientKey = exactBuffer(options.clientKey);
				/*
				 * SESSION CACHE: off for a client certificate. The SDK keeps one TLS session per server
				 * name, whatever identity made it (ssl/cache), and a resumed handshake sends no
				 * Certificate: a server that resumes then sees the identity of the earlier connection
				 * (another certificate, or none after a SAS connection to the same host), never the one
				 * configured now. A full handshake costs one RSA signature per connect, and IoT Hub
				 * verifies the device's certificate on every connect anyway.
				 */
				secure.cache = false;
			}
			this._socket = new PinnedSecureSocket({
				host: options.host,
				port: options.port,
				// MQTT sends small packets and waits for the reply (PUBACK, SUBACK): Nagle's algorithm
				// would hold each one back for the previous ACK. lwIP honours this; the simulator ignores it.
				noDelay: true,
				secure,
			}, options.roots);
		}
		catch (e) {
			// Reported like any other failure (the contract: onClose, never a throw from connect), but
			// not from inside connect(): the caller has not got the Connection yet.
			const error: HostError = {kind: "tls", message: `cannot set up TLS for ${options.host}: ${errorText(e)}. Check the clock and the pinned roots`};
			Timer.set(() => this._report(error));
			return;
		}
		this._socket.callback = (message, value) => this._onSocket(message, value ?? 0);
	}

	write(bytes: Uint8Array): void {
		if (this._closed || !this._socket) throw new Error("connection closed");
		if (bytes.length) this._queue.push(bytes);
		if (this._established) this._flush();
	}

	close(): void {
		if (this._closed) return;
		this._closed = true;
		this._queue = [];
		const socket = this._socket;
		this._socket = undefined;
		try {
			socket?.close();
		}
		catch {
			// already closed underneath
		}
	}

	private _onSocket(message: number, value: number): void {
		if (this._closed) return;
		// Anything thrown in here would be swallowed by SecureSocket and turned into socket error -2:
		// catch it so that the reason is reported instead of lost.
		try {
			switch (message) {
				case CONNECTED:
					this._established = true;
					// The handshake completes deep inside SecureSocket's record processing: let the
					// core start its session (CONNECT, SAS, first writes) on a fresh stack instead.
					Timer.set(() => {
						if (this._closed) return;
						try {
							this._ready = true;
							this._handlers.onConnect();
							for (const bytes of this._early.splice(0)) if (!this._closed) this._handlers.onData(bytes);
							this._flush();
						}
						catch (e) {
							this._fail(e);
						}
					});
					break;
				case READABLE: {
					const socket = this._socket;
					if (!socket || value <= 0) break;
					// At most 1 KB of one TLS record's plaintext a call (SecureSocket hands a record over in such
					// pieces), passed on as it is: the MQTT parser copies it once into the payload it assembles,
					// or skips it, as each piece arrives (src/mqtt/codec.ts), never into a packet-sized buffer.
					const data = socket.read(ArrayBuffer);
					if (!data.byteLength) break;
					if (this._ready) this._handlers.onData(new Uint8Array(data));
					else this._early.push(new Uint8Array(data));
				}
					break;
				case WRITABLE:
					this._flush();
					break;
				default:
					if (message < 0) this._report(this._classify(message));
					break;
			}
		}
		catch (e) {
			this._fail(e);
		}
	}

	private _fail(e: unknown): void {
		const text = errorText(e);
		this._log?.(`connection handler threw: ${text}`);
		this._report({kind: "io", message: `connection to ${this._options.host} closed after an internal error: ${text}`});
	}

	private _flush(): void {
		const socket = this._socket;
		while (socket && !this._closed && this._queue.length) {
			const available = socket.write();
			if (available <= 0) return; // resumes on the next writable callback
			const head = this._queue[0];
			const size = Math.min(available, MAX_CHUNK, head.length);
			socket.write(exactBuffer(size === head.length ? head : head.subarray(0, size)));
			if (size === head.length) this._queue.shift();
			else this._queue[0] = head.subarray(size);
		}
	}

	private _classify(message: number): HostError {
		const socket = this._socket;
		const where = `${this._options.host}:${this._options.port}`;
		const why = socket?.failure;
		// On Linux a refused connect() still shows as "connected"; the first write then fails.
		if (!socket?.tcpUp || (!socket.received && why?.includes("write failed")))
			return {kind: "refused", message: `cannot connect to ${where}: refused, unreachable or the name did not resolve`};
		if (!this._established) {
			if (!socket.received)
				return message === DISCONNECTED
					? {kind: "closed", message: `${where} closed the connection before the TLS handshake`}
					: {kind: "reset", message: `the connection to ${where} was reset before the TLS handshake${why ? ` (${why})` : ""}`};
			return {kind: "tls", message: why ? `TLS handshake with ${where} failed: ${why}` : `${where} closed the connection during the TLS handshake`};
		}
		if (why) return {kind: "io", message: `TLS error on the connection to ${where}: ${why}`};
		if (message === DISCONNECTED) return {kind: "closed", message: `connection closed by ${where}`};
		return {kind: "reset", message: `connection to ${where} was reset`};
	}

	private _report(error: HostError): void {
		if (this._closed) return;
		this.close();
		try {
			this._handlers.onClose(error);
		}
		catch (e) {
			this._log?.(`onClose handler threw: ${errorText(e)}`);
		}
	}
}

/**
 * Plain TCP (ConnectOptions.secure false): for Device Update's http:// file URLs only, whose images
 * are trusted for their signed hash. The same rules as the TLS connection: onConnect on a fresh
 * stack, the socket closed on the next turn (see PinnedSecureSocket.close), writes cut to what the
 * socket takes.
 */
class PlainConnection implements Connection {
	private _socket: TcpSocket | undefined;
	private _handlers: ConnectionHandlers;
	private _where: string;
	private _queue: Uint8Array[] = [];
	private _connected = false;
	private _received = false;
	private _closed = false;
	private _log: ((line: string) => void) | undefined;

	constructor(options: ConnectOptions, handlers: ConnectionHandlers, log: ((line: string) => void) | undefined) {
		this._handlers = handlers;
		this._where = `${options.host}:${options.port}`;
		this._log = log;
		try {
			this._socket = new Socket({host: options.host, port: options.port, noDelay: true}) as unknown as TcpSocket;
		}
		catch (e) {
			const error: HostError = {kind: "refused", message: `cannot connect to ${this._where}: ${errorText(e)}`};
			Timer.set(() => this._report(error));
			return;
		}
		this._socket.callback = (message, value) => this._onSocket(message, value ?? 0);
	}

	write(bytes: Uint8Array): void {
		if (this._closed || !this._socket) throw new Error("connection closed");
		if (bytes.length) this._queue.push(bytes);
		if (this._connected) this._flush();
	}

	close(): void {
		if (this._closed) return;
		this._closed = true;
		this._queue = [];
		const socket = this._socket;
		this._socket = undefined;
		if (socket) Timer.set(() => {
			try {
				socket.close();
			}
			catch {
				// torn down underneath already
			}
		});
	}

	private _onSocket(message: number, value: number): void {
		if (this._closed) return;
		try {
			if (message === CONNECTED) {
				this._connected = true;
				Timer.set(() => {
					if (this._closed) return;
					try {
						this._handlers.onConnect();
						this._flush();
					}
					catch (e) {
						this._fail(e);
					}
				});
			}
			else if (message === READABLE) {
				// In pieces: what lwIP holds may be larger than a chunk the application's heap can spare at once.
				for (let left = value; left > 0 && !this._closed && this._socket;) {
					const data = this._socket.read(ArrayBuffer, Math.min(left, MAX_READ)) as ArrayBuffer;
					if (!data.byteLength) break;
					left -= data.byteLength;
					this._received = true;
					this._handlers.onData(new Uint8Array(data));
				}
			}
			else if (message === WRITABLE) this._flush();
			else if (message < 0) {
				if (!this._received && !this._connected) this._report({kind: "refused", message: `cannot connect to ${this._where}: refused, unreachable or the name did not resolve`});
				else this._report(message === DISCONNECTED ? {kind: "closed", message: `connection closed by ${this._where}`} : {kind: "reset", message: `connection to ${this._where} was reset`});
			}
		}
		catch (e) {
			this._fail(e);
		}
	}

	private _flush(): void {
		const socket = this._socket;
		while (socket && !this._closed && this._queue.length) {
			let available: number;
			try {
				available = socket.write();
			}
			catch (e) {
				// On Linux a refused connect() still shows as "connected"; the first write then fails.
				this._report(this._received ? {kind: "reset", message: `connection to ${this._where} failed: ${errorText(e)}`} : {kind: "refused", message: `cannot connect to ${this._where}: ${errorText(e)}`});
				return;
			}
			if (available <= 0) return;
			const head = this._queue[0];
			const size = Math.min(available, MAX_CHUNK, head.length);
			try {
				socket.write(exactBuffer(size === head.length ? head : head.subarray(0, size)));
			}
			catch (e) {
				this._report(this._received ? {kind: "reset", message: `connection to ${this._where} failed: ${errorText(e)}`} : {kind: "refused", message: `cannot connect to ${this._where}: ${errorText(e)}`});
				return;
			}
			if (size === head.length) this._queue.shift();
			else this._queue[0] = head.subarray(size);
		}
	}

	private _fail(e: unknown): void {
		const text = errorText(e);
		this._log?.(`connection handler threw: ${text}`);
		this._report({kind: "io", message: `connection to ${this._where} closed after an internal error: ${text}`});
	}

	private _report(error: HostError): void {
		if (this._closed) return;
		this.close();
		try {
			this._handlers.onClose(error);
		}
		catch (e) {
			this._log?.(`onClose handler threw: ${errorText(e)}`);
		}
	}
}

export interface ModdableHostOptions {
	/** Persistent storage: hosts/moddable/storage's PreferenceStorage on the device. None: nothing is cached across boots. */
	storage?: Storage;
	/** Diagnostic lines; default trace(). */
	log?: (line: string) => void;
	/** Default Math.random: esp_random() on the ESP32, a hardware generator. */
	random?: () => number;
}

export function createModdableHost(options: ModdableHostOptions = {}): HostAdapter {
	return Object.freeze(new ModdableHost(options.log ?? print, options.storage, options.random));
}

/** A line on the console: trace() (the serial console on the ESP32, stdout under mcsim). */
export function print(line: string): void {
	trace(line + "\n");
}

/**
 * The adapter as an object of a class, not a literal of closures: its methods stay in flash with
 * the preloaded module, where each closure would cost about 6 heap slots (BENCHMARKS.md).
 */
class ModdableHost implements HostAdapter {
	readonly log: (line: string) => void;
	readonly storage: Storage | undefined;
	private _random: (() => number) | undefined;

	constructor(log: (line: string) => void, storage: Storage | undefined, random: (() => number) | undefined) {
		this.log = log;
		this.storage = storage;
		this._random = random;
	}

	connect(o: ConnectOptions, h: ConnectionHandlers): Connection {
		return o.secure === false ? new PlainConnection(o, h, this.log) : new ModdableConnection(o, h, this.log);
	}

	setTimer(callback: () => void, ms: number): TimerHandle {
		const log = this.log;
		// An exception escaping a timer callback aborts the VM: contain it and say so.
		return Timer.set(() => {
			try {
				callback();
			}
			catch (e) {
				log(`timer callback threw: ${errorText(e)}`);
			}
		}, Math.max(0, ms));
	}

	clearTimer(handle: TimerHandle | undefined): void {
		if (handle !== undefined) Timer.clear(handle as Timer);
	}

	now(): number {
		return Date.now();
	}

	random(): number {
		return this._random ? this._random() : Math.random();
	}

	hmacSha256(key: Uint8Array, message: Uint8Array): Uint8Array {
		return new Uint8Array(new HMAC(new Digest("SHA256"), exactBuffer(key)).process(exactBuffer(message)));
	}

	sha256(): Sha256 {
		const digest = new Digest("SHA256");
		return {
			// The native takes any buffer view (xsmcGetBufferReadable): no copy of each chunk.
			update: (bytes: Uint8Array) => digest.write(bytes as unknown as ArrayBuffer),
			digest: () => new Uint8Array(digest.close()),
		};
	}

	// The SDK's native exponentiation (the one its TLS uses for RSA): the JavaScript loop of
	// src/adu/rsa.ts leaves two RSA-3072 products (1 KB of chunks) of garbage per step, this keeps
	// a few numbers of the modulus' size in a pool and frees them on return. Only the
	// exponentiation is the SDK's: the padding check stays src/adu/rsa.ts's (pkcs1_5.js skips the
	// DigestInfo comparison).
	modPow(base: bigint, e: bigint, n: bigint): bigint {
		return new Modular(n).exp(base, e);
	}
}

Object.freeze(ModdableHost.prototype);
Object.freeze(ModdableHost);

/**
 * The bytes of a view as a buffer of exactly that length (SDK natives take whole buffers): the view's
 * own buffer when it covers all of it, whatever its kind (a Resource in flash, for the roots: the SDK
 * reads its own roots from resources too), else a copy.
 */
export function exactBuffer(bytes: Uint8Array): ArrayBuffer {
	if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return bytes.buffer as ArrayBuffer;
	return bytes.slice().buffer as ArrayBuffer;
}

export function errorText(e: unknown): string {
	return e instanceof Error ? e.message : String(e);
}
