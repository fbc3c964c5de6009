/*
 * The service-side HTTP JSON API (what the Azure portal / service SDKs do) and the emulator's page,
 * on 127.0.0.1 unless told otherwise (then with a token: ./web/security.ts).
 */
import * as http from "node:http";
import type * as net from "node:net";
import type {Emulator} from "./index.js";
import {HOSTILE_KINDS, type HostileKind} from "./hostile.js";
import {EmulatorHttpError} from "./registry.js";
import {Guard} from "./web/security.js";
import type {WebRoutes} from "./web/server.js";

export interface ApiServer {
	url: string;
	close(): Promise<void>;
}

type Handler = (params: string[], body: unknown) => Promise<[number, unknown]> | [number, unknown];

const MAX_BODY = 1024 * 1024;

function readBody(req: http.IncomingMessage): Promise<unknown> {
	return new Promise((resolve, reject) => {
		const chunks: Buffer[] = [];
		let size = 0;
		req.on("data", (chunk: Buffer) => {
			size += chunk.length;
			if (size > MAX_BODY) {
				reject(new EmulatorHttpError(413, "Request body too large."));
				req.destroy();
				return;
			}
			chunks.push(chunk);
		});
		req.on("end", () => {
			const text = Buffer.concat(chunks).toString("utf8");
			if (!text.trim()) return resolve(undefined);
			try {
				resolve(JSON.parse(text));
			}
			catch {
				reject(new EmulatorHttpError(400, "The request body is not valid JSON."));
			}
		});
		req.on("error", reject);
	});
}

function object(body: unknown): Record<string, unknown> {
	if (typeof body !== "object" || body === null || Array.isArray(body)) throw new EmulatorHttpError(400, "Expected a JSON object body.");
	return body as Record<string, unknown>;
}

export interface ApiOptions {
	port: number;
	host: string;
	/** Required of every request when set (Authorization: Bearer, or the page's cookie). */
	token?: string;
	log: (line: string) => void;
	web?: WebRoutes;
}

export function startApi(emulator: Emulator, options: ApiOptions): Promise<ApiServer> {
	const routes: [string, RegExp, Handler][] = [
		["POST", /^\/enrollments$/, (_p, body) => [201, emulator.addEnrollment(object(body) as never)]],
		["GET", /^\/enrollments$/, () => [200, emulator.enrollments()]],
		// As DPS's service API: keys only from this explicit call, never in a listing.
		["POST", /^\/enrollments\/([^/]+)\/attestationmechanism$/, ([id]) => [200, emulator.enrollmentAttestation(id)]],
		["GET", /^\/enrollment-groups$/, () => [200, emulator.enrollmentGroups()]],
		["POST", /^\/enrollment-groups\/([^/]+)\/attestationmechanism$/, ([id]) => [200, emulator.enrollmentGroupAttestation(id)]],
		["PATCH", /^\/enrollments\/([^/]+)$/, ([id], body) => {
			const b = object(body);
			if (typeof b.enabled !== "boolean") throw new EmulatorHttpError(400, "Expected {\"enabled\": true|false}.");
			emulator.setEnrollmentEnabled(id, b.enabled);
			return [200, {registrationId: id, enabled: b.enabled}];
		}],
		["POST", /^\/enrollment-groups$/, (_p, body) => [201, emulator.addEnrollmentGroup(object(body) as never)]],
		["PATCH", /^\/enrollment-groups\/([^/]+)$/, ([id], body) => {
			const b = object(body);
			if (typeof b.enabled !== "boolean") throw new EmulatorHttpError(400, "Expected {\"enabled\": true|false}.");
			emulator.setEnrollmentEnabled(id, b.enabled);
			return [200, {groupId: id, enabled: b.enabled}];
		}],
		["POST", /^\/certificates$/, (_p, body) => [201, emulator.addCertificate(object(body) as never)]],
		["GET", /^\/certificates$/, () => [200, emulator.certificates()]],
		["DELETE", /^\/certificates\/([^/]+)$/, ([name]) => {
			emulator.deleteCertificate(name);
			return [204, undefined];
		}],
		["POST", /^\/certificates\/([^/]+)\/verification-code$/, ([name], body) => [200, emulator.certificateVerificationCode(name, (body === undefined ? {} : object(body)).target as never)]],
		["POST", /^\/certificates\/([^/]+)\/verify$/, ([name], body) => {
			const b = object(body);
			return [200, emulator.verifyCertificate(name, b.pem as string, b.target as never)];
		}],
		["POST", /^\/devices$/, (_p, body) => [201, emulator.addDevice(object(body) as never)]],
		["GET", /^\/devices$/, () => [200, emulator.devices()]],
		["DELETE", /^\/devices\/([^/]+)$/, ([id]) => {
			emulator.deleteDevice(id);
			return [204, undefined];
		}],
		["GET", /^\/devices\/([^/]+)\/telemetry$/, ([id]) => [200, emulator.telemetry(id)]],
		["GET", /^\/devices\/([^/]+)\/connections$/, ([id]) => [200, emulator.connections(id)]],
		["POST", /^\/devices\/([^/]+)\/c2d$/, ([id], body) => [202, emulator.sendC2d(id, object(body) as never)]],
		["GET", /^\/devices\/([^/]+)\/c2d$/, ([id]) => [200, {queued: emulator.c2dQueue(id)}]],
		["DELETE", /^\/devices\/([^/]+)\/c2d$/, ([id]) => [200, emulator.purgeC2d(id)]],
		["GET", /^\/devices\/([^/]+)\/twin$/, ([id]) => [200, emulator.twin(id)]],
		["PATCH", /^\/devices\/([^/]+)\/twin\/desired$/, ([id], body) => [200, emulator.patchDesired(id, object(body))]],
		["POST", /^\/devices\/([^/]+)\/methods\/([^/]+)$/, async ([id, name], body) => {
			const b = body === undefined ? {} : object(body);
			const timeout = b.timeoutSeconds === undefined ? undefined : Number(b.timeoutSeconds);
			if (timeout !== undefined && !(timeout >= 0)) throw new EmulatorHttpError(400, "\"timeoutSeconds\" must be a non-negative number.");
			return [200, await emulator.invokeMethod(id, name, b.payload, timeout)];
		}],
		["POST", /^\/faults$/, (_p, body) => {
			let sent;
			try {
				if (HOSTILE_KINDS.includes((body as {kind?: unknown} | undefined)?.kind as HostileKind)) sent = emulator.send(object(body) as never);
				else return [201, {id: emulator.addFault(object(body) as never), faults: emulator.faults()}];
			}
			catch (error) {
				if (error instanceof EmulatorHttpError) throw error;
				throw new EmulatorHttpError(400, (error as Error).message);
			}
			return [201, {faults: emulator.faults(), sent}];
		}],
		["GET", /^\/faults\/active$/, () => [200, emulator.faultEntries()]],
		["DELETE", /^\/faults\/(\d+)$/, ([id]) => {
			emulator.removeFault(Number(id));
			return [204, undefined];
		}],
		["GET", /^\/faults\/sent$/, () => [200, emulator.sent()]],
		["GET", /^\/faults$/, () => [200, emulator.faults()]],
		["DELETE", /^\/faults$/, () => {
			emulator.clearFaults();
			return [204, undefined];
		}],
		["POST", /^\/faults\/drop$/, () => {
			emulator.dropAll();
			return [204, undefined];
		}],
		["GET", /^\/stats$/, () => [200, emulator.stats()]],
		// Device Update (emulator/adu/).
		["POST", /^\/updates$/, (_p, body) => [201, emulator.importUpdate(object(body) as never)]],
		["GET", /^\/updates$/, () => [200, emulator.updates()]],
		["POST", /^\/deployments$/, (_p, body) => [201, emulator.deploy(object(body) as never)]],
		["GET", /^\/deployments$/, () => [200, emulator.deployments()]],
		["GET", /^\/deployments\/([^/]+)$/, ([id]) => [200, emulator.deployment(id)]],
		["DELETE", /^\/deployments\/([^/]+)$/, ([id]) => [200, emulator.cancelDeployment(id)]],
	];

	let guard: Guard | undefined;
	const server = http.createServer((req, res) => {
		const send = (status: number, value: unknown) => {
			const text = value === undefined ? "" : JSON.stringify(value);
			res.writeHead(status, {"content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store"});
			res.end(text);
		};
		let url: URL;
		try {
			url = new URL(req.url ?? "/", "http://localhost");
		}
		catch {
			send(400, {error: "Bad request URL."});
			return;
		}
		const verdict = guard!.check(req, url);
		if (!verdict.ok) {
			req.resume();
			if (verdict.redirect) {
				res.writeHead(303, {location: verdict.redirect, "set-cookie": verdict.cookie ?? "", "cache-control": "no-store", "referrer-policy": "no-referrer"});
				res.end();
			}
			else send(verdict.status ?? 403, {error: verdict.message});
			return;
		}
		if (options.web?.handle(req, res, url)) {
			req.resume();
			return;
		}
		const matches = routes.map(([method, re, handler]) => ({method, m: re.exec(url.pathname), handler})).filter(r => r.m);
		const route = matches.find(r => r.method === req.method);
		if (!route) {
			send(matches.length ? 405 : 404, {error: matches.length ? `Method ${req.method} not allowed on ${url.pathname}.` : `No route ${req.method} ${url.pathname}.`});
			return;
		}
		(async () => {
			const body = await readBody(req);
			let params: string[];
			try {
				params = (route.m as RegExpExecArray).slice(1).map(decodeURIComponent);
			}
			catch {
				throw new EmulatorHttpError(400, "Bad URL encoding in the path.");
			}
			const [status, value] = await route.handler(params, body);
			send(status, value);
		})().catch((error: unknown) => {
			const status = error instanceof EmulatorHttpError ? error.status : 500;
			if (status === 500) options.log(`api: ${req.method} ${url.pathname}: ${(error as Error)?.stack ?? String(error)}`);
			send(status, {error: (error as Error)?.message ?? String(error)});
		});
	});
	const sockets = new Set<net.Socket>();
	server.on("connection", socket => {
		sockets.add(socket);
		socket.once("close", () => sockets.delete(socket));
	});
	return new Promise((resolve, reject) => {
		server.once("error", reject);
		server.listen(options.port, options.host, () => {
			server.off("error", reject);
			const address = server.address() as net.AddressInfo;
			guard = new Guard({host: options.host, port: address.port, token: options.token});
			const shown = options.host.includes(":") ? `[${options.host}]` : options.host;
			resolve({
				url: `http://${shown}:${address.port}`,
				close: () => new Promise<void>(done => {
					for (const socket of sockets) socket.destroy();
					server.close(() => done());
				}),
			});
		});
	});
}
