/*
 * Where an application is: a directory with a Moddable manifest.json that includes the library and
 * names a "main" module (the reference firmware is the repository itself; examples/<name> the
 * examples; any directory of yours). The tools build it (npm run sim, npm run build:esp32) or run
 * it on the Node host (npm run device, npm start without the SDK).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {REPO_ROOT} from "./sim-runner.js";

export interface App {
	dir: string;
	manifest: string;
	/** The file of its main module (TypeScript or JavaScript), for the Node host. */
	main: string;
	/** A short name for build directories and messages. */
	name: string;
	/** What `npm start` does from the service side (demo.json beside the manifest; firmware/demo.json for the reference). */
	demo?: Demo;
}

/** A scripted tour of an application from the service side. */
export interface Demo {
	/** Telemetry interval for the demo device. */
	intervalMs?: number;
	steps: DemoStep[];
}

export interface DemoStep {
	say: string;
	method?: string;
	payload?: unknown;
	desired?: Record<string, unknown>;
	c2d?: {body: string; properties?: Record<string, string>};
	/** The device event that shows the step arrived. */
	wait?: string;
}

export function resolveApp(dir?: string): App {
	const appDir = path.resolve(dir ?? REPO_ROOT);
	const manifest = path.join(appDir, "manifest.json");
	if (!fs.existsSync(manifest)) throw new Error(`--app ${dir}: no manifest.json in ${appDir}. Give the directory of a Moddable application that includes the library (see examples/)`);
	let json: {modules?: Record<string, unknown>; creation?: {main?: string}};
	try {
		json = JSON.parse(fs.readFileSync(manifest, "utf8"));
	}
	catch (e) {
		throw new Error(`${manifest}: not valid JSON (${(e as Error).message})`);
	}
	const mainName = json.creation?.main ?? "main";
	const mapped = json.modules?.[mainName];
	const base = typeof mapped === "string" ? path.resolve(appDir, mapped) : path.join(appDir, mainName);
	const main = [".ts", ".js"].map(ext => base + ext).find(f => fs.existsSync(f));
	if (!main) throw new Error(`${manifest}: its main module (${mainName}) is not a .ts or .js file next to it. Map "modules": {"main": "./main"}`);
	const name = appDir === REPO_ROOT ? "firmware" : path.relative(REPO_ROOT, appDir).replace(/[^A-Za-z0-9_-]+/g, "-") || path.basename(appDir);
	const demoFile = [path.join(appDir, "demo.json"), ...(appDir === REPO_ROOT ? [path.join(REPO_ROOT, "firmware/demo.json")] : [])].find(f => fs.existsSync(f));
	const demo = demoFile ? JSON.parse(fs.readFileSync(demoFile, "utf8")) as Demo : undefined;
	return {dir: appDir, manifest, main, name, demo};
}
