/*
 * Fault matrix, TLS: servers the device must refuse, through the Node host on real sockets. The
 * emulator serves each bad certificate profile while the device pins the emulator's valid root.
 * Each is refused with a tls error that names the cause (Node's code) and the fix; DPS gives up at
 * once (no credentials are ever sent), the hub client waits its longest backoff. And there is no
 * fallback to plain TCP, ever: a server that answers in plain MQTT sees only TLS ClientHellos.
 */
import test from "ava";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import {fileURLToPath} from "node:url";
import type {AzureIoTError} from "../src/errors.js";
import {HubClient} from "../src/hub.js";
import {startReference} from "../firmware/reference.js";
import {createNodePlatform} from "../hosts/node/platform.js";
import {EventLog} from "./helpers/e2e.js";
import {countingHost, provisioningClient, sleep, startFaultRig, uniqueId, type FaultRig} from "./helpers/faults.js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const profiles = {
	untrustedRoot: {what: "a chain to an unpinned root", cause: /UNABLE_TO_GET_ISSUER_CERT_LOCALLY|unable to get local issuer certificate/},
	wrongHost: {what: "a certificate for another host name", cause: /ERR_TLS_CERT_ALTNAME_INVALID|does not match certificate's altnames/},
	expired: {what: "an expired server certificate", cause: /CERT_HAS_EXPIRED|certificate has expired/},
	selfSigned: {what: "a self-signed leaf", cause: /DEPTH_ZERO_SELF_SIGNED_CERT|self[- ]signed certificate/},
} as const;
type Profile = keyof typeof profiles;

const rigs = new Map<Profile, FaultRig>();
test.before(async () => {
	await Promise.all((Object.keys(profiles) as Profile[]).map(async p => rigs.set(p, await startFaultRig({tls: p}))));
});
test.after.always(async () => {
	await Promise.all([...rigs.values()].map(r => r.close()));
});

const FIX = /pinned root.*host name.*clock/;

for (const [profile, {what, cause}] of Object.entries(profiles) as [Profile, typeof profiles[Profile]][]) {
	test(`DPS refuses ${what} (tls ${profile}): a tls error naming the cause, after one connection, no credentials sent`, async t => {
		const rig = rigs.get(profile)!;
		const id = uniqueId(`tls-${profile}`);
		const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id});
		const host = countingHost();
		const client = provisioningClient(rig, id, symmetricKey, {adapter: host});
		const error = await t.throwsAsync(client.register()) as AzureIoTError;
		t.is(error.code, "tls");
		t.false(error.retriable);
		t.regex(error.message, cause);
		t.regex(error.message, FIX);
		t.is(host.connects.length, 1);
		t.is(rig.emulator.stats().dpsConnects, 0, "no MQTT session was ever opened");
		t.false(error.message.includes(symmetricKey));
	});

	test(`the hub client refuses ${what} (tls ${profile}) and waits its longest backoff before trying again`, async t => {
		const rig = rigs.get(profile)!;
		const host = countingHost();
		const disconnects: {error: AzureIoTError; retryInMs?: number}[] = [];
		const hub = new HubClient({
			adapter: host, roots: rig.roots, hubHost: rig.emulator.hubName, deviceId: uniqueId("tls-hub"), symmetricKey: Buffer.alloc(32, 1).toString("base64"),
			port: rig.emulator.port, backoff: {initialMs: 200, maxMs: 4000},
			onDisconnect: (error, retryInMs) => disconnects.push({error, retryInMs}),
		});
		try {
			void hub.open().catch(() => {});
			await sleep(1800);
			t.is(disconnects.length, 1);
			t.is(disconnects[0].error.code, "tls");
			t.regex(disconnects[0].error.message, cause);
			t.true(disconnects[0].retryInMs! >= 2000, `the long pause (maxMs / 2 or more): ${disconnects[0].retryInMs} ms`);
			t.is(host.connects.length, 1);
			t.false(hub.connected);
		}
		finally {
			await hub.close();
		}
	});
}

test("device: a DPS with a bad certificate is reported (dps.failed, code tls) and retried slowly", async t => {
	const rig = rigs.get("wrongHost")!;
	const id = uniqueId("tls-device");
	const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id});
	const log = new EventLog();
	const settings = {dpsHost: rig.emulator.host, dpsPort: rig.emulator.port, idScope: rig.emulator.idScope, registrationId: id, symmetricKey, hubPort: rig.emulator.port};
	const platform = createNodePlatform({roots: rig.roots, emit: log.emit, print: () => {}, settings});
	const host = countingHost(platform.adapter);
	const device = startReference({...platform, adapter: host});
	try {
		const failed = await log.waitFor("dps.failed", () => true, 10_000);
		t.is(failed.code, "tls");
		t.regex(String(failed.message), profiles.wrongHost.cause);
		await sleep(2000);
		t.is(host.connects.length, 1, "one TLS attempt in the window: the retry is minutes away");
	}
	finally {
		device.close();
	}
});

test("no fallback to plain TCP: a server speaking plain MQTT only ever receives TLS ClientHellos, and the clients fail with tls", async t => {
	const firstBytes: Buffer[] = [];
	const everything: Buffer[] = [];
	const sockets = new Set<net.Socket>();
	const server = net.createServer(socket => {
		sockets.add(socket);
		let first = true;
		socket.on("data", data => {
			everything.push(data);
			if (first) firstBytes.push(data.subarray(0, 3));
			first = false;
			// What a plain MQTT broker would say (a CONNACK, then a PUBLISH), tempting a client to carry on in the clear.
			socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00, 0x30, 0x05, 0x00, 0x01, 0x74, 0x68, 0x69]));
		});
		socket.on("error", () => {});
	});
	await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
	const port = (server.address() as net.AddressInfo).port;
	const rig = rigs.get("untrustedRoot")!;
	try {
		const key = Buffer.alloc(32, 9).toString("base64");
		const dpsError = await t.throwsAsync(provisioningClient(rig, "plain-probe", key, {port, replyTimeoutMs: 3000}).register()) as AzureIoTError;
		t.is(dpsError.code, "tls");
		const host = countingHost();
		const codes: string[] = [];
		const hub = new HubClient({
			adapter: host, roots: rig.roots, hubHost: "localhost", deviceId: "plain-probe", symmetricKey: key, port,
			backoff: {initialMs: 100, maxMs: 400}, onDisconnect: e => codes.push(e.code),
		});
		void hub.open().catch(() => {});
		await sleep(1500);
		await hub.close();
		t.true(codes.length >= 2 && codes.every(c => c === "tls"), `hub attempts: ${codes.join(", ")}`);
		t.true(firstBytes.length >= 1 + codes.length, "every refused attempt was seen by the server");
		for (const b of firstBytes) t.deepEqual([...b.subarray(0, 2)], [0x16, 0x03], "a TLS handshake record, not an MQTT CONNECT (0x10)");
		const all = Buffer.concat(everything).toString("latin1");
		t.false(all.includes("MQTT"), "no MQTT protocol name in the clear");
		t.false(all.includes("SharedAccessSignature"), "no token in the clear");
	}
	finally {
		for (const s of sockets) s.destroy();
		server.close();
	}
});

test("no fallback in the code: the hosts open plain TCP only when asked by secure false, which only the HTTP download asks, and TLS always verifies", t => {
	const node = fs.readFileSync(path.join(ROOT, "hosts/node/host.ts"), "utf8");
	t.regex(node, /tls\.connect\(/);
	t.notRegex(node, /rejectUnauthorized:\s*false|NODE_TLS_REJECT_UNAUTHORIZED/);
	t.regex(node, /rejectUnauthorized:\s*true/);
	// Plain TCP (Device Update's http:// file URLs, trusted by their signed hash) once, behind the flag.
	t.is(node.match(/net\.connect\(/g)?.length, 1, "one plain connect in the Node host");
	t.regex(node, /if \(options\.secure === false\) \{[^}]*net\.connect\(/);
	const moddable = fs.readFileSync(path.join(ROOT, "hosts/moddable/host.ts"), "utf8");
	t.regex(moddable, /SecureSocket/);
	t.notRegex(moddable, /verify:\s*false/);
	t.is(moddable.match(/new Socket\(/g)?.length, 1, "one plain socket in the Moddable host");
	t.regex(moddable, /o\.secure === false \? new PlainConnection\(/);
	// In the core only src/http.ts sets secure (from the URL's scheme); MQTT (DPS, hub) never does.
	for (const file of fs.readdirSync(path.join(ROOT, "src"), {recursive: true}) as string[]) {
		if (!file.endsWith(".ts")) continue;
		const text = fs.readFileSync(path.join(ROOT, "src", file), "utf8");
		t.notRegex(text, /\bplain\b.*fallback|fallback.*\b(1883|plain)\b/i, `src/${file}`);
		if (file !== "http.ts" && file !== "host.ts") t.notRegex(text, /\bsecure\s*[:=]/, `src/${file} sets no secure flag`);
	}
	t.regex(fs.readFileSync(path.join(ROOT, "src/http.ts"), "utf8"), /secure: url\.secure/);
});
