/*
 * Bytecode size: the .xsb files xsc wrote for a simulator build of the firmware (manifest.json),
 * split into the project's own modules (src/, hosts/) and the SDK's. XS bytecode does not depend on
 * the target, so a module's .xsb is the same size for the ESP32; the ESP32 image differs only in
 * which platform modules it includes (Wi-Fi, SNTP and hosts/esp32 instead of hosts/sim).
 * The sources are read from the build's makefile rules (`$(MODULES_DIR)/x.xsb: <source>`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {REPO_ROOT} from "./lib.js";

export interface SizeReport {
	projectBytes: number;
	projectModules: number;
	sdkBytes: number;
	sdkModules: number;
	totalBytes: number;
	/** The simulator's shared library (natives, XS engine, bytecode, resources) for reference. */
	soBytes?: number;
	/** The largest of the project's modules. */
	largest: {module: string; bytes: number}[];
}

export function measureSize(buildDir: string, variant: "release" | "instrument" = "release"): SizeReport {
	const appDir = path.join(buildDir, "tmp/lin/mc", variant, "app");
	const makefile = fs.readFileSync(path.join(appDir, "makefile"), "utf8");
	const modulesDir = path.join(appDir, "modules");
	const report: SizeReport = {projectBytes: 0, projectModules: 0, sdkBytes: 0, sdkModules: 0, totalBytes: 0, largest: []};
	const own: {module: string; bytes: number}[] = [];
	const seen = new Set<string>();
	for (const m of makefile.matchAll(/^\$\(MODULES_DIR\)\/(\S+\.xsb): (\S+)/gm)) {
		const [, module, source] = m;
		if (seen.has(module)) continue;
		seen.add(module);
		let bytes: number;
		try {
			bytes = fs.statSync(path.join(modulesDir, module)).size;
		}
		catch {
			continue;
		}
		report.totalBytes += bytes;
		// TypeScript sources appear as tsc's output, which keeps the source's absolute path.
		const at = source.indexOf(REPO_ROOT + "/");
		const rel = at >= 0 ? source.slice(at + REPO_ROOT.length + 1) : "";
		if (rel.startsWith("src/") || rel.startsWith("hosts/") || rel.startsWith("bench/")) {
			report.projectBytes += bytes;
			report.projectModules++;
			own.push({module: module.replace(/\.xsb$/, ""), bytes});
		}
		else {
			report.sdkBytes += bytes;
			report.sdkModules++;
		}
	}
	report.largest = own.sort((a, b) => b.bytes - a.bytes).slice(0, 6);
	try {
		report.soBytes = fs.statSync(path.join(buildDir, "bin/lin/mc", variant, "app/mc.so")).size;
	}
	catch {
		// not linked
	}
	return report;
}
