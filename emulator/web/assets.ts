/*
 * The page's HTML, script and style. The script is the TypeScript under ./client, bundled with
 * preact and uPlot from node_modules by esbuild, in memory, the first time the page is asked for
 * (a fraction of a second, then cached): nothing is fetched from the network and no bundle is kept
 * in the repository.
 */
import * as path from "node:path";
import {fileURLToPath} from "node:url";

const CLIENT_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), "client");

export interface Assets {
	js: string;
	css: string;
}

let built: Promise<Assets> | undefined;

export function assets(): Promise<Assets> {
	built ??= (async () => {
		const esbuild = await import("esbuild");
		const result = await esbuild.build({
			entryPoints: [path.join(CLIENT_DIR, "main.tsx")],
			bundle: true,
			write: false,
			outdir: path.join(CLIENT_DIR, "out"),
			format: "esm",
			target: ["chrome100", "firefox100", "safari15"],
			minify: true,
			jsx: "automatic",
			jsxImportSource: "preact",
			legalComments: "none",
			logLevel: "silent",
			absWorkingDir: CLIENT_DIR,
		});
		const js = result.outputFiles.find(f => f.path.endsWith(".js"))?.text ?? "";
		const css = result.outputFiles.find(f => f.path.endsWith(".css"))?.text ?? "";
		return {js, css};
	})();
	built.catch(() => { built = undefined; });
	return built;
}

/** The page itself: static, no data (and so never a key) in it; everything comes from the API. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Azure IoT emulator</title>
<link rel="stylesheet" href="/ui/assets/app.css">
<script type="module" src="/ui/assets/app.js"></script>
</head>
<body>
<div id="app"><p class="loading">Loading the emulator's page…</p></div>
<noscript>This page needs JavaScript; the same data is in the JSON API (GET /devices, /devices/{id}/telemetry, …).</noscript>
</body>
</html>
`;

/** No inline script or style and nothing from elsewhere; no framing (clickjacking). */
export const SECURITY_HEADERS: Record<string, string> = {
	"content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"x-content-type-options": "nosniff",
	"x-frame-options": "DENY",
	"referrer-policy": "no-referrer",
	"cache-control": "no-store",
};
