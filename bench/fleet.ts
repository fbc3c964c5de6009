/*
 * A fleet provisioning at once against a DPS that throttles: the emulator's dps.throttle fault
 * answers register requests beyond `rate` per second with 429 and retry-after. N devices run the
 * core on ONE Node host in this process (one event loop, one timer heap: how a gateway or a test
 * rig would run many), plus K simulator instances of the firmware, all told to start at the same
 * wall-clock instant. Reported: the time until all are assigned, the p50/p99 of each device's
 * time to assignment, and the DPS requests the emulator counted (a retry storm shows as many
 * requests per device).
 */
import {performance} from "node:perf_hooks";
import {createNodeHost} from "../hosts/node/host.js";
import {ProvisioningClient} from "../src/dps.js";
import type {Sdk} from "../tools/sim-runner.js";
import type {FirmwareRun} from "../tools/sim-runner.js";
import {bounded, quantile, sleep, type EmulatorProcess} from "./lib.js";
import {startXsDevice} from "./xs.js";

export interface FleetOptions {
	emu: EmulatorProcess;
	devices: number;
	/** Register requests per second the emulator lets through. */
	rate: number;
	/** retry-after on its 429 replies, seconds. */
	retryAfter: number;
	timeoutMs: number;
	sims?: {sdk: Sdk; soPath: string; count: number};
	log: (line: string) => void;
}

export interface FleetGroup {
	devices: number;
	assigned: number;
	failed: number;
	/** Start to the last assignment. */
	allAssignedMs?: number;
	p50Ms?: number;
	p99Ms?: number;
	errors: string[];
}

export interface FleetResult {
	node: FleetGroup;
	sims?: FleetGroup;
	rate: number;
	retryAfter: number;
	dpsRegisterRequests: number;
	dpsPollRequests: number;
	dpsConnects: number;
	/** The fewest requests the fleet could have made: one register and one poll per device here. */
	minimumRequests: number;
	/** CPU seconds this process spent (the Node devices' TLS handshakes and the core). */
	nodeCpuSeconds: number;
	wallSeconds: number;
}

function group(devices: number, times: number[], failures: string[]): FleetGroup {
	return {
		devices,
		assigned: times.length,
		failed: failures.length,
		allAssignedMs: times.length === devices ? Math.round(Math.max(...times)) : undefined,
		p50Ms: times.length ? Math.round(quantile(times, 0.5)) : undefined,
		p99Ms: times.length ? Math.round(quantile(times, 0.99)) : undefined,
		errors: [...new Set(failures)].slice(0, 5),
	};
}

export async function runFleet(o: FleetOptions): Promise<FleetResult> {
	const {emu} = o;
	const prefix = `fleet-${process.pid}-${Date.now().toString(36)}`;
	o.log(`fleet: enrolling ${o.devices} Node devices${o.sims ? ` and ${o.sims.count} simulators` : ""}`);
	const nodeIds = Array.from({length: o.devices}, (_, i) => `${prefix}-n${i}`);
	const simIds = Array.from({length: o.sims?.count ?? 0}, (_, i) => `${prefix}-s${i}`);
	const keys = new Map<string, string>();
	for (let i = 0; i < nodeIds.length + simIds.length; i += 50) {
		const batch = [...nodeIds, ...simIds].slice(i, i + 50);
		const got = await Promise.all(batch.map(id => emu.addEnrollment(id)));
		batch.forEach((id, j) => keys.set(id, got[j]));
	}
	await emu.addFault({kind: "dps.throttle", perSecond: o.rate, retryAfter: o.retryAfter});
	const before = await emu.stats();
	const runs: FirmwareRun[] = [];
	try {
		// The simulators need a second or two to boot: they are started first and wait for startAt.
		const startAt = Date.now() + (o.sims?.count ? 4000 + 200 * o.sims.count : 200);
		for (const id of simIds) {
			runs.push(startXsDevice({sdk: o.sims!.sdk, soPath: o.sims!.soPath, registrationId: id, symmetricKey: keys.get(id)!, startAt}));
			// xvfb-run -a picks a free display number: simultaneous starts can pick the same one.
			await sleep(120);
		}
		const simTimes: number[] = [];
		const simFailures: string[] = [];
		const simDone = Promise.all(runs.map(run => run.waitFor("bench.assigned", {timeoutMs: o.timeoutMs + 10_000})
			.then(e => { simTimes.push(Number(e.wall) - startAt); }, (e: Error) => {
				// The simulator's last words (the benchmark firmware prints only its JSON events and XS's own lines).
				const last = run.lines.filter(l => l.trim() && !l.includes("dbus-daemon")).slice(-2).join(" | ");
				simFailures.push(`${e.message.split("\n")[0]}${last ? ` (last output: ${last.slice(0, 300)})` : " (no output)"}`);
			})));

		await sleep(Math.max(0, startAt - Date.now()));
		o.log(`fleet: ${o.devices} Node devices start`);
		const host = createNodeHost();
		const roots = [emu.caDer];
		const cpu0 = process.cpuUsage();
		const t0 = performance.now();
		const nodeTimes: number[] = [];
		const nodeFailures: string[] = [];
		const clients: ProvisioningClient[] = [];
		const nodeDone = Promise.all(nodeIds.map(id => {
			const client = new ProvisioningClient({
				adapter: host, roots, endpoint: emu.host, port: emu.port, idScope: emu.idScope,
				registrationId: id, symmetricKey: keys.get(id)!, timeoutMs: o.timeoutMs,
			});
			clients.push(client);
			return client.register().then(() => { nodeTimes.push(performance.now() - t0); }, (e: Error) => { nodeFailures.push(e.message); });
		}));
		const progress = setInterval(() => o.log(`fleet: ${nodeTimes.length}/${o.devices} Node devices assigned${simIds.length ? `, ${simTimes.length}/${simIds.length} simulators` : ""}`), 5000);
		try {
			await bounded("the fleet", o.timeoutMs + 15_000, Promise.all([nodeDone, simDone]));
		}
		finally {
			clearInterval(progress);
			for (const c of clients) c.close();
		}
		const wallSeconds = (performance.now() - t0) / 1000;
		const cpu = process.cpuUsage(cpu0);
		// Let the last DISCONNECTs land before the counts are read.
		await sleep(500);
		const after = await emu.stats();
		return {
			node: group(o.devices, nodeTimes, nodeFailures),
			sims: o.sims ? group(simIds.length, simTimes, simFailures) : undefined,
			rate: o.rate,
			retryAfter: o.retryAfter,
			dpsRegisterRequests: after.dpsRegisterRequests - before.dpsRegisterRequests,
			dpsPollRequests: after.dpsPollRequests - before.dpsPollRequests,
			dpsConnects: after.dpsConnects - before.dpsConnects,
			minimumRequests: 2 * (o.devices + simIds.length),
			nodeCpuSeconds: Math.round((cpu.user + cpu.system) / 1e5) / 10,
			wallSeconds: Math.round(wallSeconds * 10) / 10,
		};
	}
	finally {
		await emu.clearFaults();
		await Promise.all(runs.map(r => r.stop()));
	}
}
