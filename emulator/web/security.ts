/*
 * Who may use the service API and the page. The API hands out enrollment keys and drives devices,
 * so by default it listens on loopback only and, there, answers only requests addressed to a
 * loopback name (a web page that rebinds its own host name to 127.0.0.1 is refused). Anywhere else
 * it needs a token. Writes from a browser must come from the page itself: another site's page
 * cannot make them (Origin and Sec-Fetch-Site are checked), and nothing is sent with CORS headers,
 * so another site cannot read either.
 */
import * as crypto from "node:crypto";
import type * as http from "node:http";
import * as net from "node:net";

export const MIN_TOKEN_LENGTH = 16;

/** 127.0.0.0/8, ::1, ::ffff:127.x and the name localhost. */
export function isLoopbackHost(host: string): boolean {
	const h = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
	if (h === "localhost" || h.endsWith(".localhost")) return true;
	if (net.isIPv4(h)) return h.startsWith("127.");
	if (net.isIPv6(h)) return h === "::1" || /^::ffff:127\./.test(h);
	return false;
}

/** Throws the message the CLI prints when the API would be reachable from elsewhere without a token. */
export function checkApiExposure(apiHost: string, token: string | undefined): void {
	if (token !== undefined && (typeof token !== "string" || token.length < MIN_TOKEN_LENGTH))
		throw new Error(`--api-token must be at least ${MIN_TOKEN_LENGTH} characters (for example: openssl rand -hex 16).`);
	if (!isLoopbackHost(apiHost) && token === undefined)
		throw new Error(`--api-host ${apiHost} makes the service API and the page (enrollment keys, device control) reachable from other machines: `
			+ `give --api-token <secret> (at least ${MIN_TOKEN_LENGTH} characters, e.g. $(openssl rand -hex 16)) as well, or leave --api-host out to stay on 127.0.0.1.`);
}

export interface Verdict {
	ok: boolean;
	status?: number;
	message?: string;
	/** For a page opened with ?token=: where to go without it, and the cookie to set. */
	redirect?: string;
	cookie?: string;
}

export interface GuardOptions {
	/** The address the API listens on. */
	host: string;
	port: number;
	token?: string;
}

function sameSecret(a: string, b: string): boolean {
	const x = crypto.createHash("sha256").update(a).digest();
	const y = crypto.createHash("sha256").update(b).digest();
	return crypto.timingSafeEqual(x, y);
}

function cookieValue(header: string | undefined, name: string): string | undefined {
	for (const part of (header ?? "").split(";")) {
		const eq = part.indexOf("=");
		if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
	}
	return undefined;
}

/** The host name of a Host header (`name:port`, `[v6]:port`). */
function hostName(hostHeader: string): string {
	const m = /^(\[[^\]]*\]|[^:]*)(?::\d*)?$/.exec(hostHeader);
	return m ? m[1] : hostHeader;
}

export class Guard {
	readonly #options: GuardOptions;
	readonly cookieName: string;

	constructor(options: GuardOptions) {
		this.#options = options;
		// Cookies ignore ports: one per emulator port, so that two emulators do not overwrite each other's.
		this.cookieName = `emulator-token-${options.port}`;
	}

	check(req: http.IncomingMessage, url: URL): Verdict {
		const {host, token} = this.#options;
		const hostHeader = req.headers.host;
		if (isLoopbackHost(host) && hostHeader !== undefined && !isLoopbackHost(hostName(hostHeader)))
			return {ok: false, status: 421, message: `This emulator answers on loopback names only (localhost, 127.0.0.1), not "${hostHeader}".`};
		if (token !== undefined) {
			const auth = req.headers.authorization;
			const bearer = auth?.startsWith("Bearer ") ? auth.slice(7).trim() : undefined;
			const cookie = cookieValue(req.headers.cookie, this.cookieName);
			const query = url.searchParams.get("token");
			if (query !== null && (req.method === "GET" || req.method === "HEAD") && sameSecret(query, token)) {
				url.searchParams.delete("token");
				const rest = url.searchParams.toString();
				return {
					ok: false, status: 303, redirect: url.pathname + (rest ? `?${rest}` : ""),
					cookie: `${this.cookieName}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`,
				};
			}
			const given = bearer ?? cookie;
			if (given === undefined || !sameSecret(given, token))
				return {ok: false, status: 401, message: "This emulator's API needs its token: send \"Authorization: Bearer <token>\", or open the page once as /?token=<token>."};
		}
		if (req.method !== "GET" && req.method !== "HEAD") {
			const problem = this.#crossOrigin(req);
			if (problem) return {ok: false, status: 403, message: problem};
		}
		return {ok: true};
	}

	/** Why a write comes from another site's page, or undefined. Clients that are not browsers send neither header. */
	#crossOrigin(req: http.IncomingMessage): string | undefined {
		const site = req.headers["sec-fetch-site"];
		if (site !== undefined && site !== "same-origin" && site !== "none")
			return `Cross-origin write refused (Sec-Fetch-Site: ${site}): only the emulator's own page may change it.`;
		const origin = req.headers.origin;
		if (origin === undefined) return undefined;
		let parsed: URL | undefined;
		try {
			parsed = origin === "null" ? undefined : new URL(origin);
		}
		catch {
			parsed = undefined;
		}
		const hostHeader = req.headers.host;
		if (!parsed || !hostHeader || parsed.host.toLowerCase() !== hostHeader.toLowerCase() || parsed.protocol !== "http:")
			return `Cross-origin write refused (Origin: ${origin}): only the emulator's own page may change it.`;
		return undefined;
	}
}
