/*
 * The Node host adapter (src/host.ts): node:tls sockets with only the given roots trusted, timers, the clock,
 * crypto's HMAC, and a JSON file (or memory) for storage. It lets the very same protocol core that
 * runs in XS run under Node, for the tests, the benchmarks and `npm start` without the SDK.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as tls from "node:tls";
import type {Connection, ConnectionHandlers, ConnectOptions, HostAdapter, HostError, Sha256, Storage} from "../../src/host.js";

export interface NodeHostOptions {
	/** JSON file for Storage; omitted: kept in memory. */
	storageFile?: string;
	log?: (line: string) => void;
	/** Replaces the wall clock (tests of token expiry). */
	now?: () => number;
}

export function derToPem(der: Uint8Array): string {
	const b64 = Buffer.from(der).toString("base64").replace(/(.{64})/g, "$1\n").replace(/\n$/, "");
	return `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`;
}

/** Reads a root certificate in PEM or DER; a PEM file may hold several. */
export function readRoots(path: string): Uint8Array[] {
	const data = fs.readFileSync(path);
	const text = data.toString("latin1");
	if (!text.includes("-----BEGIN CERTIFICATE-----")) return [new Uint8Array(data)];
	const roots = [...text.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)]
		.map(m => new Uint8Array(Buffer.from(m[1].replace(/\s+/g, ""), "base64")));
	if (!roots.length) throw new Error(`${path}: no certificate found. Give a PEM or DER root certificate.`);
	return roots;
}

function classify(error: NodeJS.ErrnoException): HostError {
	const code = error.code ?? "";
	if (code === "ECONNREFUSED") return {kind: "refused", message: error.message};
	if (code === "ENOTFOUND" || code === "EAI_AGAIN") return {kind: "dns", message: error.message};
	if (code === "ECONNRESET" || code === "EPIPE") return {kind: "reset", message: error.message};
	if (code === "ETIMEDOUT") return {kind: "timeout", message: error.message};
	if (/CERT|SELF_SIGNED|HOSTNAME|ALTNAME|SSL|TLS|UNABLE_TO|ERR_TLS/i.test(code + " " + error.message))
		return {kind: "tls", message: `${code ? code + ": " : ""}${error.message}`};
	return {kind: "io", message: error.message};
}

/**
 * node:tls options for an X.509 client identity: the chain as PEM, leaf first (Node sends it in that
 * order), and the PKCS#8 DER key as a KeyObject's PEM. Throws what node:crypto says about a bad key.
 */
function clientIdentity(options: ConnectOptions): Pick<tls.ConnectionOptions, "cert" | "key"> {
	if (!options.clientCertificates?.length) return {};
	if (!options.clientKey) throw new Error("clientCertificates given without clientKey");
	const key = crypto.createPrivateKey({key: Buffer.from(options.clientKey), format: "der", type: "pkcs8"});
	return {
		cert: options.clientCertificates.map(derToPem).join(""),
		key: key.export({format: "pem", type: "pkcs8"}),
	};
}

class NodeConnection implements Connection {
	/** Absent when the connection could not even be attempted (a client identity node:tls refused). */
	#socket: net.Socket | undefined;
	#closed = false;

	constructor(options: ConnectOptions, handlers: ConnectionHandlers) {
		if (options.secure === false) {
			// Plain TCP: Device Update's http:// file URLs (the image is checked against its signed hash).
			const socket = this.#socket = net.connect({host: options.host, port: options.port});
			socket.setNoDelay(true);
			socket.on("connect", () => {
				if (!this.#closed) handlers.onConnect();
			});
			this.#wire(socket, handlers);
			return;
		}
		if (!options.roots.length) throw new Error("no trusted roots given: refusing to connect without a pinned root");
		let secureContext: tls.SecureContext;
		try {
			// Built here so that a key that does not fit the certificate fails now, not inside connect.
			secureContext = tls.createSecureContext({ca: options.roots.map(derToPem), minVersion: "TLSv1.2", ...clientIdentity(options)});
		}
		catch (e) {
			// The contract: onClose, never a throw from connect, and not before the caller has the Connection.
			// node:crypto's messages name the problem (e.g. "key values mismatch"), never the key.
			const message = `cannot use the client certificate for ${options.host}: ${(e as Error).message}`;
			setImmediate(() => {
				if (this.#closed) return;
				this.#closed = true;
				handlers.onClose({kind: "tls", message});
			});
			return;
		}
		const socket = this.#socket = tls.connect({
			host: options.host,
			port: options.port,
			servername: isIp(options.serverName ?? options.host) ? undefined : (options.serverName ?? options.host),
			secureContext,
			rejectUnauthorized: true,
			checkServerIdentity: (_host, cert) => tls.checkServerIdentity(options.serverName ?? options.host, cert),
		});
		socket.setNoDelay(true);
		socket.on("secureConnect", () => {
			if (!this.#closed) handlers.onConnect();
		});
		this.#wire(socket, handlers);
	}

	#wire(socket: net.Socket, handlers: ConnectionHandlers): void {
		socket.on("data", (data: Buffer) => {
			if (!this.#closed) handlers.onData(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
		});
		let reported = false;
		const report = (error: HostError) => {
			if (reported || this.#closed) return;
			reported = true;
			this.#closed = true;
			handlers.onClose(error);
		};
		socket.on("error", (e: NodeJS.ErrnoException) => report(classify(e)));
		socket.on("close", () => report({kind: "closed", message: "connection closed by the server"}));
	}

	write(bytes: Uint8Array): void {
		if (this.#closed || !this.#socket || this.#socket.destroyed) throw new Error("connection closed");
		this.#socket.write(bytes);
	}

	close(): void {
		if (this.#closed) return;
		this.#closed = true;
		const socket = this.#socket;
		if (!socket) return;
		socket.end();
		socket.destroySoon();
		setTimeout(() => socket.destroy(), 1000).unref();
	}
}

function isIp(name: string): boolean {
	return /^[\d.]+$/.test(name) || name.includes(":");
}

class MemoryStorage implements Storage {
	protected values = new Map<string, string>();
	get(key: string) { return this.values.get(key); }
	set(key: string, value: string) { this.values.set(key, value); }
	delete(key: string) { this.values.delete(key); }
}

class FileStorage extends MemoryStorage {
	constructor(private readonly file: string) {
		super();
		try {
			this.values = new Map(Object.entries(JSON.parse(fs.readFileSync(file, "utf8"))));
		}
		catch {
			// absent or unreadable: start empty, as a fresh device would
		}
	}
	override set(key: string, value: string) { super.set(key, value); this.#save(); }
	override delete(key: string) { super.delete(key); this.#save(); }
	#save() { fs.writeFileSync(this.file, JSON.stringify(Object.fromEntries(this.values), null, "\t")); }
}

export function createNodeHost(options: NodeHostOptions = {}): HostAdapter {
	return Object.freeze({
		connect: (o: ConnectOptions, h: ConnectionHandlers) => new NodeConnection(o, h),
		setTimer: (callback: () => void, ms: number) => setTimeout(callback, ms),
		clearTimer: (handle: unknown) => { if (handle !== undefined) clearTimeout(handle as NodeJS.Timeout); },
		now: options.now ?? (() => Date.now()),
		random: () => Math.random(),
		hmacSha256: (key: Uint8Array, message: Uint8Array) => new Uint8Array(crypto.createHmac("sha256", key).update(message).digest()),
		sha256: (): Sha256 => {
			const h = crypto.createHash("sha256");
			return {update: bytes => { h.update(bytes); }, digest: () => new Uint8Array(h.digest())};
		},
		storage: options.storageFile ? new FileStorage(options.storageFile) : new MemoryStorage(),
		log: options.log,
	});
}
