/*
 * A TLS server on 127.0.0.1 that asks for a client certificate and records what it saw for each
 * connection: the certificate (CN, fingerprints), the chain it could build, whether the chain
 * verified against the device CA's root, and whether the session was resumed. A client names its
 * case in a first line ("tag\n"); the server answers "ok\n" so that the client knows the line
 * arrived before it closes. Handshakes that fail are recorded with the error Node gave.
 */
import {X509Certificate} from "node:crypto";
import * as tls from "node:tls";
import {testPki} from "./pki.js";

export interface SeenConnection {
	tag?: string;
	authorized: boolean;
	authorizationError?: string;
	/** No certificate at all was presented (getPeerCertificate() was empty). */
	noCertificate: boolean;
	cn?: string;
	/** SHA-256, upper-case hex with colons, as Node gives it. */
	fingerprint256?: string;
	/** Subject CNs from the leaf up through issuerCertificate links, as far as Node could build it. */
	chain: string[];
	/** Node's X509Certificate of the peer: raw DER of the leaf. */
	raw?: Buffer;
	sessionReused: boolean;
	protocol: string | null;
	cipher: string;
}

export interface ClientCertServer {
	port: number;
	seen: SeenConnection[];
	failures: {message: string; code?: string}[];
	/** Resolves with the connection tagged `tag`, within the timeout. */
	waitFor(tag: string, timeoutMs?: number): Promise<SeenConnection>;
	close(): Promise<void>;
}

/**
 * `resumeSessions`: keep TLS 1.2 sessions by id, as a server with a session cache does. Node's own
 * cache is off (it sets SSL_SESS_CACHE_NO_INTERNAL and resumes session ids only through these
 * events), and the SDK's TLS sends no session ticket extension, so without this nothing resumes.
 */
export async function startClientCertServer(options: {clientRoot: Uint8Array; resumeSessions?: boolean}): Promise<ClientCertServer> {
	const pki = testPki();
	const seen: SeenConnection[] = [];
	const failures: {message: string; code?: string}[] = [];
	const sockets = new Set<tls.TLSSocket>();
	const server = tls.createServer({
		key: pki.leafKeyPem,
		cert: pki.chainPem,
		ca: [new X509Certificate(options.clientRoot).toString()],
		requestCert: true,
		// Decided per connection here, so that a leaf without its intermediate is recorded, not refused.
		rejectUnauthorized: false,
		minVersion: "TLSv1.2",
	}, socket => {
		sockets.add(socket);
		socket.on("close", () => sockets.delete(socket));
		socket.on("error", () => {});
		const peer = socket.getPeerCertificate(true);
		const chain: string[] = [];
		for (let c: tls.DetailedPeerCertificate | undefined = peer, n = 0; c && c.subject && n < 8; n++) {
			chain.push(c.subject.CN as string);
			if (c.issuerCertificate === c) break;
			c = c.issuerCertificate;
		}
		const record: SeenConnection = {
			authorized: socket.authorized,
			authorizationError: socket.authorizationError ? String(socket.authorizationError) : undefined,
			noCertificate: !peer || Object.keys(peer).length === 0,
			cn: peer?.subject?.CN as string | undefined,
			fingerprint256: peer?.fingerprint256,
			chain,
			raw: peer?.raw,
			sessionReused: socket.isSessionReused(),
			protocol: socket.getProtocol(),
			cipher: socket.getCipher().name,
		};
		seen.push(record);
		let text = "";
		socket.on("data", (data: Buffer) => {
			text += data.toString("latin1");
			const nl = text.indexOf("\n");
			if (nl < 0 || record.tag !== undefined) return;
			record.tag = text.slice(0, nl);
			socket.write("ok\n");
		});
	});
	if (options.resumeSessions) {
		const sessions = new Map<string, Buffer>();
		server.on("newSession", (id: Buffer, data: Buffer, done: () => void) => {
			sessions.set(id.toString("hex"), data);
			done();
		});
		server.on("resumeSession", (id: Buffer, done: (error: Error | null, data: Buffer | null) => void) => done(null, sessions.get(id.toString("hex")) ?? null));
	}
	server.on("tlsClientError", (e: NodeJS.ErrnoException) => failures.push({message: e.message, code: e.code}));
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	const port = (server.address() as {port: number}).port;
	return {
		port,
		seen,
		failures,
		async waitFor(tag, timeoutMs = 10_000) {
			const until = Date.now() + timeoutMs;
			for (;;) {
				const found = seen.find(s => s.tag === tag);
				if (found) return found;
				if (Date.now() > until) throw new Error(`the server saw no connection tagged ${tag}; seen: ${JSON.stringify(seen.map(s => s.tag))}, failures: ${JSON.stringify(failures)}`);
				await new Promise(resolve => setTimeout(resolve, 20));
			}
		},
		close() {
			for (const socket of sockets) socket.destroy();
			return new Promise<void>(resolve => server.close(() => resolve()));
		},
	};
}
