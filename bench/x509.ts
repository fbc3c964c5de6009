/*
 * The X.509 part of the benchmark: a fleet CA made for the run (tools/fleet-ca.ts, as `npm run
 * commission -- --x509` makes one: an RSA-2048 root and intermediate), its root uploaded to the
 * emulator's DPS and hub as verified, and an enrollment group on it. Each run's device gets a fresh
 * leaf (RSA-2048, CN = registration id) issued by the intermediate and presents leaf + intermediate:
 * what a fleet's device does. The identities are made before a run starts, outside its timing.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {createFleetCa, issueDevice, type DeviceIdentity, type FleetCa} from "../tools/fleet-ca.js";
import {REPO_ROOT, newRegistrationId, type EmulatorProcess} from "./lib.js";

export interface X509Fleet {
	/** A registration id and its identity, issued now. */
	issue(prefix: string): {registrationId: string; identity: DeviceIdentity};
}

export const X509_GROUP = "bench-x509";

export async function prepareX509Fleet(emu: EmulatorProcess): Promise<X509Fleet> {
	const dir = fs.mkdtempSync(path.join(REPO_ROOT, "build/bench/x509-ca-"));
	let ca: FleetCa;
	try {
		ca = createFleetCa(dir, {name: "Benchmark Fleet", intermediate: true, days: 30});
	}
	finally {
		// The CA lives for this run only: its keys never stay on disk.
		fs.rmSync(dir, {recursive: true, force: true});
	}
	const name = `bench-root-${process.pid}`;
	await emu.call("POST", "/certificates", {name, pem: ca.root.certPem, target: "both", verified: true});
	await emu.call("POST", "/enrollment-groups", {groupId: `${X509_GROUP}-${process.pid}`, attestation: {type: "x509", caName: name}});
	return {
		issue(prefix) {
			const registrationId = newRegistrationId(prefix);
			return {registrationId, identity: issueDevice(ca, registrationId, 30)};
		},
	};
}
