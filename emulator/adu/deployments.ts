/*
 * A deployment's view of each device, judged from the `deviceUpdate` reported patches as Device
 * Update judges them: success is agent state 0 (Idle) with an installedUpdateId naming the deployed
 * update (the service looks at nothing else, iot-hub-device-update #427); state 255 or an ac 406
 * acknowledgement fails it. Only patches that arrive after the deployment count, so what a device
 * reported for an earlier deployment cannot decide this one.
 */
import {isPlainObject} from "../wire.js";
import type {FileUrlScheme} from "./files.js";
import type {UpdateId} from "./update.js";

export type DeviceDeploymentState = "inProgress" | "succeeded" | "failed" | "canceled";

/** ADU's agent states on the wire (update_content.h: only these three are sent). */
export const AGENT_IDLE = 0;
export const AGENT_IN_PROGRESS = 6;
export const AGENT_FAILED = 255;
export const ACK_REJECTED = 406;
const MAX_PROBLEMS = 10;

/** What the device last reported in its `deviceUpdate` component. */
export interface DeviceReport {
	/** `service.ac` and `service.av`: the acknowledgement of the desired request. */
	ac?: unknown;
	av?: unknown;
	/** `agent.state`, `agent.workflow`, `agent.installedUpdateId` (a string holding JSON), `agent.lastInstallResult`. */
	state?: unknown;
	workflow?: unknown;
	installedUpdateId?: unknown;
	lastInstallResult?: unknown;
}

export interface DeviceDeploymentView {
	deviceId: string;
	state: DeviceDeploymentState;
	/** Why the state is failed or canceled. */
	reason?: string;
	/** The desired `$version` of the deployment's patch: the `av` an acknowledgement must carry (or a later one). */
	desiredVersion: number;
	reported: DeviceReport;
	/** Requests and bytes served on this device's file URLs. */
	download: {requests: number; bytes: number};
	/** Reports that do not follow the protocol (kept to the last few). */
	problems: string[];
	updatedDateTime: string;
}

export interface DeploymentView {
	deploymentId: string;
	updateId: UpdateId;
	/** The `workflow.id` sent to the devices. */
	workflowId: string;
	fileUrlScheme: FileUrlScheme;
	createdDateTime: string;
	canceled: boolean;
	/** canceled (or every device superseded); else inProgress while any device is; else succeeded if all others did; else failed. */
	state: DeviceDeploymentState;
	devices: DeviceDeploymentView[];
}

export interface DeviceEntry {
	deviceId: string;
	state: DeviceDeploymentState;
	reason?: string;
	desiredVersion: number;
	reported: DeviceReport;
	problems: string[];
	updatedDateTime: string;
}

function section(component: Record<string, unknown> | undefined, key: string): Record<string, unknown> | undefined {
	const value = component?.[key];
	return isPlainObject(value) ? value : undefined;
}

/** Reads the `deviceUpdate` component of a twin's reported section. */
export function readReport(reported: Record<string, unknown>): DeviceReport {
	const component = isPlainObject(reported.deviceUpdate) ? reported.deviceUpdate : undefined;
	const service = section(component, "service");
	const agent = section(component, "agent");
	const report: DeviceReport = {};
	if (service && "ac" in service) report.ac = service.ac;
	if (service && "av" in service) report.av = service.av;
	for (const key of ["state", "workflow", "installedUpdateId", "lastInstallResult"] as const) if (agent && key in agent) report[key] = structuredClone(agent[key]);
	return report;
}

/** Parses `installedUpdateId`; a reason string when it is not a string holding {provider,name,version}. */
export function parseInstalledUpdateId(value: unknown): UpdateId | string {
	if (typeof value !== "string") return `installedUpdateId must be a string holding JSON {"provider","name","version"} (got ${typeof value === "object" ? JSON.stringify(value) : typeof value})`;
	let parsed: unknown;
	try {
		parsed = JSON.parse(value);
	}
	catch {
		return `installedUpdateId ${JSON.stringify(value)} is not JSON`;
	}
	if (!isPlainObject(parsed) || typeof parsed.provider !== "string" || typeof parsed.name !== "string" || typeof parsed.version !== "string")
		return `installedUpdateId ${JSON.stringify(value)} does not hold string provider, name and version`;
	return {provider: parsed.provider, name: parsed.name, version: parsed.version};
}

/** Versions compare by their numbers, as ADU drops leading zeros ("1.01" is "1.1"). */
function sameVersion(a: string, b: string): boolean {
	const pa = a.split(".");
	const pb = b.split(".");
	return pa.length === pb.length && pa.every((p, i) => /^\d+$/.test(p) && /^\d+$/.test(pb[i]) && Number(p) === Number(pb[i]));
}

export function sameUpdateId(a: UpdateId, b: UpdateId): boolean {
	return a.provider === b.provider && a.name === b.name && sameVersion(a.version, b.version);
}

function workflowId(workflow: unknown): string | undefined {
	return isPlainObject(workflow) && typeof workflow.id === "string" ? workflow.id : undefined;
}

function noteProblem(entry: DeviceEntry, problem: string): void {
	entry.problems.push(problem);
	if (entry.problems.length > MAX_PROBLEMS) entry.problems.shift();
}

function settle(entry: DeviceEntry, state: DeviceDeploymentState, reason?: string): void {
	entry.state = state;
	if (reason === undefined) delete entry.reason;
	else entry.reason = reason;
}

/**
 * Updates a device's entry from one reported patch. `patch` is the patch's `deviceUpdate`
 * component; `reported` the whole reported section after the merge. Returns whether the state changed.
 */
export function judge(entry: DeviceEntry, deployment: {updateId: UpdateId; workflowId: string}, patch: Record<string, unknown>, reported: Record<string, unknown>): boolean {
	entry.reported = readReport(reported);
	entry.updatedDateTime = new Date().toISOString();
	if (entry.state !== "inProgress") return false;
	const before = entry.state;
	const report = entry.reported;

	if (isPlainObject(patch.service) && "ac" in patch.service) {
		if (typeof report.av !== "number") noteProblem(entry, `acknowledgement ac ${JSON.stringify(report.ac)} without a numeric av (the desired $version, ${entry.desiredVersion} or later)`);
		else if (report.av < entry.desiredVersion) noteProblem(entry, `acknowledgement av ${report.av} is older than this deployment's desired $version ${entry.desiredVersion}`);
		else if (report.ac === ACK_REJECTED) settle(entry, "failed", `the device rejected the update (service.ac ${ACK_REJECTED}, av ${report.av})`);
		else if (report.ac !== 200) noteProblem(entry, `acknowledgement ac ${JSON.stringify(report.ac)}: Device Update agents send 200 (accept) or ${ACK_REJECTED} (reject)`);
	}

	if (entry.state === "inProgress" && isPlainObject(patch.agent)) {
		const reportedWorkflow = workflowId(report.workflow);
		const ours = reportedWorkflow === undefined || reportedWorkflow === deployment.workflowId;
		if (report.state === AGENT_FAILED) {
			if (ours) settle(entry, "failed", `the device reported agent state ${AGENT_FAILED} (Failed)`);
			else noteProblem(entry, `agent state ${AGENT_FAILED} for workflow ${reportedWorkflow}, not this deployment's ${deployment.workflowId}`);
		}
		else if (report.state === AGENT_IDLE) {
			const installed = parseInstalledUpdateId(report.installedUpdateId);
			if (typeof installed === "string") noteProblem(entry, installed);
			else if (sameUpdateId(installed, deployment.updateId)) settle(entry, "succeeded");
		}
		else if (report.state === AGENT_IN_PROGRESS) {
			if (!ours) noteProblem(entry, `agent state ${AGENT_IN_PROGRESS} for workflow ${reportedWorkflow}, not this deployment's ${deployment.workflowId}`);
		}
		else noteProblem(entry, `agent state ${JSON.stringify(report.state)}: only ${AGENT_IDLE} (Idle), ${AGENT_IN_PROGRESS} (DeploymentInProgress) and ${AGENT_FAILED} (Failed) go on the wire`);
	}
	return entry.state !== before;
}

export function overallState(canceled: boolean, devices: {state: DeviceDeploymentState}[]): DeviceDeploymentState {
	const active = devices.filter(d => d.state !== "canceled");
	if (canceled || !active.length) return "canceled";
	if (active.some(d => d.state === "inProgress")) return "inProgress";
	return active.every(d => d.state === "succeeded") ? "succeeded" : "failed";
}
