/*
 * The Node host presents ConnectOptions.clientCertificates/clientKey (DER) as node:tls's cert/key:
 * a server that asks for a client certificate sees the leaf (CN, fingerprint, DER) and, with the
 * intermediate, a chain that verifies against the device CA's root. A key that does not belong to
 * the certificate is reported through onClose, before any connection, without the key in the message.
 */
import test from "ava";
import * as crypto from "node:crypto";
import {createNodeHost} from "../hosts/node/host.js";
import type {ConnectOptions, HostError} from "../src/host.js";
import {startClientCertServer, type ClientCertServer} from "./helpers/client-cert-server.js";
import {testPki} from "./helpers/pki.js";
import {DEVICE_ID, clientPki} from "./helpers/x509-pki.js";

const pki = clientPki();
let server: ClientCertServer;

test.before(async () => {
	server = await startClientCertServer({clientRoot: pki.rootDer});
});

test.after.always(() => server?.close());

function fingerprint(der: Uint8Array): string {
	return new crypto.X509Certificate(der).fingerprint256;
}

/** Connects, sends the tag, waits for "ok"; resolves with how it ended. */
function connect(tag: string, identity: Partial<ConnectOptions>): Promise<{ok: true} | {ok: false; error: HostError}> {
	const host = createNodeHost();
	return new Promise(resolve => {
		let reply = "";
		const timer = setTimeout(() => {
			connection.close();
			resolve({ok: false, error: {kind: "timeout", message: "no reply in 10 s"}});
		}, 10_000);
		const connection = host.connect({host: "localhost", port: server.port, roots: [testPki().rootDer], ...identity}, {
			onConnect: () => connection.write(new TextEncoder().encode(tag + "\n")),
			onData: bytes => {
				reply += Buffer.from(bytes).toString();
				if (!reply.includes("ok\n")) return;
				clearTimeout(timer);
				connection.close();
				resolve({ok: true});
			},
			onClose: error => {
				clearTimeout(timer);
				resolve({ok: false, error});
			},
		});
	});
}

test.serial("the leaf alone: the server sees its CN and fingerprint, and cannot chain it to the root without the intermediate", async t => {
	t.deepEqual(await connect("node-leaf", {clientCertificates: [pki.leaf.cert], clientKey: pki.leaf.key}), {ok: true});
	const seen = await server.waitFor("node-leaf");
	t.is(seen.cn, DEVICE_ID);
	t.is(seen.fingerprint256, fingerprint(pki.leaf.cert));
	t.deepEqual(new Uint8Array(seen.raw!), pki.leaf.cert);
	t.deepEqual(seen.chain, [DEVICE_ID]);
	t.false(seen.authorized);
	t.is(seen.authorizationError, "UNABLE_TO_VERIFY_LEAF_SIGNATURE");
});

test.serial("leaf + intermediate: the server builds the chain to the device CA's root and authorizes it", async t => {
	t.deepEqual(await connect("node-chain", {clientCertificates: [pki.leaf.cert, pki.intermediateDer], clientKey: pki.leaf.key}), {ok: true});
	const seen = await server.waitFor("node-chain");
	t.is(seen.cn, DEVICE_ID);
	t.is(seen.fingerprint256, fingerprint(pki.leaf.cert));
	t.deepEqual(seen.chain, [DEVICE_ID, "Device Test Intermediate CA", "Device Test Root CA"]);
	t.true(seen.authorized, seen.authorizationError);
});

test.serial("no client certificate: the server sees none", async t => {
	t.deepEqual(await connect("node-none", {}), {ok: true});
	const seen = await server.waitFor("node-none");
	t.true(seen.noCertificate);
	t.false(seen.authorized);
});

test.serial("a key that is not the certificate's: onClose with the reason, no connection, no key in the message", async t => {
	const before = server.seen.length + server.failures.length;
	const result = await connect("node-mismatch", {clientCertificates: [pki.leaf.cert], clientKey: pki.otherKey});
	t.false(result.ok);
	if (result.ok) return;
	t.is(result.error.kind, "tls");
	t.regex(result.error.message, /^cannot use the client certificate for localhost: .*key values mismatch/);
	t.notRegex(result.error.message, /[A-Za-z0-9+/]{48,}/);
	await new Promise(resolve => setTimeout(resolve, 200));
	t.is(server.seen.length + server.failures.length, before, "the server saw no connection attempt");
});

test.serial("a key that is not PKCS#8 DER, or certificates without a key: onClose, never a throw from connect", async t => {
	for (const identity of [
		{clientCertificates: [pki.leaf.cert], clientKey: new Uint8Array(Buffer.from(pki.leaf.keyPem))},
		{clientCertificates: [pki.leaf.cert]},
	]) {
		const result = await connect("node-bad", identity);
		t.false(result.ok);
		if (!result.ok) {
			t.is(result.error.kind, "tls");
			t.regex(result.error.message, /^cannot use the client certificate for localhost: /);
			t.notRegex(result.error.message, /[A-Za-z0-9+/]{48,}/);
		}
	}
});
