/*
 * `npm run emulator -- [--port N] [--api-port M] [--api-host H --api-token T] [--models DIR] [--id-scope S] [--hub-name H] [--data-dir D] [--adu-http-port P] [--adu-https-port Q]`
 * Prints exactly one JSON line on stdout when ready; logs go to stderr.
 */
import {Command, InvalidArgumentError} from "commander";
import * as fs from "node:fs";
import * as path from "node:path";
import {fileURLToPath} from "node:url";
import {type TlsProfile, startEmulator} from "./index.js";
import {TLS_PROFILES} from "./pki.js";

function portNumber(value: string): number {
	const n = Number(value);
	if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError("a port is an integer from 0 to 65535.");
	return n;
}

function count(value: string): number {
	const n = Number(value);
	if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected a non-negative integer.");
	return n;
}

const program = new Command()
	.name("emulator")
	.description("Local Azure IoT Hub Device Provisioning Service + IoT Hub emulator (MQTT over TLS)")
	.option("--port <n>", "MQTT/TLS port for DPS and hub (8883 like Azure, 0 = ephemeral)", portNumber, 0)
	.option("--api-port <n>", "HTTP service API and page port (0 = ephemeral)", portNumber, 0)
	.option("--api-host <host>", "address the API and the page listen on (default 127.0.0.1; anything else needs --api-token)")
	.option("--api-token <secret>", "token every API request must carry (or set EMULATOR_API_TOKEN)")
	.option("--models <dir>", "DTDL model files the page reads Plug and Play commands from (default examples/models if present)")
	.option("--bind-host <host>", "address the MQTT/TLS listener binds", "127.0.0.1")
	.option("--id-scope <scope>", "DPS ID scope")
	.option("--hub-name <name>", "host name of the hub DPS assigns devices to", "localhost")
	.option("--data-dir <dir>", "where the root CA (PEM and DER) and the PKI cache are written")
	.option("--retry-after <s>", "retry-after seconds on DPS 202 replies", count, 1)
	.option("--polls <n>", "operation-status polls answered \"assigning\" before the assignment", count, 1)
	.option("--adu-http-port <n>", "Device Update file server, plain HTTP (0 = ephemeral)", portNumber, 0)
	.option("--adu-https-port <n>", "Device Update file server, HTTPS (0 = ephemeral)", portNumber, 0)
	.option("--tls <profile>", `served certificate profile: ${TLS_PROFILES.join(", ")}`, "valid")
	.option("--quiet", "no log lines on stderr");

program.parse();
const opts = program.opts<{
	port: number; apiPort: number; apiHost?: string; apiToken?: string; models?: string; bindHost: string; idScope?: string; hubName: string; dataDir?: string;
	retryAfter: number; polls: number; aduHttpPort: number; aduHttpsPort: number; tls: string; quiet?: boolean;
}>();
if (!TLS_PROFILES.includes(opts.tls as TlsProfile)) program.error(`--tls must be one of ${TLS_PROFILES.join(", ")}`);

const defaultModels = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../examples/models");
if (opts.models !== undefined && !fs.existsSync(opts.models)) program.error(`--models ${opts.models}: no such directory`);

const emulator = await startEmulator({
	port: opts.port,
	apiPort: opts.apiPort,
	apiHost: opts.apiHost,
	apiToken: opts.apiToken ?? (process.env.EMULATOR_API_TOKEN || undefined),
	modelsDir: opts.models ?? (fs.existsSync(defaultModels) ? defaultModels : undefined),
	bindHost: opts.bindHost,
	idScope: opts.idScope,
	hubName: opts.hubName,
	dataDir: opts.dataDir,
	retryAfterSeconds: opts.retryAfter,
	pollsBeforeAssigned: opts.polls,
	aduHttpPort: opts.aduHttpPort,
	aduHttpsPort: opts.aduHttpsPort,
	tls: opts.tls as TlsProfile,
	log: opts.quiet ? undefined : line => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
}).catch((error: Error & {code?: string}) => {
	const hint = error.code === "EACCES" ? " (ports below 1024 need privileges; use --port 0 or a higher port)"
		: error.code === "EADDRINUSE" ? " (another process uses it; choose another --port)" : "";
	process.stderr.write(`emulator: ${error.message}${hint}\n`);
	process.exit(1);
});

let stopping = false;
const stop = (signal: string) => {
	if (stopping) return;
	stopping = true;
	process.stderr.write(`emulator: ${signal}, closing\n`);
	const force = setTimeout(() => process.exit(0), 3000);
	force.unref();
	emulator.close().then(() => process.exit(0), () => process.exit(0));
};
process.on("SIGINT", () => stop("SIGINT"));
process.on("SIGTERM", () => stop("SIGTERM"));

process.stdout.write(JSON.stringify({
	host: emulator.host,
	port: emulator.port,
	idScope: emulator.idScope,
	ca: emulator.caPemPath,
	caDer: emulator.caDerPath,
	api: emulator.apiUrl,
	aduRootKey: emulator.aduRootKeyPath,
	page: emulator.pageUrl,
}) + "\n");

