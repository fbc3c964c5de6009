/*
 * The Node host with TLS session resumption, for the "reconnect, TLS session resumed" row only:
 * hosts/node/host.ts opens every connection with a full handshake. This wraps its HostAdapter and
 * replaces connect() with a node:tls connection that offers the last session (ticket) it got from
 * the same host:port, and says whether the server took it. Same trust rules as hosts/node: only
 * the given roots, the name checked.
 */
import * as tls from "node:tls";
import {createNodeHost, derToPem} from "../hosts/node/host.js";
import type {Connection, ConnectionHandlers, ConnectOptions, HostAdapter} from "../src/host.js";

export interface ResumingHost extends HostAdapter {
	/** Connections made, and how many of them resumed a session. */
	readonly counts: {connections: number; resumed: number};
}

export function createResumingNodeHost(): ResumingHost {
	const base = createNodeHost();
	const sessions = new Map<string, Buffer>();
	const counts = {connections: 0, resumed: 0};
	const connect = (o: ConnectOptions, h: ConnectionHandlers): Connection => {
		const key = `${o.host}:${o.port}`;
		const name = o.serverName ?? o.host;
		counts.connections++;
		let closed = false;
		const socket = tls.connect({
			host: o.host, port: o.port, ca: o.roots.map(derToPem), rejectUnauthorized: true, minVersion: "TLSv1.2",
			servername: /^[\d.]+$/.test(name) || name.includes(":") ? undefined : name,
			checkServerIdentity: (_h, cert) => tls.checkServerIdentity(name, cert),
			session: sessions.get(key),
		});
		socket.setNoDelay(true);
		socket.on("session", (session: Buffer) => sessions.set(key, session));
		socket.on("secureConnect", () => {
			if (socket.isSessionReused()) counts.resumed++;
			if (!closed) h.onConnect();
		});
		socket.on("data", (d: Buffer) => { if (!closed) h.onData(new Uint8Array(d.buffer, d.byteOffset, d.byteLength)); });
		const end = (kind: "closed" | "io", message: string) => {
			if (closed) return;
			closed = true;
			h.onClose({kind, message});
		};
		socket.on("error", e => end("io", e.message));
		socket.on("close", () => end("closed", "connection closed by the server"));
		return {
			write(bytes) {
				if (closed || socket.destroyed) throw new Error("connection closed");
				socket.write(bytes);
			},
			close() {
				if (closed) return;
				closed = true;
				socket.destroy();
			},
		};
	};
	return Object.freeze({...base, connect, counts});
}
