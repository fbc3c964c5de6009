/*
 * `npm test` after the type check: runs AVA with its output shown and kept, then fails the run if
 * any secret the tests created appears in that output or in a log file the tests wrote.
 *
 * How the secrets are known: AZURE_IOT_SECRETS_FILE points the emulator's hook
 * (emulator/secret-log.ts) at a file where it records every key it stores or derives and every SAS
 * signature it accepts, with the test file that made it. How the log files are found: AVA runs with
 * TMPDIR set to a fresh directory, so whatever the tests write under os.tmpdir() lands there; the
 * emulator's and the tests' certificate caches are linked in from the real temp directory (not
 * scanned) so that they are not rebuilt on every run. Everything is removed afterwards.
 *
 * Usage: tsx tools/test.ts [ava arguments…]   (exit code: AVA's, or 1 for a leak)
 */
import {spawn} from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";
import {formatFindings, loadSecrets, scanLogFiles, scanText, type Finding} from "./secrets-scan.js";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface ScanRun {
	exitCode: number;
	findings: Finding[];
	/** Everything the command printed, stdout and stderr interleaved. */
	output: string;
	/** How many recorded secrets were searched for. */
	secrets: number;
}

export interface ScanRunOptions {
	/** Copy the command's output to ours as it comes. Default true. */
	tee?: boolean;
	env?: Record<string, string>;
	cwd?: string;
}

/** Runs a command with the secret recording on and a private TMPDIR, then scans what it printed and logged. */
export async function runAndScan(command: string, args: readonly string[], options: ScanRunOptions = {}): Promise<ScanRun> {
	const realTmp = os.tmpdir();
	const base = fs.mkdtempSync(path.join(realTmp, "azure-iot-test-"));
	const secretsFile = path.join(base, "secrets.ndjson");
	const tmp = path.join(base, "tmp");
	fs.mkdirSync(tmp);
	linkCaches(realTmp, tmp);
	const chunks: string[] = [];
	let exitCode: number;
	try {
		exitCode = await new Promise<number>((resolve, reject) => {
			const child = spawn(command, args, {
				cwd: options.cwd ?? REPO_ROOT,
				env: {
					...process.env,
					...(process.stdout.isTTY && !process.env.NO_COLOR ? {FORCE_COLOR: "1"} : {}),
					...options.env,
					TMPDIR: tmp,
					AZURE_IOT_SECRETS_FILE: secretsFile,
				},
				stdio: ["inherit", "pipe", "pipe"],
			});
			const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
			const onInt = forward("SIGINT"), onTerm = forward("SIGTERM");
			process.on("SIGINT", onInt);
			process.on("SIGTERM", onTerm);
			const take = (sink: NodeJS.WriteStream) => (data: Buffer) => {
				chunks.push(data.toString("utf8"));
				if (options.tee ?? true) sink.write(data);
			};
			child.stdout!.on("data", take(process.stdout));
			child.stderr!.on("data", take(process.stderr));
			child.on("error", reject);
			child.on("close", (code, signal) => {
				process.off("SIGINT", onInt);
				process.off("SIGTERM", onTerm);
				resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1));
			});
		});
		const output = chunks.join("");
		const secrets = loadSecrets(secretsFile);
		const findings = [...scanText(output, secrets), ...scanLogFiles(tmp, secrets)];
		for (const f of findings) if (f.where.startsWith(tmp)) f.where = "a log file under TMPDIR: " + path.relative(tmp, f.where);
		return {exitCode, findings, output, secrets: secrets.length};
	}
	finally {
		keepCaches(tmp, realTmp);
		fs.rmSync(base, {recursive: true, force: true});
	}
}

/** Links the certificate caches (emulator PKI, test PKI) from the real temp directory into the private one. */
function linkCaches(realTmp: string, tmp: string): void {
	fs.mkdirSync(path.join(realTmp, "moddable-azure-iot-emulator"), {recursive: true});
	for (const name of fs.readdirSync(realTmp)) {
		if (!name.startsWith("moddable-azure-iot")) continue;
		try {
			fs.symlinkSync(path.join(realTmp, name), path.join(tmp, name));
		}
		catch {
			// a cache that cannot be shared is simply rebuilt
		}
	}
}

/** Caches first made during this run are moved to the real temp directory for the next run. */
function keepCaches(tmp: string, realTmp: string): void {
	for (const name of fs.readdirSync(tmp)) {
		if (!name.startsWith("moddable-azure-iot") || fs.lstatSync(path.join(tmp, name)).isSymbolicLink()) continue;
		try {
			if (!fs.existsSync(path.join(realTmp, name))) fs.renameSync(path.join(tmp, name), path.join(realTmp, name));
		}
		catch {
			// rebuilt next time
		}
	}
}

/** ava's closing counts ("12 tests passed", "1 test failed", "2 tests skipped", …). */
export function avaCounts(output: string): {passed: number; failed: number; skipped: number} {
	const count = (what: RegExp) => {
		const m = [...output.matchAll(what)].at(-1);
		return m ? Number(m[1]) : 0;
	};
	return {
		// With failures ava prints no "passed" count: then its ✔ lines are counted.
		passed: count(/^\s*(\d+) tests? passed/gm) || [...output.matchAll(/^\s*✔ /gm)].length,
		failed: count(/^\s*(\d+) tests? failed/gm) + count(/^\s*(\d+) uncaught exceptions?/gm) + count(/^\s*(\d+) unhandled rejections?/gm),
		skipped: count(/^\s*(\d+) tests? skipped/gm),
	};
}

async function main(): Promise<void> {
	const ava = path.join(REPO_ROOT, "node_modules/ava/entrypoints/cli.mjs");
	const run = await runAndScan(process.execPath, [ava, ...process.argv.slice(2)]);
	const counts = avaCounts(run.output);
	if (run.exitCode !== 0 && counts.failed === 0) counts.failed = 1; // ava failed without counting one (a crash, a timeout)
	if (run.findings.length) {
		process.stderr.write("\n" + formatFindings(run.findings) + "\n");
		process.stdout.write(`tests: ${counts.passed} passed, ${counts.failed + 1} failed, ${counts.skipped} skipped\n`);
		process.exitCode = run.exitCode || 1;
		return;
	}
	process.stdout.write(`secrets check: none of the ${run.secrets} keys and signatures the tests made, and no sig=… token, appears in the output or the log files\n`);
	// The plain closing line CI reads (ava's own summary has another form).
	process.stdout.write(`tests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`);
	process.exitCode = run.exitCode;
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) await main();
