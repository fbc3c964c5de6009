/*
 * The commissioning tools a fleet operator runs: derive-key and commission.
 */
import test from "ava";
import {spawnSync} from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

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
