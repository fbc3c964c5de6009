/*
 * Shared set-up for the fault matrix (test/faults-*.test.ts, test/telemetry-accounting.test.ts):
 * an emulator whose log is kept so a test can count what the service saw for one device, a HostAdapter
 * that counts the connections the core opens, and short-cuts to a provisioned HubClient.
 *
 * Faults are filtered by device id wherever the emulator allows it, so tests in one file run
 * concurrently against one emulator; the global faults ("down", clearFaults) get their own emulator.
 */
import {startEmulator, type Emulator, type EmulatorOptions} from "../../emulator/index.js";
import {createNodeHost} from "../../hosts/node/host.js";
import type {Connection, ConnectionHandlers, ConnectOptions, HostAdapter} from "../../src/host.js";
import {ProvisioningClient, type ProvisioningOptions} from "../../src/dps.js";
import {HubClient, type HubOptions} from "../../src/hub.js";
import type {AzureIoTError} from "../../src/errors.js";
import {uniqueId} from "./e2e.js";

export interface FaultRig {
	emulator: Emulator;
	roots: Uint8Array[];
	/** Every line the emulator logged, in order. */
	logs: string[];
	/** Lines logged for one device id (or registration id) matching `pattern`. */
	logCount(id: string, pattern: RegExp): number;
	close(): Promise<void>;
}

export async function startFaultRig(options: EmulatorOptions = {}): Promise<FaultRig> {
	const logs: string[] = [];
	const emulator = await startEmulator({retryAfterSeconds: 1, ...options, log: line => logs.push(line)});
	return {
		emulator,
		roots: [emulator.caDer],
		logs,
		logCount: (id, pattern) => logs.filter(l => (l.startsWith(`hub ${id}:`) || l.startsWith(`dps ${id}:`)) && pattern.test(l)).length,
		close: () => emulator.close(),
	};
}

// Unique within the run: tests sharing an emulator never touch each other's devices or faults.
export {uniqueId};

export const sleep = (ms: number) => new Promise<void>(resolve => setTimeout(resolve, ms));

export interface CountingHost extends HostAdapter {
	/** Connections the core asked the host to open, with when. */
	readonly connects: {at: number; host: string; port: number}[];
}

/** A Node host that records every connection attempt: how "never a tight loop" is counted. */
export function countingHost(base: HostAdapter = createNodeHost()): CountingHost {
	const connects: {at: number; host: string; port: number}[] = [];
	return {
		connects,
		connect(options: ConnectOptions, handlers: ConnectionHandlers): Connection {
			connects.push({at: Date.now(), host: options.host, port: options.port});
			return base.connect(options, handlers);
		},
		setTimer: (cb, ms) => base.setTimer(cb, ms),
		clearTimer: h => base.clearTimer(h),
		now: () => base.now(),
		random: () => base.random(),
		hmacSha256: (k, m) => base.hmacSha256(k, m),
		storage: base.storage,
		log: base.log,
	};
}

export function provisioningClient(rig: FaultRig, registrationId: string, symmetricKey: string, extra: Partial<ProvisioningOptions> = {}): ProvisioningClient {
	return new ProvisioningClient({
		adapter: createNodeHost(), roots: rig.roots, endpoint: rig.emulator.host, port: rig.emulator.port,
		idScope: rig.emulator.idScope, registrationId, symmetricKey, ...extra,
	});
}

export interface Provisioned {
	deviceId: string;
	hubHost: string;
	symmetricKey: string;
}

/** Enrolls and registers a device (no faults), so a test can start at the hub. */
export async function provisioned(rig: FaultRig, prefix: string): Promise<Provisioned> {
	const id = uniqueId(prefix);
	const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id});
	const result = await provisioningClient(rig, id, symmetricKey).register();
	return {deviceId: result.deviceId!, hubHost: result.assignedHub!, symmetricKey};
}

export interface HubHarness {
	hub: HubClient;
	host: CountingHost;
	disconnects: {error: AzureIoTError; retryInMs: number | undefined; at: number}[];
	errors: AzureIoTError[];
	connects: {reconnect: boolean; at: number}[];
}

/** A HubClient on a counting host with small backoff values, recording what it reports. */
export function hubClient(rig: FaultRig, device: Provisioned, extra: Partial<HubOptions> = {}): HubHarness {
	const host = countingHost();
	const disconnects: HubHarness["disconnects"] = [];
	const errors: AzureIoTError[] = [];
	const connects: HubHarness["connects"] = [];
	const hub = new HubClient({
		adapter: host, roots: rig.roots, hubHost: device.hubHost, deviceId: device.deviceId, symmetricKey: device.symmetricKey,
		port: rig.emulator.port,
		backoff: {initialMs: 200, maxMs: 1000},
		onConnect: info => connects.push({reconnect: info.reconnect, at: Date.now()}),
		onDisconnect: (error, retryInMs) => disconnects.push({error, retryInMs, at: Date.now()}),
		onError: error => errors.push(error),
		...extra,
	});
	return {hub, host, disconnects, errors, connects};
}

/** The telemetry the emulator holds for a device, grouped by $.mid. */
export function receivedByMessageId(emulator: Emulator, deviceId: string): Map<string, number> {
	const seen = new Map<string, number>();
	for (const record of emulator.telemetry(deviceId)) {
		const mid = record.systemProperties["$.mid"];
		seen.set(mid, (seen.get(mid) ?? 0) + 1);
	}
	return seen;
}
