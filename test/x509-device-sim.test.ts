/*
 * The reference firmware with an X.509 identity on the Moddable simulator, against the emulator:
 * the SDK's TLS presenting the client certificate (hosts/moddable/host.ts), the device's checks in
 * XS, and the settings as a device gets them. The build carries one identity as data resources (the
 * development path: build values naming .der files); the other runs replace it with Preference
 * blobs (the production path: NVS on the ESP32), which win over the build.
 *
 * - an individual enrollment (the certificate), a group whose verified CA is the root (leaf +
 *   intermediate sent) and a group whose verified CA is the intermediate (the leaf alone): each
 *   provisions, then telemetry, the twin and a method over the hub with the same certificate;
 * - refusals: an expired certificate and a key that is not the certificate's are config errors in
 *   the device (no connection at all); a certificate from a CA DPS does not know is refused by DPS
 *   (401) once, and the device does not retry for minutes. The emulator's connect counts say so.
 *
 * The same cases through the Node host: x509-device-node.test.ts. Skipped, saying why, where the
 * SDK, xvfb-run or dbus-run-session is missing.
 */
import test, {type ExecutionContext} from "ava";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {startEmulator, type Emulator} from "../emulator/index.js";
import {REPO_ROOT, buildFirmware, runFirmware, simulatorAvailable, type Build, type FirmwareRun} from "../tools/sim-runner.js";
import {type DeviceCredential, deviceSettings, enrollFleet, fleet} from "./helpers/x509.js";

const sim = simulatorAvailable();
const BUILD_DIR = path.join(REPO_ROOT, "build/sim-test/x509-firmware");
/** The identity in the build (data resources): an individual enrollment's self-signed certificate. */
const BUILT_ID = "sim-x509-individual";

if (!sim.ok) {
	console.log(`x509-device-sim.test.ts: skipped. ${sim.reason}`);
	test.skip("the firmware with X.509 identities on the Moddable simulator", () => {});
}
else {
	const sdk = sim.sdk;
	let rootEmu: Emulator;
	let intermediateEmu: Emulator;
	let firmware: Build;
	let builtCredential: DeviceCredential;
	const runs: FirmwareRun[] = [];
	// One data directory: both emulators serve the same test CA, the one root the build pins.
	const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "x509-sim-emulator-"));
	const emulator = () => startEmulator({dataDir, retryAfterSeconds: 1});

	test.before(async () => {
		rootEmu = await emulator();
		enrollFleet(rootEmu, "root", "fleet-root");
		intermediateEmu = await emulator();
		enrollFleet(intermediateEmu, "intermediate", "fleet-intermediate");
		// The build points at the first emulator; each run sets the port (and id scope) in Preference.
		builtCredential = fleet.selfSigned(BUILT_ID);
		rootEmu.addEnrollment({attestation: {type: "x509", certificate: builtCredential.certPem}});
		firmware = await buildFirmware({
			sdk,
			buildDir: BUILD_DIR,
			settings: {
				dpsHost: rootEmu.host, dpsPort: rootEmu.port, idScope: rootEmu.idScope,
				registrationId: BUILT_ID, hubPort: rootEmu.port, intervalMs: 2000,
				...deviceSettings(builtCredential),
			},
			roots: [rootEmu.caDer],
		});
	});

	test.after.always(async () => {
		await Promise.all(runs.map(r => r.stop()));
		await Promise.all([rootEmu, intermediateEmu].map(e => e?.close()));
		fs.rmSync(dataDir, {recursive: true, force: true});
	});

	/** A fresh device; the identity from the build, or (given) from Preference blobs. */
	function start(emu: Emulator, identity?: {registrationId: string; credential: DeviceCredential; keyPem?: string}): FirmwareRun {
		const preferences: Record<string, string | number | Uint8Array> = {dpsPort: emu.port, hubPort: emu.port, idScope: emu.idScope};
		if (identity) {
			preferences.registrationId = identity.registrationId;
			const s = deviceSettings(identity.credential, {keyPem: identity.keyPem});
			preferences.x509Cert = s.x509Cert;
			preferences.x509Key = s.x509Key;
			if (s.x509Chain) preferences.x509Chain = s.x509Chain;
		}
		const run = runFirmware({soPath: firmware.soPath, sdk, fresh: true, preferences});
		runs.push(run);
		return run;
	}

	async function usesTheHub(t: ExecutionContext, emu: Emulator, run: FirmwareRun, id: string, certificates: number) {
		try {
			t.like(await run.waitFor("x509.identity", {timeoutMs: 60_000}), {commonName: id, certificates, keyBits: 2048});
			const assigned = await run.waitFor("dps.assigned", {timeoutMs: 90_000});
			t.like(assigned, {deviceId: id, assignedHub: emu.hubName, status: "assigned"});
			await run.waitFor("hub.connected", {timeoutMs: 60_000});
			const acked = await run.waitFor("telemetry.acked", {timeoutMs: 30_000});
			t.truthy(emu.telemetry(id).find(r => r.systemProperties["$.mid"] === acked.messageId));
			const {version} = emu.patchDesired(id, {telemetryIntervalMs: 1500});
			await run.waitFor(e => e.event === "twin.reported" && e.telemetryIntervalMs === 1500 && e.ac === 200, {timeoutMs: 30_000});
			t.like((emu.twin(id).reported as Record<string, any>).telemetryIntervalMs, {value: 1500, ac: 200, av: version});
			t.deepEqual(await emu.invokeMethod(id, "setTelemetryInterval", {intervalMs: 3000}, 20), {status: 200, payload: {intervalMs: 3000}});
			t.like(emu.stats().devices[id], {dpsConnects: 1, hubConnects: 1});
			t.falsy(run.lines.find(l => l.includes("XS abort")));
			t.falsy(run.lines.find(l => /PRIVATE KEY|BEGIN/.test(l)));
			return emu.devices().find(d => d.deviceId === id);
		}
		finally {
			await run.stop();
		}
	}

	test.serial("an individual enrollment, the identity in the build (data resources): provisions, then telemetry, the twin and a method over the hub", async t => {
		t.timeout(240_000);
		t.like(await usesTheHub(t, rootEmu, start(rootEmu), BUILT_ID, 1), {authentication: "selfSigned"});
		const resources = fs.readdirSync(path.join(firmware.buildDir, "tmp/lin/mc/release/app/resources"));
		t.true(resources.includes("x509Cert.der") && resources.includes("x509Key.der"), resources.join(", "));
	});

	test.serial("a group whose verified CA is the root, the identity in Preference blobs: leaf + intermediate, provisions and uses the hub", async t => {
		t.timeout(240_000);
		const id = "sim-x509-group-root";
		const run = start(rootEmu, {registrationId: id, credential: fleet.leaf(id)});
		t.like(await usesTheHub(t, rootEmu, run, id, 2), {authentication: "certificateAuthority", enrollmentGroupId: "fleet-root"});
	});

	test.serial("a group whose verified CA is the intermediate: the leaf alone provisions and uses the hub", async t => {
		t.timeout(240_000);
		const id = "sim-x509-group-int";
		const run = start(intermediateEmu, {registrationId: id, credential: fleet.leaf(id, {leafOnly: true})});
		t.like(await usesTheHub(t, intermediateEmu, run, id, 1), {authentication: "certificateAuthority", enrollmentGroupId: "fleet-intermediate"});
	});

	async function refusesItself(t: ExecutionContext, id: string, credential: DeviceCredential, message: RegExp, keyPem?: string) {
		const run = start(rootEmu, {registrationId: id, credential, keyPem});
		try {
			const error = await run.waitFor("error", {timeoutMs: 60_000});
			t.is(error.code, "config");
			t.regex(String(error.message), message);
			await new Promise(resolve => setTimeout(resolve, 3000));
			t.is(run.events.filter(e => e.event === "error").length, 1, "said once, no retry loop");
			t.falsy(run.events.find(e => e.event === "dps.registering" || e.event === "hub.connecting"));
			t.false(id in rootEmu.stats().devices, "the emulator saw no connection");
			t.false(run.exited, "the VM did not abort");
		}
		finally {
			await run.stop();
		}
	}

	test.serial("an expired certificate: a config error in the device, no connection", async t => {
		t.timeout(120_000);
		const id = "sim-x509-expired";
		const credential = fleet.selfSigned(id, {expired: true});
		rootEmu.addEnrollment({registrationId: id, attestation: {type: "x509", thumbprints: {primary: credential.sha1}}});
		await refusesItself(t, id, credential, /^x509Cert\[0\]: \(CN="sim-x509-expired"\) expired on /);
	});

	test.serial("a key that is not the certificate's: a config error in the device, no connection", async t => {
		t.timeout(120_000);
		const id = "sim-x509-wrongkey";
		await refusesItself(t, id, fleet.leaf(id), /^x509Key: does not match the certificate .*the RSA modulus differs/, fleet.other.keyPem);
	});

	test.serial("a certificate from a CA DPS does not know: refused once (401), a clear error, no reconnect loop", async t => {
		t.timeout(180_000);
		const id = "sim-x509-untrusted";
		const run = start(rootEmu, {registrationId: id, credential: fleet.leaf(id, {issuer: "other"})});
		try {
			const failed = await run.waitFor("dps.failed", {timeoutMs: 90_000});
			t.like(failed, {code: "dps.unauthorized", status: 401});
			t.regex(String(failed.message), /certificate does not match any enrollment/);
			await new Promise(resolve => setTimeout(resolve, 5000));
			t.like(rootEmu.stats().devices[id], {dpsConnects: 1, dpsRegisterRequests: 1, hubConnects: 0});
			t.is(run.events.filter(e => e.event === "dps.registering").length, 1, "the next try is minutes away");
			t.false(run.exited, "the VM did not abort");
		}
		finally {
			await run.stop();
		}
	});
}
