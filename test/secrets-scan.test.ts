/*
 * The leak check of `npm test` (tools/test.ts, tools/secrets-scan.ts, emulator/secret-log.ts)
 * really catches leaks: planted keys and signatures are found, in output and in log files, in the
 * forms they take in tokens; the report names the test file and never repeats the secret; and a
 * whole run of a planted test through the wrapper fails, while a clean one passes.
 */
import test from "ava";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {fileURLToPath, pathToFileURL} from "node:url";
import {formatFindings, scanLogFiles, scanText, type Secret} from "../tools/secrets-scan.js";
import {runAndScan} from "../tools/test.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const key = () => crypto.randomBytes(32).toString("base64");
const signature = () => crypto.randomBytes(32).toString("base64");

test("a planted device key in the output is found, attributed to its test file, and not repeated in the report", t => {
	const secret: Secret = {kind: "key", value: key(), owner: path.join(ROOT, "test/some-planted.test.ts")};
	const output = `  ✔ other › fine\nconnecting with ${secret.value} now\n  ✔ some-planted › leaks\n`;
	const findings = scanText(output, [secret]);
	t.is(findings.length, 1);
	t.like(findings[0], {where: "test output", line: 2, what: "a device key", testFile: "test/some-planted.test.ts"});
	const report = formatFindings(findings);
	t.regex(report, /a device key of test\/some-planted\.test\.ts in test output, line 2: connecting with <key> now/);
	t.false(report.includes(secret.value));
});

test("the forms a secret takes are found: URL-encoded, JSON-escaped, a signature alone or in a token; redacted tokens are not", t => {
	let value = key();
	while (!/[+/]/.test(value)) value = key();
	const k: Secret = {kind: "groupKey", value};
	const sig: Secret = {kind: "signature", value: signature(), owner: "/x/test/signer.test.ts"};
	const unknownSig = encodeURIComponent(signature());
	const output = [
		`topic ?k=${encodeURIComponent(k.value)}`,
		`{"note":${JSON.stringify(k.value)}}`,
		`raw ${sig.value}`,
		`  ✘ [fail]: hub-thing › leaks a token`,
		`password SharedAccessSignature sr=a%2Fdevices%2Fb&sig=${unknownSig}&se=1`,
		`password SharedAccessSignature sr=a%2Fdevices%2Fb&sig=<redacted>&se=1`,
		`sig=short&se=2`,
		`HostName=h;DeviceId=d;SharedAccessKey=${key()}`,
		// The documented test vectors are public.
		`sig=UcaBdA4L3Se7NlFQZcBFRndkqyymINWtRUmVT5QYWng%3D`,
	].join("\n");
	const findings = scanText(output, [k, sig]);
	t.deepEqual(findings.map(f => [f.line, f.what]), [
		[1, "a group key"], [2, "a group key"], [3, "a SAS signature"],
		[5, "a SAS signature (sig=…)"], [8, "a shared access key"],
	]);
	t.is(findings[2].testFile, "/x/test/signer.test.ts");
	t.is(findings[3].testFile, "test/hub-thing.test.ts", "an unknown signature is attributed to the nearest test named before it");
});

test("log files under the scanned directory are searched; other files and links are not", t => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "secrets-scan-"));
	t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}));
	const secret: Secret = {kind: "derivedKey", value: key(), owner: "/r/test/a.test.ts"};
	fs.mkdirSync(path.join(dir, "run"));
	fs.writeFileSync(path.join(dir, "run", "device.log"), `line\nkey=${secret.value}\n`);
	fs.writeFileSync(path.join(dir, "run", "state.bin"), secret.value);
	const findings = scanLogFiles(dir, [secret]);
	t.is(findings.length, 1);
	t.like(findings[0], {where: path.join(dir, "run", "device.log"), line: 2, what: "a derived device key", testFile: "/r/test/a.test.ts"});
});

/*
 * The whole chain: a stand-in test file starts the emulator (whose hook records the key it makes and
 * the signature it accepts), connects a device, and prints or logs secrets; run through the wrapper.
 */
function plantedTest(dir: string, leak: "print" | "log" | "none"): string {
	const url = (p: string) => pathToFileURL(path.join(ROOT, p)).href;
	const file = path.join(dir, `planted-${leak}.test.mts`);
	fs.writeFileSync(file, `
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {startEmulator} from ${JSON.stringify(url("emulator/index.ts"))};
import {ProvisioningClient} from ${JSON.stringify(url("src/dps.ts"))};
import {createNodeHost} from ${JSON.stringify(url("hosts/node/host.ts"))};
import {connect, hubCredentials} from ${JSON.stringify(url("test/helpers/emulator-client.ts"))};
const emulator = await startEmulator({retryAfterSeconds: 1, pollsBeforeAssigned: 0});
try {
	const id = "planted-device";
	const {symmetricKey} = emulator.addEnrollment({registrationId: id});
	await new ProvisioningClient({adapter: createNodeHost(), roots: [emulator.caDer], endpoint: emulator.host, port: emulator.port,
		idScope: emulator.idScope, registrationId: id, symmetricKey}).register();
	const credentials = hubCredentials(emulator, id, symmetricKey);
	const client = await connect(emulator, credentials);
	client.end(true);
	const sig = decodeURIComponent(/sig=([^&]+)/.exec(credentials.password)![1]);
	const leak = ${JSON.stringify(leak)};
	if (leak === "print") console.log("the key is " + symmetricKey + " and the hub signature " + sig);
	if (leak === "log") fs.writeFileSync(path.join(os.tmpdir(), "device.log"), "connected with " + sig + "\\n");
	console.log("planted test done");
}
finally {
	await emulator.close();
}
`);
	return file;
}

test("through the wrapper: a test that prints a key and a signature, or logs a signature, fails the run naming it; a clean one passes", async t => {
	t.timeout(60_000);
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "secrets-planted-"));
	t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}));
	const run = (leak: "print" | "log" | "none") =>
		runAndScan(process.execPath, ["--import", "tsx", plantedTest(dir, leak)], {tee: false, cwd: ROOT});
	const [printed, logged, clean] = await Promise.all([run("print"), run("log"), run("none")]);

	for (const r of [printed, logged, clean]) t.regex(r.output, /planted test done/, r.output);
	t.true(printed.secrets >= 2, "the emulator recorded the key and the accepted signatures");
	t.deepEqual(printed.findings.map(f => f.what).sort(), ["a SAS signature", "a device key"]);
	for (const f of printed.findings) t.is(path.basename(f.testFile ?? ""), "planted-print.test.mts");
	t.is(logged.findings.length, 1);
	t.like(logged.findings[0], {what: "a SAS signature", where: "a log file under TMPDIR: device.log"});
	t.is(path.basename(logged.findings[0].testFile ?? ""), "planted-log.test.mts");
	t.deepEqual(clean.findings, []);
	t.is(clean.exitCode, 0);
	const report = formatFindings(printed.findings);
	t.regex(report, /the key is <key> and the hub signature <signature>/);
	t.notRegex(report, /[A-Za-z0-9+/]{40,}/, "every secret on the line is masked, not only the one reported");
});
