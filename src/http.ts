/*
 * A streamed HTTP/1.1 GET over the host's connections: TLS with the pinned roots for https://, plain
 * TCP for http:// (Device Update's own file URLs are http://; the image is trusted for its signed
 * SHA-256, not for the transport). The status line and headers are held up to a limit; the body is
 * handed over as it arrives and never held whole (Moddable #172: a buffered 54 KB body ran the
 * device out of memory). Content-Length, chunked, or up to the end of the connection. One request
 * per connection (Connection: close), as the SDK's own http client does. Redirects are the caller's
 * to follow: Location is among the headers.
 */
import type {Connection, HostAdapter, HostError, TimerHandle} from "./host.js";
import {utf8Decode, utf8Encode} from "./encoding.js";
import {hasAnyOf, isDigits, isHexDigit, isSpace} from "./chars.js";

export interface HttpUrl {
	readonly secure: boolean;
	readonly host: string;
	readonly port: number;
	/** Path and query, as sent on the request line. */
	readonly path: string;
}

export interface HttpResponse {
	readonly status: number;
	/** Names in lower case; a repeated header's values joined with ", ". */
	readonly headers: Readonly<Record<string, string>>;
}

export interface HttpHandlers {
	/** The status and headers. abort() may be called from here (a status the caller does not want). */
	onResponse(response: HttpResponse): void;
	/** Body bytes, in order; the caller's to keep. */
	onData(bytes: Uint8Array): void;
	/** The whole body has arrived. */
	onEnd(): void;
	/** Called at most once, for any end before onEnd (including a body cut short); never after abort(). */
	onError(error: HostError): void;
}

export interface HttpGetOptions {
	url: string;
	/** The roots an https:// server must chain to (DER). */
	roots: readonly Uint8Array[];
	/** Extra request headers (Range, say). */
	headers?: Readonly<Record<string, string>>;
	/** No byte received for this long ends the request with a timeout; default 30 s. */
	idleTimeoutMs?: number;
}

export interface HttpRequest {
	/** Stops at once; no handler is called afterwards. May be called more than once. */
	abort(): void;
}

const MAX_HEAD_BYTES = 8192;
const MAX_CHUNK_LINE = 1024;
const DEFAULT_IDLE_MS = 30_000;
const USER_AGENT = "moddable-azure-iot";

/** Splits an http(s) URL; a string saying what is wrong otherwise. */
export function parseHttpUrl(url: string): HttpUrl | string {
	if (typeof url !== "string") return "the URL is not a string";
	// Characters are tested without RegExp: src/chars.ts says why.
	const head = url.slice(0, 8).toLowerCase();
	const secure = head.startsWith("https://");
	if (!secure && !head.startsWith("http://")) return "the URL is not an http:// or https:// URL";
	const rest = url.slice(secure ? 8 : 7);
	const hash = rest.indexOf("#");
	const beforeFragment = hash < 0 ? rest : rest.slice(0, hash);
	let end = 0;
	while (end < beforeFragment.length && beforeFragment[end] !== "/" && beforeFragment[end] !== "?") end++;
	const authority = beforeFragment.slice(0, end);
	if (!authority || hasSpace(beforeFragment) || (hash >= 0 && hasAnyOf(rest.slice(hash), LINE_ENDS))) return "the URL is not an http:// or https:// URL";
	if (authority.includes("@")) return "the URL carries a user name or password, which this device does not send";
	const a = splitAuthority(authority);
	if (!a) return "the URL's host or port is malformed";
	const host = a.host;
	const port = a.port === undefined ? (secure ? 443 : 80) : Number(a.port);
	if (!(port >= 1 && port <= 65535)) return "the URL's port is not 1 to 65535";
	let path = beforeFragment.slice(end) || "/";
	if (path.startsWith("?")) path = "/" + path;
	return Object.freeze({secure, host, port, path});
}

/** What RegExp's `.` does not match. */
const LINE_ENDS = "\n\r\u2028\u2029";

function hasSpace(text: string): boolean {
	for (let i = 0; i < text.length; i++) if (isSpace(text.charCodeAt(i))) return true;
	return false;
}

/** `host[:port]` or `[v6]:port` (a port of 1 to 5 digits), the brackets taken off; undefined when malformed. */
function splitAuthority(authority: string): {host: string; port?: string} | undefined {
	let host: string, rest: string;
	if (authority.startsWith("[")) {
		const close = authority.indexOf("]");
		if (close < 2) return undefined;
		host = authority.slice(1, close);
		for (let i = 0; i < host.length; i++) if (!isHexDigit(host.charCodeAt(i)) && host[i] !== ":" && host[i] !== ".") return undefined;
		rest = authority.slice(close + 1);
	}
	else {
		const colon = authority.indexOf(":");
		host = colon < 0 ? authority : authority.slice(0, colon);
		if (!host || hasAnyOf(host, "[]")) return undefined;
		rest = colon < 0 ? "" : authority.slice(colon);
	}
	if (!rest) return {host};
	const port = rest.slice(1);
	return rest[0] === ":" && isDigits(port) && port.length <= 5 ? {host, port} : undefined;
}

/** Starts a GET; every result comes through the handlers, never from inside this call. */
export function httpGet(adapter: HostAdapter, options: HttpGetOptions, handlers: HttpHandlers): HttpRequest {
	return new HttpGet(adapter, options, handlers);
}

type BodyMode = "length" | "chunked" | "close" | "none";

// State is in TypeScript-private properties, not #private names: XS copies every outer name a
// function uses, #names included, into its stack frame (BENCHMARKS.md, finding 6).
class HttpGet implements HttpRequest {
	private _adapter: HostAdapter;
	private _handlers: HttpHandlers;
	private _connection: Connection | undefined;
	private _timer: TimerHandle | undefined;
	private _idleMs: number;
	private _done = false;
	private _head: Uint8Array | undefined = new Uint8Array(0);
	private _mode: BodyMode = "close";
	/** Content-Length bytes still to come, or the current chunk's. */
	private _remaining = 0;
	/** Chunked: "size" line, "data", the "crlf" after data, or the "trailer". */
	private _chunkState: "size" | "data" | "crlf" | "trailer" = "size";
	private _line = "";
	private _received = 0;

	constructor(adapter: HostAdapter, options: HttpGetOptions, handlers: HttpHandlers) {
		this._adapter = adapter;
		this._handlers = handlers;
		this._idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_MS;
		const url = parseHttpUrl(options.url);
		if (typeof url === "string") {
			this._later({kind: "io", message: `cannot download ${clipUrl(options.url)}: ${url}`});
			return;
		}
		let request = `GET ${url.path} HTTP/1.1\r\nHost: ${url.host.includes(":") ? `[${url.host}]` : url.host}${url.port === (url.secure ? 443 : 80) ? "" : `:${url.port}`}\r\nUser-Agent: ${USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n`;
		for (const name of Object.keys(options.headers ?? {})) {
			const value = options.headers![name];
			if (hasAnyOf(name, "\r\n:") || hasAnyOf(value, "\r\n")) {
				this._later({kind: "io", message: `request header ${JSON.stringify(name)} is malformed`});
				return;
			}
			request += `${name}: ${value}\r\n`;
		}
		const bytes = utf8Encode(request + "\r\n");
		this._arm();
		try {
			this._connection = adapter.connect({host: url.host, port: url.port, secure: url.secure, roots: options.roots}, {
				onConnect: () => {
					if (this._done) return;
					this._arm();
					try {
						this._connection!.write(bytes);
					}
					catch (e) {
						this._fail({kind: "io", message: `cannot send the request to ${url.host}: ${e instanceof Error ? e.message : String(e)}`});
					}
				},
				onData: data => this._onData(data),
				onClose: error => this._onClose(error),
			});
		}
		catch (e) {
			this._later({kind: "io", message: `cannot connect to ${url.host}:${url.port}: ${e instanceof Error ? e.message : String(e)}`});
		}
	}

	abort(): void {
		if (this._done) return;
		this._finish();
	}

	private _later(error: HostError): void {
		this._timer = this._adapter.setTimer(() => this._fail(error), 0);
	}

	private _arm(): void {
		this._adapter.clearTimer(this._timer);
		this._timer = this._adapter.setTimer(() => {
			this._timer = undefined;
			this._fail({kind: "timeout", message: `no data for ${this._idleMs / 1000} s${this._head ? " (waiting for the response)" : ` after ${this._received} body bytes`}`});
		}, this._idleMs);
	}

	private _finish(): void {
		this._done = true;
		this._adapter.clearTimer(this._timer);
		this._timer = undefined;
		const connection = this._connection;
		this._connection = undefined;
		try {
			connection?.close();
		}
		catch {
			// closed underneath already
		}
	}

	private _fail(error: HostError): void {
		if (this._done) return;
		this._finish();
		this._call(() => this._handlers.onError(error));
	}

	private _end(): void {
		if (this._done) return;
		this._finish();
		this._call(() => this._handlers.onEnd());
	}

	private _call(f: () => void): void {
		try {
			f();
		}
		catch (e) {
			// A handler that throws ends the request, reported through onError (once: not if onError or onEnd threw).
			const text = e instanceof Error ? e.message : String(e);
			if (this._done) this._adapter.log?.(`http: a handler threw: ${text}`);
			else this._fail({kind: "io", message: text});
		}
	}

	private _onClose(error: HostError): void {
		if (this._done) return;
		this._connection = undefined;
		if (!this._head && this._mode === "close") {
			this._end();
			return;
		}
		if (this._head) this._fail(error.kind === "closed" ? {kind: "closed", message: "the server closed the connection before the response"} : error);
		else this._fail({kind: error.kind === "closed" ? "closed" : error.kind, message: `the connection ended after ${this._received} body bytes${this._mode === "length" ? ` (${this._remaining} more were due)` : ""}: ${error.message}`});
	}

	private _onData(data: Uint8Array): void {
		if (this._done) return;
		this._arm();
		let bytes = data;
		if (this._head) {
			const rest = this._takeHead(bytes);
			if (rest === undefined || this._done) return;
			bytes = rest;
		}
		this._body(bytes);
	}

	/** Adds to the response head; the body bytes after it once it is complete. */
	private _takeHead(data: Uint8Array): Uint8Array | undefined {
		const before = this._head!;
		const joined = new Uint8Array(before.length + data.length);
		joined.set(before);
		joined.set(data, before.length);
		const end = headEnd(joined, Math.max(0, before.length - 3));
		if (end < 0) {
			if (joined.length > MAX_HEAD_BYTES) this._fail({kind: "io", message: `the response headers are larger than ${MAX_HEAD_BYTES} bytes`});
			else this._head = joined;
			return undefined;
		}
		const parsed = parseHead(utf8Decode(joined.subarray(0, end)));
		if (typeof parsed === "string") {
			this._fail({kind: "io", message: parsed});
			return undefined;
		}
		const rest = joined.subarray(end + 4);
		if (parsed.status < 200) {
			// 1xx: an interim response; the real one follows.
			this._head = new Uint8Array(0);
			return rest.length ? this._takeHead(rest) : undefined;
		}
		this._head = undefined;
		const h = parsed.headers;
		if (parsed.status === 204 || parsed.status === 304) this._mode = "none";
		else if (lastCoding(h["transfer-encoding"] ?? "") === "chunked") this._mode = "chunked";
		else if (h["content-length"] !== undefined) {
			if (!isDigits(h["content-length"]) || h["content-length"].length > 15) {
				this._fail({kind: "io", message: `Content-Length ${JSON.stringify(h["content-length"])} is not a number`});
				return undefined;
			}
			this._mode = "length";
			this._remaining = Number(h["content-length"]);
		}
		else this._mode = "close";
		this._call(() => this._handlers.onResponse(parsed));
		if (this._done) return undefined;
		if (this._mode === "none" || (this._mode === "length" && this._remaining === 0)) {
			this._end();
			return undefined;
		}
		return rest;
	}

	private _body(bytes: Uint8Array): void {
		if (this._mode === "chunked") {
			this._chunked(bytes);
			return;
		}
		if (!bytes.length) return;
		if (this._mode === "length") {
			const take = Math.min(bytes.length, this._remaining);
			this._remaining -= take;
			this._deliver(take === bytes.length ? bytes : bytes.subarray(0, take));
			if (!this._done && this._remaining === 0) this._end();
			return;
		}
		this._deliver(bytes);
	}

	private _deliver(bytes: Uint8Array): void {
		if (!bytes.length || this._done) return;
		this._received += bytes.length;
		this._call(() => this._handlers.onData(bytes));
	}

	private _chunked(bytes: Uint8Array): void {
		let at = 0;
		while (at < bytes.length && !this._done) {
			if (this._chunkState === "data") {
				const take = Math.min(bytes.length - at, this._remaining);
				this._remaining -= take;
				this._deliver(bytes.subarray(at, at + take));
				at += take;
				if (this._remaining === 0) {
					this._chunkState = "crlf";
					this._line = "";
				}
				continue;
			}
			// A line: the chunk size, the CRLF after the data, or a trailer line.
			const c = bytes[at++];
			if (c !== 10) {
				if (c !== 13) this._line += String.fromCharCode(c);
				if (this._line.length > MAX_CHUNK_LINE) this._fail({kind: "io", message: "a chunk header of the response is too long"});
				continue;
			}
			const line = this._line;
			this._line = "";
			if (this._chunkState === "crlf") {
				if (line !== "") {
					this._fail({kind: "io", message: "the chunked response has no CRLF after a chunk"});
					return;
				}
				this._chunkState = "size";
			}
			else if (this._chunkState === "size") {
				const size = chunkSize(line);
				if (size === undefined) {
					this._fail({kind: "io", message: `the chunked response has a malformed chunk size ${JSON.stringify(line.slice(0, 20))}`});
					return;
				}
				this._remaining = size;
				this._chunkState = this._remaining ? "data" : "trailer";
			}
			else if (line === "") {
				this._end();
				return;
			}
		}
	}
}

/** The last transfer coding of a Transfer-Encoding header, in lower case. */
function lastCoding(value: string): string {
	return value.slice(value.lastIndexOf(",") + 1).trim().toLowerCase();
}

/** A chunk-size line (1 to 12 hex digits, then an optional ;extension), or undefined. */
function chunkSize(line: string): number | undefined {
	const text = line.trim();
	const semicolon = text.indexOf(";");
	const hex = semicolon < 0 ? text : text.slice(0, semicolon);
	if (!hex.length || hex.length > 12 || hasAnyOf(text, LINE_ENDS)) return undefined;
	for (let i = 0; i < hex.length; i++) if (!isHexDigit(hex.charCodeAt(i))) return undefined;
	return parseInt(hex, 16);
}

/** The status of an `HTTP/1.0` or `HTTP/1.1` status line, or undefined. */
function statusOf(line: string): number | undefined {
	if (!line.startsWith("HTTP/1.0 ") && !line.startsWith("HTTP/1.1 ")) return undefined;
	const code = line.slice(9, 12);
	if (code.length !== 3 || !isDigits(code) || (line.length > 12 && line[12] !== " ") || hasAnyOf(line, LINE_ENDS)) return undefined;
	return Number(code);
}

/** Index of the CRLFCRLF that ends the head, searching from `from`; -1 when not there yet. */
function headEnd(bytes: Uint8Array, from: number): number {
	for (let i = from; i + 3 < bytes.length; i++)
		if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i;
	return -1;
}

function parseHead(text: string): HttpResponse | string {
	const lines = text.split("\r\n");
	const status = statusOf(lines[0]);
	if (status === undefined) return `the server did not answer with an HTTP/1.x status line (${JSON.stringify(lines[0].slice(0, 40))})`;
	const headers: Record<string, string> = {};
	for (let i = 1; i < lines.length; i++) {
		const colon = lines[i].indexOf(":");
		if (colon <= 0) return `the response has a malformed header line ${JSON.stringify(lines[i].slice(0, 40))}`;
		const name = lines[i].slice(0, colon).trim().toLowerCase();
		const value = lines[i].slice(colon + 1).trim();
		// Own data properties only: a header named __proto__ stays a header.
		if (Object.prototype.hasOwnProperty.call(headers, name)) headers[name] += ", " + value;
		else Object.defineProperty(headers, name, {value, enumerable: true, writable: true, configurable: true});
	}
	return Object.freeze({status: status, headers: Object.freeze(headers)});
}

/** A URL for a message: without its query (ADU's carry tokens) and not too long. */
export function clipUrl(url: string): string {
	const text = String(url);
	const q = text.indexOf("?");
	const base = q < 0 ? text : text.slice(0, q) + "?…";
	return base.length > 120 ? base.slice(0, 117) + "…" : base;
}

Object.freeze(parseHttpUrl);
Object.freeze(httpGet);
Object.freeze(clipUrl);
Object.freeze(HttpGet.prototype);
