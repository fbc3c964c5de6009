/*
 * The device side of a Device Update deployment (device-update.md §7) as a pure reducer: an input
 * and the current state give the next state and what the host must do (send a reported patch or
 * an acknowledgement, verify, decide, download, hash, install, restart, persist a record). The
 * host does the I/O and feeds the results back, tagged with the ticket of the job they belong to,
 * so a late answer about a superseded job is ignored.
 *
 * It never loops (§10): a workflow that failed, was refused or rolled back is recorded, and the same
 * workflow id with the same retryTimestamp is answered with 406 and nothing else until the service
 * sends a retry (a new retryTimestamp) or a new workflow id. The host persists the record
 * ("remember") and the pending update ("install") so that this holds across restarts too.
 */
import {agentStatePayload, checkDeviceProperties, serviceAckPayload, type DeviceProperties, type InstallResult, type UpdateId, type Workflow} from "./agent.js";
import {AgentState, Reason, ResultCode, WorkflowAction, type AgentStateValue, type ReasonName} from "./codes.js";
import {base64Decode} from "../encoding.js";
import {configError} from "../errors.js";
import type {JwsErrorCode, JwsResult} from "./jws.js";
import {parseServiceRequest, parseUpdateManifest, type Decision, type FileUrl, type InstallPlan, type ServiceRequest, type UpdateManifest} from "./manifest.js";

/** Tries of one download (the first and two resumes from where it stopped) before it fails. */
export const MAX_DOWNLOAD_ATTEMPTS = 3;

export interface AduConfig {
	readonly device: DeviceProperties;
	readonly compatPropertyNames?: string;
}

/** How the last deployment ended; persisted by the host and handed back at boot. */
export interface WorkflowRecord {
	readonly workflowId: string;
	readonly retryTimestamp?: string;
	readonly outcome: "succeeded" | "failed" | "refused";
}

/** The update the device restarts into; persisted by the host with the boot partition. */
export interface PendingUpdate {
	readonly workflow: Workflow;
	readonly updateId: UpdateId;
	readonly stepCount: number;
}

export type Phase = "off" | "idle" | "verifying" | "deciding" | "downloading" | "hashing" | "installing" | "restarting";

interface Job {
	readonly ticket: number;
	/** The desired $version to acknowledge: the latest delivery of this workflow. */
	readonly version: number;
	readonly request: ServiceRequest;
	readonly manifest?: UpdateManifest;
	readonly plan?: InstallPlan;
	readonly received: number;
	readonly attempts: number;
}

export interface AduState {
	readonly config: AduConfig;
	readonly phase: Phase;
	readonly installed?: UpdateId;
	readonly ticket: number;
	readonly job?: Job;
	readonly last?: WorkflowRecord;
}

/** The host's own answer to "decide": checkDeployment's decision, or "not now" (406, asked again on the next twin GET). */
export type HostDecision = Decision | {readonly accept: false; readonly retryLater: true; readonly message: string};

export type AduInput =
	| {readonly type: "boot"; readonly installed: UpdateId; readonly last?: WorkflowRecord; readonly pending?: {readonly update: PendingUpdate; readonly outcome: "booted" | "rolledBack"}}
	| {readonly type: "desired"; readonly version: number; readonly service: unknown}
	| {readonly type: "verified"; readonly ticket: number; readonly result: JwsResult}
	| {readonly type: "decided"; readonly ticket: number; readonly decision: HostDecision}
	| {readonly type: "downloadProgress"; readonly ticket: number; readonly received: number}
	| {readonly type: "downloaded"; readonly ticket: number; readonly size: number}
	| {readonly type: "downloadFailed"; readonly ticket: number; readonly message: string; readonly retriable?: boolean}
	| {readonly type: "hashed"; readonly ticket: number; readonly sha256: Uint8Array}
	| {readonly type: "installed"; readonly ticket: number}
	| {readonly type: "installFailed"; readonly ticket: number; readonly message: string};

export type AduOutput =
	/** A reported-properties patch, to send in order. */
	| {readonly type: "report"; readonly payload: string}
	/** The writable-property acknowledgement of `service`, also a reported patch. */
	| {readonly type: "ack"; readonly payload: string}
	/** Run verifyManifestSignature and answer "verified". */
	| {readonly type: "verify"; readonly ticket: number; readonly manifest: string; readonly signature: string}
	/** Run checkDeployment (and any policy of the application) and answer "decided". */
	| {readonly type: "decide"; readonly ticket: number; readonly manifest: UpdateManifest; readonly fileUrls: readonly FileUrl[]}
	/** Download from `offset` (0, or where an interrupted try stopped) into the next partition. */
	| {readonly type: "download"; readonly ticket: number; readonly url: string; readonly offset: number; readonly sizeInBytes: number; readonly fileId: string}
	| {readonly type: "abortDownload"; readonly ticket: number}
	/** SHA-256 of the image as written (read back), answered with "hashed". */
	| {readonly type: "hash"; readonly ticket: number; readonly sizeInBytes: number}
	/** Make the image bootable and persist `pending`; answer "installed" or "installFailed". */
	| {readonly type: "install"; readonly ticket: number; readonly pending: PendingUpdate}
	/** Restart once the reports before it have been acknowledged by the hub. */
	| {readonly type: "restart"}
	/** Persist the record and hand it back in the next "boot"; reason and message say why a workflow did not succeed. */
	| {readonly type: "remember"; readonly record: WorkflowRecord; readonly reason?: ReasonName; readonly message?: string}
	/** The pending update has been dealt with: delete it from storage. */
	| {readonly type: "forgetPending"}
	| {readonly type: "log"; readonly message: string};

export interface Step {
	readonly state: AduState;
	readonly outputs: readonly AduOutput[];
}

export function createAduState(config: AduConfig): AduState {
	checkDeviceProperties(config.device, config.compatPropertyNames);
	return Object.freeze({config, phase: "off", ticket: 0});
}

const JWS_REASON: {readonly [K in JwsErrorCode]: ReasonName} = Object.freeze({
	format: "jwsFormat",
	algorithm: "jwsAlgorithm",
	unknownRootKey: "jwsUnknownRootKey",
	rootSignature: "jwsRootSignature",
	signingKey: "jwsSigningKey",
	manifestSignature: "jwsManifestSignature",
	manifestHash: "jwsManifestHash",
});

export function reduceAdu(state: AduState, input: AduInput): Step {
	const out: AduOutput[] = [];
	const next = reduce(state, input, out);
	if (next.job) Object.freeze(next.job);
	return Object.freeze({state: Object.freeze(next), outputs: Object.freeze(out)});
}

function reduce(s: AduState, input: AduInput, out: AduOutput[]): AduState {
	if (input.type === "boot") return boot(s, input, out);
	if (s.phase === "off" || !s.installed) return log(s, out, `ignored ${input.type}: no "boot" yet`);
	if (input.type === "desired") return desired(s, input.version, input.service, out);
	const job = s.job;
	if (!job || input.ticket !== job.ticket) return log(s, out, `ignored ${input.type} for ticket ${input.ticket}: that job is over`);
	switch (input.type) {
	case "verified":
		if (s.phase !== "verifying") return unexpected(s, input.type, out);
		return verified(s, job, input.result, out);
	case "decided":
		if (s.phase !== "deciding") return unexpected(s, input.type, out);
		return decided(s, job, input.decision, out);
	case "downloadProgress":
		if (s.phase !== "downloading") return unexpected(s, input.type, out);
		if (!(input.received >= job.received && input.received <= (job.plan?.sizeInBytes ?? 0))) return log(s, out, `ignored downloadProgress ${input.received}: outside ${job.received}..${job.plan?.sizeInBytes}`);
		return {...s, job: {...job, received: input.received}};
	case "downloaded":
		if (s.phase !== "downloading") return unexpected(s, input.type, out);
		if (input.size !== job.plan!.sizeInBytes)
			return failed(s, job, "fileSizeMismatch", `downloaded ${input.size} bytes of ${job.plan!.fileName}; the manifest says ${job.plan!.sizeInBytes}`, out);
		out.push({type: "hash", ticket: job.ticket, sizeInBytes: job.plan!.sizeInBytes});
		return {...s, phase: "hashing", job: {...job, received: input.size}};
	case "downloadFailed":
		if (s.phase !== "downloading") return unexpected(s, input.type, out);
		if (input.retriable && job.attempts < MAX_DOWNLOAD_ATTEMPTS) {
			out.push({type: "log", message: `download of ${job.plan!.fileName} stopped at ${job.received} bytes (${input.message}); resuming`});
			out.push(downloadAction(job));
			return {...s, job: {...job, attempts: job.attempts + 1}};
		}
		return failed(s, job, "downloadFailed", `download of ${job.plan!.fileName} failed after ${job.received} bytes: ${input.message}`, out);
	case "hashed": {
		if (s.phase !== "hashing") return unexpected(s, input.type, out);
		const expected = base64Decode(job.plan!.sha256)!;
		let diff = input.sha256 instanceof Uint8Array && input.sha256.length === 32 ? 0 : 1;
		for (let i = 0; i < 32 && !diff; i++) diff |= input.sha256[i] ^ expected[i];
		if (diff) return failed(s, job, "fileHashMismatch", `the SHA-256 of ${job.plan!.fileName} as written differs from the manifest's: the download was corrupted or the file was changed`, out);
		out.push({type: "install", ticket: job.ticket, pending: Object.freeze({workflow: job.request.workflow, updateId: job.plan!.updateId, stepCount: job.plan!.stepCount})});
		return {...s, phase: "installing"};
	}
	case "installed":
		if (s.phase !== "installing") return unexpected(s, input.type, out);
		out.push(report(s, AgentState.deploymentInProgress, job.request.workflow, result(ResultCode.appliedRebootRequired, 0, "installed; restarting into the new image", job.plan!.stepCount)));
		out.push({type: "restart"});
		return {...s, phase: "restarting"};
	case "installFailed":
		if (s.phase !== "installing") return unexpected(s, input.type, out);
		return failed(s, job, "installFailed", `the image could not be made bootable: ${input.message}`, out);
	}
	return s;
}

function boot(s: AduState, input: Extract<AduInput, {type: "boot"}>, out: AduOutput[]): AduState {
	if (!validUpdateId(input.installed))
		throw configError("deviceUpdate.installed", "is not {provider, name, version} of non-empty strings", "Give the update id of the running image, as its import manifest names it");
	if (s.job) stop(s, s.job, "boot: the job under way is dropped", out);
	let last = validRecord(input.last) ? input.last : undefined;
	if (input.last !== undefined && !last) out.push({type: "log", message: "ignored the remembered workflow record: it is malformed"});
	const next: AduState = {config: s.config, phase: "idle", installed: input.installed, ticket: s.ticket, ...(last ? {last} : {})};
	const pending = input.pending;
	if (!pending || !validPending(pending.update)) {
		if (pending) {
			out.push({type: "log", message: "ignored the pending update: it is malformed"});
			out.push({type: "forgetPending"});
		}
		out.push(report(next, AgentState.idle));
		return next;
	}
	const {workflow, stepCount} = pending.update;
	out.push({type: "forgetPending"});
	if (pending.outcome === "booted") {
		last = recordOf(workflow, "succeeded");
		out.push(report(next, AgentState.idle, workflow));
	}
	else {
		last = recordOf(workflow, "failed");
		const message = `the new image ${pending.update.updateId.version} did not start; the device went back to ${input.installed.version}`;
		out.push({type: "log", message});
		out.push(report(next, AgentState.failed, workflow, result(ResultCode.failure, Reason.rolledBack, message, stepCount)));
		out.push(report(next, AgentState.idle, workflow));
		out.push({type: "remember", record: last, reason: "rolledBack", message});
		return {...next, last};
	}
	out.push({type: "remember", record: last});
	return {...next, last};
}

function desired(s: AduState, version: number, service: unknown, out: AduOutput[]): AduState {
	if (!Number.isInteger(version) || version < 0 || version > 0x7fffffff) return log(s, out, `ignored deviceUpdate.service: $version ${version} is not a twin version`);
	const parsed = parseServiceRequest(service);
	if (!parsed.ok) {
		out.push({type: "ack", payload: serviceAckPayload(version, false)});
		return log(s, out, `rejected deviceUpdate.service: ${parsed.message}`);
	}
	const request = parsed.value;
	const workflow = request.workflow;
	if (workflow.action === WorkflowAction.cancel) return cancel(s, workflow, out);
	if (workflow.action !== WorkflowAction.applyDeployment) return log(s, out, `ignored deviceUpdate.service: unknown workflow action ${workflow.action}`);

	const job = s.job;
	if (job && sameWorkflow(job.request.workflow, workflow)) {
		// Delivered again (a twin GET after reconnecting, or a patch of other desired keys).
		if (s.phase !== "verifying" && s.phase !== "deciding") out.push({type: "ack", payload: serviceAckPayload(version, true)});
		return {...s, job: {...job, version}};
	}
	if (s.phase === "installing" || s.phase === "restarting")
		return log(s, out, `deferred workflow ${workflow.id}: the device is restarting into workflow ${job!.request.workflow.id}; it will read the twin again after the restart`);
	// The service wants another workflow now: whatever was under way is superseded.
	const base = job ? stop(s, job, `workflow ${workflow.id} replaces workflow ${job.request.workflow.id}`, out) : s;
	const last = base.last;
	if (last && last.workflowId === workflow.id && (last.retryTimestamp ?? "") === (workflow.retryTimestamp ?? "")) {
		out.push({type: "ack", payload: serviceAckPayload(version, last.outcome === "succeeded")});
		return log(base, out, last.outcome === "succeeded"
			? `workflow ${workflow.id} is already done`
			: `workflow ${workflow.id} already ${last.outcome}; waiting for a retry from the service or a new deployment`);
	}
	const ticket = base.ticket + 1;
	out.push({type: "verify", ticket, manifest: request.updateManifest!, signature: request.updateManifestSignature!});
	return {...idle(base), phase: "verifying", ticket, job: {ticket, version, request, received: 0, attempts: 0}};
}

/** Drops the job under way, stopping its download; the state is idle afterwards. */
function stop(s: AduState, job: Job, message: string, out: AduOutput[]): AduState {
	if (s.phase === "downloading" || s.phase === "hashing") out.push({type: "abortDownload", ticket: job.ticket});
	out.push({type: "log", message});
	return idle(s);
}

function cancel(s: AduState, workflow: Workflow, out: AduOutput[]): AduState {
	const job = s.job;
	if (job && (s.phase === "installing" || s.phase === "restarting"))
		return log(s, out, `cancel arrived after the image of workflow ${job.request.workflow.id} was made bootable; the update completes`);
	const next = job ? stop(s, job, `workflow ${job.request.workflow.id} cancelled by the service`, out) : idle(s);
	out.push(report(next, AgentState.idle, workflow));
	return next;
}

function verified(s: AduState, job: Job, res: JwsResult, out: AduOutput[]): AduState {
	if (!res.ok) return refused(s, job, JWS_REASON[res.code] ?? "jwsFormat", `the update's signature was refused: ${res.message}`, out);
	const m = parseUpdateManifest(job.request.updateManifest!);
	if (!m.ok) return refused(s, job, "badManifest", m.message, out);
	out.push({type: "decide", ticket: job.ticket, manifest: m.value, fileUrls: job.request.fileUrls});
	// The manifest and signature text (3 KB and more) are not needed again: the job lets go of them.
	return {...s, phase: "deciding", job: {...job, request: {workflow: job.request.workflow, fileUrls: job.request.fileUrls}, manifest: m.value}};
}

function decided(s: AduState, job: Job, d: HostDecision, out: AduOutput[]): AduState {
	if (!d.accept) {
		if ("retryLater" in d) {
			out.push({type: "ack", payload: serviceAckPayload(job.version, false)});
			out.push({type: "log", message: `workflow ${job.request.workflow.id} declined for now: ${d.message}`});
			return idle(s);
		}
		if (d.reason === "alreadyInstalled") {
			// Not a failure: the device runs what the update installs (ESP32 sample: reject with 406).
			const workflow = job.request.workflow;
			out.push({type: "ack", payload: serviceAckPayload(job.version, false)});
			out.push({type: "log", message: `workflow ${workflow.id}: ${d.message}`});
			const next = remember(idle(s), recordOf(workflow, "refused"), out, d.reason, d.message);
			out.push(report(next, AgentState.idle, workflow, result(d.resultCode, d.extendedResultCode, d.message, job.manifest?.steps.length ?? 0)));
			return next;
		}
		return refused(s, job, d.reason, d.message, out, d.resultCode);
	}
	const plan = d.plan;
	// From here on the plan says all (its step count included): the parsed manifest and the file URLs are let go during the download.
	const started: Job = {ticket: job.ticket, version: job.version, request: {workflow: job.request.workflow, fileUrls: []}, plan, received: job.received, attempts: 1};
	out.push({type: "ack", payload: serviceAckPayload(job.version, true)});
	out.push(report(s, AgentState.deploymentInProgress, job.request.workflow));
	out.push(downloadAction(started));
	return {...s, phase: "downloading", job: started};
}

/** A request turned down before it was accepted: 406, then the failure reports. */
function refused(s: AduState, job: Job, reason: ReasonName, message: string, out: AduOutput[], resultCode: number = ResultCode.failure): AduState {
	out.push({type: "ack", payload: serviceAckPayload(job.version, false)});
	return failure(s, job, reason, message, "refused", resultCode, out);
}

/** An accepted update that did not complete. */
function failed(s: AduState, job: Job, reason: ReasonName, message: string, out: AduOutput[]): AduState {
	if (s.phase === "downloading" || s.phase === "hashing") out.push({type: "abortDownload", ticket: job.ticket});
	return failure(s, job, reason, message, "failed", ResultCode.failure, out);
}

// The middleware's rule for any failure: state 255 with lastInstallResult, then state 0 with the
// installed update id as it was before.
function failure(s: AduState, job: Job, reason: ReasonName, message: string, outcome: "failed" | "refused", resultCode: number, out: AduOutput[]): AduState {
	const workflow = job.request.workflow;
	out.push({type: "log", message: `workflow ${workflow.id} ${outcome} (${reason}): ${message}`});
	const next = remember(idle(s), recordOf(workflow, outcome), out, reason, message);
	const extended: number = Reason[reason] ?? Reason.refusedByApplication;
	out.push(report(next, AgentState.failed, workflow, result(resultCode, extended, message, job.plan?.stepCount ?? job.manifest?.steps.length ?? 0)));
	out.push(report(next, AgentState.idle, workflow));
	return next;
}

function remember(s: AduState, record: WorkflowRecord, out: AduOutput[], reason?: ReasonName, message?: string): AduState {
	out.push(reason === undefined ? {type: "remember", record} : {type: "remember", record, reason, message: message ?? ""});
	return {...s, last: record};
}

function idle(s: AduState): AduState {
	return {config: s.config, phase: "idle", installed: s.installed, ticket: s.ticket, ...(s.last ? {last: s.last} : {})};
}

function downloadAction(job: Job): AduOutput {
	const plan = job.plan!;
	return {type: "download", ticket: job.ticket, url: plan.url, offset: job.received, sizeInBytes: plan.sizeInBytes, fileId: plan.fileId};
}

function report(s: AduState, state: AgentStateValue, workflow?: Workflow, lastInstallResult?: InstallResult): AduOutput {
	const payload = agentStatePayload({
		device: s.config.device,
		state,
		installedUpdateId: s.installed!,
		...(s.config.compatPropertyNames !== undefined ? {compatPropertyNames: s.config.compatPropertyNames} : {}),
		...(workflow ? {workflow} : {}),
		...(lastInstallResult ? {lastInstallResult} : {}),
	});
	return {type: "report", payload};
}

function result(resultCode: number, extendedResultCode: number, resultDetails: string, steps: number): InstallResult {
	const step = {resultCode, extendedResultCode, resultDetails};
	const stepResults = [];
	for (let i = 0; i < steps; i++) stepResults.push(step);
	return {...step, stepResults};
}

function recordOf(workflow: Workflow, outcome: WorkflowRecord["outcome"]): WorkflowRecord {
	return Object.freeze(workflow.retryTimestamp ? {workflowId: workflow.id, retryTimestamp: workflow.retryTimestamp, outcome} : {workflowId: workflow.id, outcome});
}

function sameWorkflow(a: Workflow, b: Workflow): boolean {
	return a.id === b.id && (a.retryTimestamp ?? "") === (b.retryTimestamp ?? "");
}

function unexpected(s: AduState, type: string, out: AduOutput[]): AduState {
	return log(s, out, `ignored ${type}: the job is ${s.phase}`);
}

function log(s: AduState, out: AduOutput[], message: string): AduState {
	out.push({type: "log", message});
	return s;
}

// Records come back from the host's storage: check them before trusting them.
function validRecord(r: unknown): r is WorkflowRecord {
	const x = r as WorkflowRecord;
	return typeof r === "object" && r !== null && typeof x.workflowId === "string" && x.workflowId !== ""
		&& (x.retryTimestamp === undefined || typeof x.retryTimestamp === "string")
		&& (x.outcome === "succeeded" || x.outcome === "failed" || x.outcome === "refused");
}

function validUpdateId(id: unknown): id is UpdateId {
	const x = id as UpdateId;
	return typeof id === "object" && id !== null && [x.provider, x.name, x.version].every(v => typeof v === "string" && v !== "");
}

function validPending(p: unknown): p is PendingUpdate {
	const x = p as PendingUpdate;
	return typeof p === "object" && p !== null
		&& typeof x.workflow === "object" && x.workflow !== null && typeof x.workflow.id === "string" && x.workflow.id !== "" && Number.isInteger(x.workflow.action)
		&& validUpdateId(x.updateId)
		&& Number.isInteger(x.stepCount) && x.stepCount >= 0 && x.stepCount <= 2;
}

Object.freeze(createAduState);
Object.freeze(reduceAdu);
