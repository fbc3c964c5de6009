/*
 * The core on the Node host: bench/fixtures/scenario.ts run in this process with hosts/node, the
 * same work as the firmware rows.
 */
import {performance} from "node:perf_hooks";
import {createNodeHost} from "../hosts/node/host.js";
import {runScenario} from "./fixtures/scenario.js";
import {createResumingNodeHost} from "./resume-host.js";
import {Driver, type RunResult} from "./driver.js";
import {bounded, newRegistrationId, type EmulatorProcess} from "./lib.js";
import type {X509Fleet} from "./x509.js";

export interface CoreRunOptions {
	emu: EmulatorProcess;
	messages: number;
	window: number;
	reconnects: number;
	timeoutMs: number;
	/** Offer the previous TLS session when reconnecting (bench/resume-host.ts). */
	resume?: boolean;
	/** Connect with an X.509 identity from this fleet instead of a symmetric key. */
	x509?: X509Fleet;
}

export async function runCoreOnce(o: CoreRunOptions): Promise<RunResult & {resumed?: number}> {
	let registrationId: string;
	let credential: {symmetricKey: string} | {clientCertificates: Uint8Array[]; clientKey: Uint8Array};
	if (o.x509) {
		const issued = o.x509.issue("bench-core-x509");
		registrationId = issued.registrationId;
		const chain = issued.identity.chainDer.length ? [new Uint8Array(issued.identity.chainDer)] : [];
		credential = {clientCertificates: [new Uint8Array(issued.identity.certDer), ...chain], clientKey: new Uint8Array(issued.identity.keyDer)};
	}
	else {
		registrationId = newRegistrationId("bench-core");
		credential = {symmetricKey: await o.emu.addEnrollment(registrationId)};
	}
	const driver = new Driver(o.emu);
	const host = o.resume ? createResumingNodeHost() : createNodeHost();
	const scenario = runScenario({
		host,
		roots: [o.emu.caDer],
		dpsHost: o.emu.host, dpsPort: o.emu.port, idScope: o.emu.idScope, hubPort: o.emu.port,
		registrationId, ...credential,
		messages: o.messages, window: o.window, reconnects: o.reconnects,
		ticks: () => performance.now(),
		emit: driver.onEvent,
	});
	scenario.catch(e => driver.onEvent({event: "bench.error", message: (e as Error).message}));
	const result = await bounded("the core run", o.timeoutMs, driver.done);
	// The DPS and the first hub connection are full handshakes; the reconnects may resume.
	return "counts" in host ? {...result, resumed: (host as ReturnType<typeof createResumingNodeHost>).counts.resumed} : result;
}
