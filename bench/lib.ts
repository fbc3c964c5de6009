/*
 * What every benchmark part shares: the emulator in a process of its own (so that on a 2-core
 * machine the server and the client under test run side by side, as they would in the field),
 * its HTTP service API, and the statistics the table is made of.
 */
import {spawn, type ChildProcess} from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as readline from "node:readline";
import {fileURLToPath} from "node:url";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface EmulatorSettings {
	/** retry-after on DPS 202 replies, the same for every client. */
	retryAfterSeconds: number;
	/** Operation-status polls answered "assigning" before the assignment. */
	polls: number;
	/** The host name DPS assigns: a name other than the DPS host's, as on Azure (see connect.ts). */
	hubName: string;
	dataDir: string;
	/** Where the emulator's log lines go (for diagnosing a failed run); default: dropped. */
	logFile?: string;
}

export interface EmulatorProcess {
	host: string;
	port: number;
	idScope: string;
	hubName: string;
	caPem: string;
	caDer: Uint8Array;
	caDerPath: string;
	api: string;
	pid: number;
	addEnrollment(registrationId: string): Promise<string>;
	/** Any call of the emulator's HTTP API (emulator/api.ts); the reply's JSON. */
	call(method: string, url: string, body?: unknown): Promise<any>;
	/** Switches a fault on (its id switches it off), or makes a hostile send (`send.*`): then its record is in `sent`. */
	addFault(fault: Record<string, unknown>): Promise<{id?: number; sent?: {id: number}}>;
	/** The hostile sends' records (emulator/hostile.ts SentView). */
	sent(): Promise<{id: number; done: boolean; sent: number; results?: ({status: number} | {error: string})[]; versions?: number[]; messages?: {completed: boolean; deliveries: number}[]}[]>;
	patchDesired(deviceId: string, patch: Record<string, unknown>): Promise<{version: number}>;
	purgeC2d(deviceId: string): Promise<{totalMessagesPurged: number}>;
	/** A device's hub connections (emulator ConnectionRecord). */
	connections(deviceId: string): Promise<{connectedAt: string; endedAt?: string; endedBy?: string}[]>;
	clearFaults(): Promise<void>;
	drop(): Promise<void>;
	stats(): Promise<{dpsRegisterRequests: number; dpsPollRequests: number; dpsConnects: number; hubConnects: number; telemetry: number; devices: Record<string, Record<string, number>>}>;
	invokeMethod(deviceId: string, name: string, payload: unknown): Promise<{status: number; payload: unknown}>;
	stop(): Promise<void>;
}

/** Starts `npm run emulator` (emulator/cli.ts) as a child in its own process group. */
export async function startEmulatorProcess(settings: EmulatorSettings): Promise<EmulatorProcess> {
	fs.mkdirSync(settings.dataDir, {recursive: true});
	const child: ChildProcess = spawn(process.execPath, [
		"--import", "tsx", path.join(REPO_ROOT, "emulator/cli.ts"),
		"--port", "0", ...(settings.logFile ? [] : ["--quiet"]), "--data-dir", settings.dataDir, "--hub-name", settings.hubName,
		"--retry-after", String(settings.retryAfterSeconds), "--polls", String(settings.polls),
	], {cwd: REPO_ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"]});
	let stderr = "";
	const logStream = settings.logFile ? fs.createWriteStream(settings.logFile) : undefined;
	child.stderr!.on("data", (d: Buffer) => {
		stderr = (stderr + d.toString()).slice(-4000);
		logStream?.write(d);
	});
	const exited = new Promise<void>(resolve => child.once("exit", () => resolve()));
	const ready = await new Promise<{host: string; port: number; idScope: string; ca: string; caDer: string; api: string}>((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error(`the emulator did not start within 120 s: ${stderr}`)), 120_000);
		const lines = readline.createInterface({input: child.stdout!});
		lines.once("line", line => {
			clearTimeout(timer);
			try {
				resolve(JSON.parse(line));
			}
			catch {
				reject(new Error(`the emulator printed ${line}`));
			}
		});
		child.once("exit", code => {
			clearTimeout(timer);
			reject(new Error(`the emulator exited (${code}): ${stderr}`));
		});
	});
	const call = async (method: string, url: string, body?: unknown) => {
		const response = await fetch(ready.api + url, {
			method, headers: body === undefined ? undefined : {"content-type": "application/json"},
			body: body === undefined ? undefined : JSON.stringify(body),
		});
		const text = await response.text();
		if (response.status >= 300) throw new Error(`emulator API ${method} ${url}: ${response.status} ${text}`);
		return text ? JSON.parse(text) : undefined;
	};
	const caDer = new Uint8Array(fs.readFileSync(ready.caDer));
	return {
		host: ready.host,
		port: ready.port,
		idScope: ready.idScope,
		hubName: settings.hubName,
		caPem: fs.readFileSync(ready.ca, "utf8"),
		caDer,
		caDerPath: ready.caDer,
		api: ready.api,
		pid: child.pid!,
		addEnrollment: async registrationId => (await call("POST", "/enrollments", {registrationId})).symmetricKey,
		call,
		addFault: fault => call("POST", "/faults", fault),
		sent: () => call("GET", "/faults/sent"),
		purgeC2d: deviceId => call("DELETE", `/devices/${encodeURIComponent(deviceId)}/c2d`),
		patchDesired: (deviceId, patch) => call("PATCH", `/devices/${encodeURIComponent(deviceId)}/twin/desired`, patch),
		connections: deviceId => call("GET", `/devices/${encodeURIComponent(deviceId)}/connections`),
		clearFaults: async () => { await call("DELETE", "/faults"); },
		drop: async () => { await call("POST", "/faults/drop"); },
		stats: () => call("GET", "/stats"),
		invokeMethod: (deviceId, name, payload) => call("POST", `/devices/${encodeURIComponent(deviceId)}/methods/${encodeURIComponent(name)}`, {payload, timeoutSeconds: 30}),
		stop: async () => {
			if (child.exitCode !== null) return;
			try { process.kill(-child.pid!, "SIGTERM"); } catch {}
			const killer = setTimeout(() => { try { process.kill(-child.pid!, "SIGKILL"); } catch {} }, 4000);
			await exited;
			clearTimeout(killer);
			logStream?.end();
		},
	};
}

/* ------------------------------------------------------------------ statistics */

export function quantile(values: readonly number[], q: number): number {
	if (!values.length) return NaN;
	const sorted = [...values].sort((a, b) => a - b);
	const pos = (sorted.length - 1) * q;
	const lo = Math.floor(pos), hi = Math.ceil(pos);
	return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export interface Summary {
	n: number;
	median: number;
	min: number;
	max: number;
}

export function summarize(values: readonly number[]): Summary | undefined {
	const v = values.filter(x => Number.isFinite(x));
	if (!v.length) return undefined;
	return {n: v.length, median: quantile(v, 0.5), min: Math.min(...v), max: Math.max(...v)};
}

/** "1234 ms (1200–1300, n=5)" */
export function formatSummary(s: Summary | undefined, unit: string, digits = 0): string {
	if (!s) return "not measured";
	const f = (x: number) => x.toFixed(digits);
	return s.n === 1 ? `${f(s.median)} ${unit} (n=1)` : `${f(s.median)} ${unit} (${f(s.min)}–${f(s.max)}, n=${s.n})`;
}

export function ratio(a: Summary | undefined, b: Summary | undefined): string {
	if (!a || !b || !b.median) return "–";
	return `${(a.median / b.median).toFixed(2)}×`;
}

/** Resolves after ms. */
export const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));

/** A registration id unique to this benchmark process. */
let counter = 0;
export function newRegistrationId(prefix: string): string {
	return `${prefix}-${process.pid}-${++counter}`;
}

/** Runs `task` with a time limit; the error names what did not finish. */
export async function bounded<T>(what: string, ms: number, task: Promise<T>): Promise<T> {
	let timer: NodeJS.Timeout | undefined;
	try {
		return await Promise.race([task, new Promise<never>((_, reject) => {
			timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000} s`)), ms);
		})]);
	}
	finally {
		clearTimeout(timer);
	}
}
