/*
 * The page's own routes on the API server: the page and its assets, the live streams, the models
 * and the figures of what is kept. Everything the page changes goes through the JSON API (api.ts).
 */
import type * as http from "node:http";
import {PAGE_HTML, SECURITY_HEADERS, assets} from "./assets.js";
import type {Live} from "./live.js";
import type {ModelStore} from "./models.js";

export interface WebRoutes {
	/** True when the request was one of the page's (it has been answered). */
	handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): boolean;
}

function json(res: http.ServerResponse, status: number, value: unknown): void {
	const text = JSON.stringify(value);
	res.writeHead(status, {"content-type": "application/json", "content-length": Buffer.byteLength(text), "cache-control": "no-store"});
	res.end(text);
}

export function webRoutes(live: Live, models: ModelStore, log: (line: string) => void): WebRoutes {
	const sse = (res: http.ServerResponse) => {
		res.writeHead(200, {"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", "x-accel-buffering": "no", "x-content-type-options": "nosniff"});
		res.socket?.setNoDelay(true);
		return res;
	};
	return {
		handle(req, res, url) {
			const p = url.pathname;
			const get = req.method === "GET" || req.method === "HEAD";
			if (p === "/" || p === "/ui" || p === "/ui/") {
				if (!get) return false;
				res.writeHead(200, {...SECURITY_HEADERS, "content-type": "text/html; charset=utf-8", "content-length": Buffer.byteLength(PAGE_HTML)});
				res.end(req.method === "HEAD" ? undefined : PAGE_HTML);
				return true;
			}
			if (!p.startsWith("/ui/")) return false;
			if (!get) {
				json(res, 405, {error: `Method ${req.method} not allowed on ${p}.`});
				return true;
			}
			if (p === "/ui/assets/app.js" || p === "/ui/assets/app.css") {
				assets().then(a => {
					const body = p.endsWith(".js") ? a.js : a.css;
					res.writeHead(200, {...SECURITY_HEADERS, "content-type": `${p.endsWith(".js") ? "text/javascript" : "text/css"}; charset=utf-8`, "content-length": Buffer.byteLength(body)});
					res.end(req.method === "HEAD" ? undefined : body);
				}, (error: Error) => {
					log(`web: the page's script could not be built: ${error.message}`);
					json(res, 500, {error: `The page's script could not be built (${error.message}); run npm install.`});
				});
				return true;
			}
			if (p === "/ui/events") {
				live.openFleet(sse(res));
				return true;
			}
			const device = /^\/ui\/events\/device\/([^/]+)$/.exec(p);
			if (device) {
				let id: string;
				try {
					id = decodeURIComponent(device[1]);
				}
				catch {
					json(res, 400, {error: "Bad URL encoding in the path."});
					return true;
				}
				live.openDevice(id, sse(res));
				return true;
			}
			if (p === "/ui/api/model") {
				const id = url.searchParams.get("id") ?? "";
				const model = models.find(id);
				if (model) json(res, 200, model);
				else json(res, 404, {error: models.dir ? `No model ${id} in ${models.dir}.` : "No models directory: start the emulator with --models <dir> (DTDL files) to see a model's commands."});
				return true;
			}
			if (p === "/ui/api/stats") {
				json(res, 200, {monitor: live.monitor.sizes(), live: live.stats()});
				return true;
			}
			json(res, 404, {error: `No route GET ${p}.`});
			return true;
		},
	};
}
