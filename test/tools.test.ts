/*
 * The commissioning tools a fleet operator runs: derive-key and commission (keys and certificates).
 */
import test from "ava";
import {spawnSync} from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {startEmulator} from "../emulator/index.js";
import {Inbox, connect, end, parseDpsReply, publish, subscribe} from "./helpers/emulator-client.js";

const GROUP_KEY = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
const REG = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6";
const DERIVED = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=";

function run(tool: string, args: string[], env: Record<string, string> = {}) {
	return spawnSync(process.execPath, ["--import=tsx", `tools/${tool}.ts`, ...args], {encoding: "utf8", env: {...process.env, ...env}, timeout: 60_000});
}

test("derive-key prints Microsoft's documented derived key, from the flag or GROUP_KEY", t => {
	const r = run("derive-key", ["--group-key", GROUP_KEY, "--registration-id", REG, "other-1", "--json"]);
	t.is(r.status, 0, r.stderr);
	const lines = r.stdout.trim().split("\n").map(l => JSON.parse(l));
	t.deepEqual(lines[0], {registrationId: REG, symmetricKey: DERIVED});
	t.is(lines.length, 2);
	const fromEnv = run("derive-key", ["--registration-id", REG], {GROUP_KEY});
	t.is(fromEnv.stdout.trim(), `${REG} ${DERIVED}`);
});

test("derive-key refuses a bad registration id or key, naming it", t => {
	const bad = run("derive-key", ["--group-key", GROUP_KEY, "--registration-id", "has space"]);
	t.is(bad.status, 2);
	t.regex(bad.stderr, /--registration-id: contains " "/);
	const badKey = run("derive-key", ["--group-key", "not-base64!", "--registration-id", REG]);
	t.is(badKey.status, 2);
	t.regex(badKey.stderr, /groupKey: is not valid base64/);
	t.false(badKey.stderr.includes("not-base64!"));
});

test("commission writes an NVS CSV per device in the firmware's Preference domain, with the derived key", t => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "commission-"));
	const r = run("commission", ["--id-scope", "0ne00000001", "--registration-id", REG, "dev-2", "--group-key", GROUP_KEY, "--out-dir", dir]);
	t.is(r.status, 0, r.stderr);
	const csv = fs.readFileSync(path.join(dir, `${REG}.csv`), "utf8").trim().split("\n");
	t.is(csv[0], "key,type,encoding,value");
	t.is(csv[1], "azure,namespace,,");
	t.true(csv.includes(`registrationId,data,string,${REG}`));
	t.true(csv.includes(`symmetricKey,data,string,${DERIVED}`));
	t.true(csv.includes("idScope,data,string,0ne00000001"));
	t.true(fs.existsSync(path.join(dir, "dev-2.csv")));
	t.false(fs.readFileSync(path.join(dir, "dev-2.csv"), "utf8").includes(GROUP_KEY), "the group key is not written");
	for (const line of csv.slice(2)) t.true(line.split(",")[0].length <= 15, "NVS keys are at most 15 characters");
	fs.rmSync(dir, {recursive: true});
});

test("commission needs exactly one kind of key", t => {
	const r = run("commission", ["--id-scope", "0ne00000001", "--registration-id", REG]);
	t.is(r.status, 2);
	t.regex(r.stderr, /exactly one of --group-key/);
});

test("commission --x509 issues each device its own certificate from a new fleet CA, as NVS blobs and PEM files, and prints the az CLI steps", async t => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), "commission-x509-"));
	t.teardown(() => fs.rmSync(dir, {recursive: true, force: true}));
	const caDir = path.join(dir, "ca");
	const outDir = path.join(dir, "out");
	const r = run("commission", ["--x509", "--create-ca", "--intermediate", "--ca-dir", caDir, "--id-scope", "0ne00000001", "--registration-id", "dev-x1", "Dev-X2", "--out-dir", outDir]);
	t.is(r.status, 0, r.stderr);
	const rows = fs.readFileSync(path.join(outDir, "dev-x1.csv"), "utf8").trim().split("\n").map(l => l.split(","));
	t.deepEqual(rows.slice(0, 2), [["key", "type", "encoding", "value"], ["azure", "namespace", "", ""]]);
	const value = (key: string) => rows.find(row => row[0] === key);
	t.deepEqual(value("registrationId"), ["registrationId", "data", "string", "dev-x1"]);
	t.deepEqual(value("idScope"), ["idScope", "data", "string", "0ne00000001"]);
	t.is(value("symmetricKey"), undefined);
	for (const key of ["x509Cert", "x509Chain", "x509Key"]) t.deepEqual(value(key)?.slice(1, 3), ["data", "base64"], key);
	for (const row of rows.slice(2)) t.true(row[0].length <= 15, "NVS keys are at most 15 characters");

	const root = new crypto.X509Certificate(fs.readFileSync(path.join(caDir, "root-ca.cert.pem")));
	const intermediate = new crypto.X509Certificate(Buffer.from(value("x509Chain")![3], "base64"));
	const leaf = new crypto.X509Certificate(Buffer.from(value("x509Cert")![3], "base64"));
	t.is(leaf.subject, "CN=dev-x1");
	t.false(leaf.ca);
	t.deepEqual(leaf.keyUsage, ["1.3.6.1.5.5.7.3.2"], "clientAuth");
	t.true(leaf.checkIssued(intermediate) && leaf.verify(intermediate.publicKey), "the leaf is issued by the intermediate");
	t.true(intermediate.ca && intermediate.checkIssued(root) && intermediate.verify(root.publicKey), "which the root issued");
	const key = crypto.createPrivateKey({key: Buffer.from(value("x509Key")![3], "base64"), format: "der", type: "pkcs8"});
	t.true(leaf.checkPrivateKey(key), "x509Key is the leaf's key, as unencrypted PKCS#8 DER");
	t.is(key.asymmetricKeyType, "rsa");
	t.is(key.asymmetricKeyDetails?.modulusLength, 2048);
	t.is(new crypto.X509Certificate(fs.readFileSync(path.join(outDir, "Dev-X2.cert.pem"))).subject, "CN=Dev-X2");
	t.is(fs.readFileSync(path.join(outDir, "dev-x1.fullchain.pem"), "utf8").split("BEGIN CERTIFICATE").length, 3, "leaf + intermediate");

	for (const file of [path.join(outDir, "dev-x1.key.pem"), path.join(outDir, "dev-x1.csv"), path.join(caDir, "root-ca.key.pem"), path.join(caDir, "intermediate-ca.key.pem")])
		t.is(fs.statSync(file).mode & 0o777, 0o600, file);
	t.false(r.stdout.includes("PRIVATE KEY"));
	t.false(r.stdout.includes(value("x509Key")![3].slice(0, 40)), "no key material is printed");
	for (const step of ["az iot dps certificate create", "az iot dps certificate generate-verification-code", "az iot dps certificate verify", "--verified true",
		"az iot dps enrollment-group create", "--ca-name fleet-root", "--certificate-path", "az iot hub certificate create", "az iot hub certificate verify",
		"az iot dps enrollment create", "--attestation-type x509"])
		t.true(r.stdout.includes(step), step);

	// The CA is kept: a second --create-ca refuses, a plain run issues from it.
	const again = run("commission", ["--x509", "--create-ca", "--ca-dir", caDir, "--id-scope", "0ne00000001", "--registration-id", "dev-x3", "--out-dir", outDir]);
	t.is(again.status, 2);
	t.regex(again.stderr, /already holds a fleet CA/);
	t.is(run("commission", ["--x509", "--ca-dir", caDir, "--id-scope", "0ne00000001", "--registration-id", "dev-x3", "--out-dir", outDir]).status, 0);
	const bad = run("commission", ["--x509", "--ca-dir", caDir, "--id-scope", "0ne00000001", "--registration-id", "ends-in-dot.", "--out-dir", outDir]);
	t.is(bad.status, 2);
	t.regex(bad.stderr, /ends in "\.", which DPS refuses/);
	const none = run("commission", ["--x509", "--ca-dir", path.join(dir, "nowhere"), "--id-scope", "0ne00000001", "--registration-id", "dev-x4", "--out-dir", outDir]);
	t.regex(none.stderr, /no fleet CA there.*--create-ca/);

	// Proof of possession against the emulator, then a device provisions with what the tool wrote.
	const emu = await startEmulator();
	t.teardown(() => emu.close());
	emu.addCertificate({name: "fleet-root", pem: root.toString(), target: "both"});
	const {verificationCode} = emu.certificateVerificationCode("fleet-root");
	const pop = run("commission", ["--ca-dir", caDir, "--verification-code", verificationCode]);
	t.is(pop.status, 0, pop.stderr);
	t.true(emu.verifyCertificate("fleet-root", fs.readFileSync(path.join(caDir, "verification.cert.pem"), "utf8")).every(c => c.verified));
	emu.addEnrollmentGroup({groupId: "fleet", attestation: {type: "x509", caName: "fleet-root"}});
	const client = await connect(emu, {clientId: "dev-x1", username: `${emu.idScope}/registrations/dev-x1/api-version=2019-03-31`},
		{cert: fs.readFileSync(path.join(outDir, "dev-x1.fullchain.pem")), key: fs.readFileSync(path.join(outDir, "dev-x1.key.pem"))});
	t.teardown(() => end(client));
	const inbox = new Inbox(client);
	await subscribe(client, "$dps/registrations/res/#");
	await publish(client, "$dps/registrations/PUT/iotdps-register/?$rid=1", "");
	t.is(parseDpsReply(await inbox.next()).status, 202, "DPS accepts the device's certificate chain");
});
