/*
 * The download side of Device Update: serves imported update files over plain HTTP (as ADU's CDN
 * URLs are) and over HTTPS with the emulator's PKI, with HEAD and single byte ranges, which is what
 * the FreeRTOS sample uses (a HEAD for the size, then 4 KB Range GETs). Download faults apply here.
 */
import * as http from "node:http";
import * as https from "node:https";
import type * as net from "node:net";
import type {FaultSet} from "../faults.js";
import {SERVER_CIPHERS, type ServedIdentity} from "../pki.js";
import type {Update} from "./update.js";

export type FileUrlScheme = "http" | "https";
export const FILE_URL_SCHEMES: readonly FileUrlScheme[] = ["http", "https"];

export interface DownloadCount {
	requests: number;
	bytes: number;
}

export interface FileServer {
	/** Base URLs, e.g. "http://localhost:41235". */
	httpUrl: string;
	httpsUrl: string;
	/** The URL of an update's file; with a device id, a URL of that device's own (faults and counts can name it). */
	url(scheme: FileUrlScheme, update: Update, deviceId?: string): string;
	/** GET requests and body bytes served for a file, to one device (its URLs) or in all. */
	downloads(fileId: string, deviceId?: string): DownloadCount;
	close(): Promise<void>;
}

export interface FileServerOptions {
	bindHost: string;
	/** The host name put in URLs; the TLS leaf must name it. */
	urlHost: string;
	httpPort: number;
	httpsPort: number;
	identity: ServedIdentity;
	lookup(fileId: string): Update | undefined;
	faults: FaultSet;
	log(line: string): void;
}

const MAX_CONNECTIONS = 64;
const HEADERS_TIMEOUT_MS = 10_000;
const IDLE_TIMEOUT_MS = 30_000;
const SLOW_TICK_MS = 50;

type Range = {start: number; end: number} | "unsatisfiable" | undefined;

/**
 * One range of RFC 9110: `bytes=a-b`, `bytes=a-` or `bytes=-n`. Anything else (several ranges, bad
 * syntax) is ignored and the whole file is served, as the RFC allows.
 */
export function parseRange(header: string | undefined, size: number): Range {
	const m = header ? /^bytes=(\d*)-(\d*)$/.exec(header.trim()) : null;
	if (!m || (m[1] === "" && m[2] === "")) return undefined;
	if (m[1] === "") {
		const suffix = Number(m[2]);
		return suffix === 0 ? "unsatisfiable" : {start: Math.max(0, size - suffix), end: size - 1};
	}
	const start = Number(m[1]);
	const end = m[2] === "" ? Infinity : Number(m[2]);
	if (end < start) return undefined;
	if (start >= size) return "unsatisfiable";
	return {start, end: Math.min(end, size - 1)};
}

function countKey(fileId: string, deviceId?: string): string {
	return `${deviceId ?? ""}\n${fileId}`;
}

/** `/files/{fileId}/{fileName}` or `/devices/{deviceId}/files/{fileId}/{fileName}`. */
function parsePath(pathname: string): {deviceId?: string; fileId: string; fileName: string} | undefined {
	let parts: string[];
	try {
		parts = pathname.split("/").slice(1).map(decodeURIComponent);
	}
	catch {
		return undefined;
	}
	if (parts.length === 3 && parts[0] === "files") return {fileId: parts[1], fileName: parts[2]};
	if (parts.length === 5 && parts[0] === "devices" && parts[2] === "files") return {deviceId: parts[1], fileId: parts[3], fileName: parts[4]};
	return undefined;
}

/** Ends the connection mid-body: what was written still arrives (FIN, not reset), the rest never does. */
function cut(res: http.ServerResponse): void {
	res.flushHeaders();
	res.socket?.end();
}

/** Writes `body`, at most `bytesPerSecond` when given, and cuts the connection after `dropAfter` bytes. */
async function writeBody(res: http.ServerResponse, body: Buffer, plan: {dropAfter?: number; bytesPerSecond?: number}): Promise<void> {
	const limit = plan.dropAfter ?? body.length;
	if (plan.bytesPerSecond === undefined) {
		if (limit >= body.length) {
			res.end(body);
			return;
		}
		res.flushHeaders();
		if (limit > 0) res.write(body.subarray(0, limit));
		cut(res);
		return;
	}
	const started = Date.now();
	let sent = 0;
	let gone = false;
	res.once("close", () => { gone = true; });
	while (sent < limit && !gone) {
		const allowed = Math.min(limit, Math.floor(plan.bytesPerSecond * (Date.now() - started) / 1000));
		if (allowed > sent) {
			const more = res.write(body.subarray(sent, allowed));
			sent = allowed;
			if (!more) await new Promise<void>(resolve => { res.once("drain", resolve); res.once("close", resolve); });
		}
		if (sent < limit) await new Promise(resolve => setTimeout(resolve, SLOW_TICK_MS));
	}
	if (gone) return;
	if (limit < body.length) cut(res);
	else res.end();
}

export async function startFileServer(options: FileServerOptions): Promise<FileServer> {
	const counts = new Map<string, DownloadCount>();
	const count = (fileId: string, deviceId: string | undefined, bytes: number) => {
		for (const key of new Set([countKey(fileId, deviceId), countKey(fileId)])) {
			const entry = counts.get(key) ?? {requests: 0, bytes: 0};
			entry.requests++;
			entry.bytes += bytes;
			counts.set(key, entry);
		}
	};

	const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
		const send = (status: number, message: string, headers: Record<string, string> = {}) => {
			res.writeHead(status, {"content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(message), ...headers});
			res.end(req.method === "HEAD" ? undefined : message);
		};
		const url = new URL(req.url ?? "/", "http://localhost");
		const target = parsePath(url.pathname);
		const update = target ? options.lookup(target.fileId) : undefined;
		if (!target || !update || update.fileName !== target.fileName) {
			send(404, `No update file at ${url.pathname}: use a URL from the deployment's fileUrls.\n`);
			return;
		}
		if (req.method !== "GET" && req.method !== "HEAD") {
			send(405, "Only GET and HEAD are served.\n", {allow: "GET, HEAD"});
			return;
		}
		const size = update.data.length;
		const range = parseRange(req.headers.range, size);
		if (range === "unsatisfiable") {
			send(416, `Range "${req.headers.range}" is outside the file (${size} bytes).\n`, {"content-range": `bytes */${size}`});
			return;
		}
		const start = range?.start ?? 0;
		const end = range?.end ?? size - 1;
		const headers: Record<string, string> = {
			"content-type": "application/octet-stream",
			"content-length": String(end - start + 1),
			"accept-ranges": "bytes",
			...(range ? {"content-range": `bytes ${start}-${end}/${size}`} : {}),
		};
		res.writeHead(range ? 206 : 200, headers);
		if (req.method === "HEAD") {
			res.end();
			return;
		}
		const faultTarget = {deviceId: target.deviceId};
		const forFile = (f: {fileId?: string}) => f.fileId === undefined || f.fileId === target.fileId;
		let body = update.data.subarray(start, end + 1);
		const corrupt = options.faults.take("download.corrupt", faultTarget, f => forFile(f) && f.offset >= start && f.offset <= end);
		if (corrupt) {
			body = Buffer.from(body);
			body[corrupt.offset - start] ^= 0xff;
			options.log(`adu files: download.corrupt fault: byte ${corrupt.offset} of ${update.fileName} inverted`);
		}
		const drop = options.faults.take("download.drop", faultTarget, f => forFile(f) && f.afterBytes < body.length);
		if (drop) options.log(`adu files: download.drop fault: ${update.fileName} cut after ${drop.afterBytes} of ${body.length} bytes`);
		const slow = options.faults.take("download.slow", faultTarget, forFile);
		count(target.fileId, target.deviceId, drop ? drop.afterBytes : body.length);
		writeBody(res, body, {dropAfter: drop?.afterBytes, bytesPerSecond: slow?.bytesPerSecond}).catch(error => {
			options.log(`adu files: ${url.pathname}: ${(error as Error).message}`);
			res.destroy();
		});
	};

	const sockets = new Set<net.Socket>();
	const bound = (server: http.Server) => {
		server.maxConnections = MAX_CONNECTIONS;
		server.headersTimeout = HEADERS_TIMEOUT_MS;
		server.requestTimeout = HEADERS_TIMEOUT_MS;
		server.setTimeout(IDLE_TIMEOUT_MS, socket => socket.destroy());
		server.on("connection", (socket: net.Socket) => {
			sockets.add(socket);
			socket.once("close", () => sockets.delete(socket));
		});
		return server;
	};
	const plain = bound(http.createServer(handle));
	const secure = bound(https.createServer({
		key: options.identity.key,
		cert: options.identity.certChain,
		minVersion: "TLSv1.2",
		ciphers: SERVER_CIPHERS,
	}, handle));
	secure.on("tlsClientError", (error, socket) => options.log(`adu files: TLS handshake failed from ${socket.remoteAddress ?? "?"}: ${error.message}`));

	const listen = (server: http.Server, port: number) => new Promise<number>((resolve, reject) => {
		server.once("error", reject);
		server.listen(port, options.bindHost, () => {
			server.off("error", reject);
			resolve((server.address() as net.AddressInfo).port);
		});
	});
	const close = (server: http.Server) => new Promise<void>(resolve => (server.listening ? server.close(() => resolve()) : resolve()));
	let httpPort: number;
	let httpsPort: number;
	try {
		httpPort = await listen(plain, options.httpPort);
		httpsPort = await listen(secure, options.httpsPort);
	}
	catch (error) {
		await Promise.all([close(plain), close(secure)]);
		throw error;
	}
	const httpUrl = `http://${options.urlHost}:${httpPort}`;
	const httpsUrl = `https://${options.urlHost}:${httpsPort}`;
	return {
		httpUrl,
		httpsUrl,
		url(scheme, update, deviceId) {
			const file = `/files/${encodeURIComponent(update.fileId)}/${encodeURIComponent(update.fileName)}`;
			return (scheme === "https" ? httpsUrl : httpUrl) + (deviceId === undefined ? "" : `/devices/${encodeURIComponent(deviceId)}`) + file;
		},
		downloads(fileId, deviceId) {
			return {...(counts.get(countKey(fileId, deviceId)) ?? {requests: 0, bytes: 0})};
		},
		async close() {
			for (const socket of sockets) socket.destroy();
			await Promise.all([close(plain), close(secure)]);
		},
	};
}
