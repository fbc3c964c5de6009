import test from "ava";
import {agentStatePayload, type UpdateId} from "../src/adu/agent.js";
import {Reason} from "../src/adu/codes.js";
import {verifyManifestSignature} from "../src/adu/jws.js";
import {checkDeployment, parseUpdateManifest, type DeploymentTarget} from "../src/adu/manifest.js";
import {ADU_ROOT_KEYS} from "../src/adu/root-keys.js";
import {MAX_DOWNLOAD_ATTEMPTS, createAduState, reduceAdu, type AduInput, type AduOutput, type AduState, type HostDecision, type PendingUpdate, type WorkflowRecord} from "../src/adu/state.js";
import {loadKat, nodeSha256} from "./helpers/adu.js";

// Microsoft's signed ESP32 manifest (the JWS known answer), deployed to a device that runs 1.0.
const kat = loadKat();
const FILE_ID = "fc3558477982e3235";
const URL = "http://contoso.b.nlu.dl.adu.microsoft.com/westus2/x/azure_iot_freertos_esp32.bin";
const SIZE = 866128;
const DIGEST = Buffer.from("exKJAqfEo69Ok6C6SWy9+Hhp051JbRsXsnMjGSbbJ6o=", "base64");
const WORKFLOW = "51552a54-765e-419f-892a-c822549b6f38";
const OLD: UpdateId = {provider: "ESPRESSIF", name: "ESP32-Azure-IoT-Kit", version: "1.0"};
const NEW: UpdateId = {provider: "ESPRESSIF", name: "ESP32-Azure-IoT-Kit", version: "1.1"};
const device = {manufacturer: "ESPRESSIF", model: "ESP32-Azure-IoT-Kit"};
const target: DeploymentTarget = {...device, installedCriteria: "0.9", availableBytes: 1024 * 1024};

function service(o: {id?: string; retryTimestamp?: string; manifest?: string} = {}) {
	return {
		workflow: {action: 3, id: o.id ?? WORKFLOW, ...(o.retryTimestamp ? {retryTimestamp: o.retryTimestamp} : {})},
		updateManifest: o.manifest ?? kat.validManifest,
		updateManifestSignature: kat.validJws,
		fileUrls: {[FILE_ID]: URL},
	};
}
const CANCEL = {workflow: {action: 255, id: "nodeployment"}, updateManifest: null, updateManifestSignature: null, fileUrls: null};

interface Agent {state: number; workflow?: {action: number; id: string; retryTimestamp?: string}; installedUpdateId: string; lastInstallResult?: {resultCode: number; extendedResultCode: number; resultDetails?: string; stepResults: Record<string, unknown>}}

class Device {
	state: AduState = createAduState({device});
	all: AduOutput[] = [];
	feed(input: AduInput): AduOutput[] {
		const r = reduceAdu(this.state, input);
		this.state = r.state;
		this.all.push(...r.outputs);
		return [...r.outputs];
	}
	/** Plays the host: answers every request of the reducer until it asks for nothing more. */
	host(outputs: AduOutput[], o: {decide?: (d: HostDecision) => HostDecision; digest?: Uint8Array; downloaded?: number; install?: boolean} = {}): AduOutput[] {
		const seen: AduOutput[] = [];
		const queue = [...outputs];
		while (queue.length) {
			const x = queue.shift()!;
			seen.push(x);
			let next: AduOutput[] = [];
			if (x.type === "verify") next = this.feed({type: "verified", ticket: x.ticket, result: verifyManifestSignature(x.manifest, x.signature, ADU_ROOT_KEYS, nodeSha256)});
			else if (x.type === "decide") {
				const d = checkDeployment(x.manifest, target, x.fileUrls);
				next = this.feed({type: "decided", ticket: x.ticket, decision: o.decide ? o.decide(d) : d});
			}
			else if (x.type === "download") next = this.feed({type: "downloaded", ticket: x.ticket, size: o.downloaded ?? x.sizeInBytes});
			else if (x.type === "hash") next = this.feed({type: "hashed", ticket: x.ticket, sha256: o.digest ?? DIGEST});
			else if (x.type === "install") next = this.feed(o.install === false ? {type: "installFailed", ticket: x.ticket, message: "esp_ota_set_boot_partition failed"} : {type: "installed", ticket: x.ticket});
			queue.push(...next);
		}
		return seen;
	}
}

const types = (outs: AduOutput[]) => outs.map(o => o.type);
const reports = (outs: AduOutput[]): Agent[] => outs.flatMap(o => o.type === "report" ? [(JSON.parse(o.payload) as {deviceUpdate: {agent: Agent}}).deviceUpdate.agent] : []);
const acks = (outs: AduOutput[]) => outs.flatMap(o => o.type === "ack" ? [(JSON.parse(o.payload) as {deviceUpdate: {service: {ac: number; av: number}}}).deviceUpdate.service] : []);
const installed = (a: Agent) => JSON.parse(a.installedUpdateId) as UpdateId;
const only = <T extends AduOutput["type"]>(outs: AduOutput[], type: T) => outs.find(o => o.type === type) as Extract<AduOutput, {type: T}>;

function downloading(): {d: Device; ticket: number} {
	const d = booted();
	const start = d.feed({type: "desired", version: 4, service: service()});
	const decide = d.feed({type: "verified", ticket: only(start, "verify").ticket, result: {ok: true, rootKeyId: "ADU.200702.R"}});
	const x = only(decide, "decide");
	const dl = d.feed({type: "decided", ticket: x.ticket, decision: checkDeployment(x.manifest, target, x.fileUrls)});
	return {d, ticket: only(dl, "download").ticket};
}

function booted(o: {installed?: UpdateId; last?: WorkflowRecord; pending?: {update: PendingUpdate; outcome: "booted" | "rolledBack"}} = {}): Device {
	const d = new Device();
	d.feed({type: "boot", installed: o.installed ?? OLD, ...(o.last ? {last: o.last} : {}), ...(o.pending ? {pending: o.pending} : {})});
	return d;
}

test("boot reports idle with the installed update id and no workflow, as the C SDK writes it", t => {
	const d = new Device();
	const outs = d.feed({type: "boot", installed: OLD});
	t.deepEqual(outs, [{type: "report", payload: agentStatePayload({device, state: 0, installedUpdateId: OLD})}]);
	t.is(d.state.phase, "idle");
});

test("inputs before boot, and answers for no job, are ignored with a note", t => {
	const d = new Device();
	t.deepEqual(types(d.feed({type: "desired", version: 1, service: service()})), ["log"]);
	const b = booted();
	t.deepEqual(types(b.feed({type: "verified", ticket: 9, result: {ok: true, rootKeyId: "x"}})), ["log"]);
	t.deepEqual(types(b.feed({type: "installed", ticket: 0})), ["log"]);
});

test("a deployment from request to restart: verify, decide, ack 200, state 6, download, hash, install, state 6 with the result, restart", t => {
	const d = booted();
	const outs = d.host(d.feed({type: "desired", version: 7, service: service()}));
	t.deepEqual(types(outs), ["verify", "decide", "ack", "report", "download", "hash", "install", "report", "restart"]);
	t.deepEqual(acks(outs), [{ac: 200, av: 7, value: {}}]);
	const [progress, done] = reports(outs);
	t.is(progress.state, 6);
	t.deepEqual(progress.workflow, {action: 3, id: WORKFLOW});
	t.is(progress.lastInstallResult, undefined);
	t.deepEqual(installed(progress), OLD);
	t.is(done.state, 6);
	t.like(done.lastInstallResult, {resultCode: 705, extendedResultCode: 0});
	t.deepEqual(Object.keys(done.lastInstallResult!.stepResults), ["step_0"]);
	t.like(only(outs, "download"), {url: URL, offset: 0, sizeInBytes: SIZE, fileId: FILE_ID});
	t.deepEqual(only(outs, "install").pending, {workflow: {action: 3, id: WORKFLOW}, updateId: NEW, stepCount: 1});
	t.is(d.state.phase, "restarting");
});

test("after the restart into the new image: state 0 with the new id, and the same workflow delivered again is acknowledged, not redone", t => {
	const pending: PendingUpdate = {workflow: {action: 3, id: WORKFLOW}, updateId: NEW, stepCount: 1};
	const d = new Device();
	const outs = d.feed({type: "boot", installed: NEW, pending: {update: pending, outcome: "booted"}});
	t.deepEqual(types(outs), ["forgetPending", "report", "remember"]);
	const [r] = reports(outs);
	t.is(r.state, 0);
	t.deepEqual(installed(r), NEW);
	t.deepEqual(r.workflow, {action: 3, id: WORKFLOW});
	t.deepEqual(only(outs, "remember").record, {workflowId: WORKFLOW, outcome: "succeeded"});
	// The twin GET after connecting still holds the deployment: ack it, report nothing, verify nothing.
	const again = d.feed({type: "desired", version: 8, service: service()});
	t.deepEqual(types(again), ["ack", "log"]);
	t.deepEqual(acks(again), [{ac: 200, av: 8, value: {}}]);
});

test("a rollback reports 255 with lastInstallResult, then 0 with the old id, and the failed workflow is not taken again until a retry", t => {
	const pending: PendingUpdate = {workflow: {action: 3, id: WORKFLOW}, updateId: NEW, stepCount: 1};
	const d = new Device();
	const outs = d.feed({type: "boot", installed: OLD, pending: {update: pending, outcome: "rolledBack"}});
	t.deepEqual(types(outs), ["forgetPending", "log", "report", "report", "remember"]);
	const [failed, idle] = reports(outs);
	t.is(failed.state, 255);
	t.like(failed.lastInstallResult, {resultCode: 0, extendedResultCode: Reason.rolledBack});
	t.regex(failed.lastInstallResult!.resultDetails!, /1\.1 did not start; the device went back to 1\.0/);
	t.deepEqual(installed(failed), OLD);
	t.is(idle.state, 0);
	t.deepEqual(installed(idle), OLD);
	t.deepEqual(idle.workflow, {action: 3, id: WORKFLOW});
	const record = only(outs, "remember").record;
	t.deepEqual(record, {workflowId: WORKFLOW, outcome: "failed"});

	// The service keeps the deployment in the twin: delivered again, it gets 406 and nothing else.
	for (let i = 0; i < 3; i++) {
		const again = d.feed({type: "desired", version: 9 + i, service: service()});
		t.deepEqual(types(again), ["ack", "log"]);
		t.deepEqual(acks(again), [{ac: 406, av: 9 + i, value: {}}]);
	}
	// Also after another restart, from the persisted record.
	const later = booted({last: record});
	t.deepEqual(types(later.feed({type: "desired", version: 12, service: service()})), ["ack", "log"]);
	// A retry from the service (new retryTimestamp) or a new deployment is taken.
	t.deepEqual(types(later.feed({type: "desired", version: 13, service: service({retryTimestamp: "2022-01-26T11:33:29.9680598Z"})})), ["verify"]);
	const other = booted({last: record});
	t.deepEqual(types(other.feed({type: "desired", version: 14, service: service({id: "another-workflow"})})), ["verify"]);
});

test("a whole rollback loop stops after one try: install, rollback, then the same deployment is refused", t => {
	let d = booted();
	const first = d.host(d.feed({type: "desired", version: 3, service: service()}));
	const pending = only(first, "install").pending;
	t.deepEqual(types(first).slice(-1), ["restart"]);
	// The new image fails to start; the bootloader goes back to the old one.
	d = new Device();
	const boot = d.feed({type: "boot", installed: OLD, pending: {update: pending, outcome: "rolledBack"}});
	const record = only(boot, "remember").record;
	for (let reboot = 0; reboot < 3; reboot++) {
		d = booted({last: record});
		const outs = d.host(d.feed({type: "desired", version: 3, service: service()}));
		t.false(outs.some(o => o.type === "download" || o.type === "verify"), `reboot ${reboot}: no second install`);
	}
});

test("a signature that fails: 406, then 255 with the reason and 0; delivered again, 406 only", t => {
	const d = booted();
	const outs = d.host(d.feed({type: "desired", version: 4, service: service({manifest: kat.invalidManifest})}));
	t.deepEqual(types(outs), ["verify", "ack", "log", "remember", "report", "report"]);
	t.deepEqual(acks(outs), [{ac: 406, av: 4, value: {}}]);
	const [failed, idle] = reports(outs);
	t.is(failed.state, 255);
	t.like(failed.lastInstallResult, {resultCode: 0, extendedResultCode: Reason.jwsManifestHash});
	t.regex(failed.lastInstallResult!.resultDetails!, /signature was refused: the SHA-256 of updateManifest differs/);
	t.deepEqual(failed.lastInstallResult!.stepResults, {}, "no steps known: the manifest was not trusted");
	t.is(idle.state, 0);
	t.deepEqual(only(outs, "remember").record, {workflowId: WORKFLOW, outcome: "refused"});
	t.deepEqual(types(d.feed({type: "desired", version: 5, service: service({manifest: kat.invalidManifest})})), ["ack", "log"]);
});

test("a refused deployment (too large): 406, 255 with the reason, 0; nothing downloaded", t => {
	const d = booted();
	const outs = d.host(d.feed({type: "desired", version: 4, service: service()}), {decide: () => checkDeployment(parse(kat.validManifest), {...target, availableBytes: 1000}, [{fileId: FILE_ID, url: URL}])});
	t.deepEqual(types(outs), ["verify", "decide", "ack", "log", "remember", "report", "report"]);
	t.deepEqual(acks(outs), [{ac: 406, av: 4, value: {}}]);
	const [failed] = reports(outs);
	t.like(failed, {state: 255, lastInstallResult: {resultCode: 0, extendedResultCode: Reason.tooLarge}});
	t.deepEqual(Object.keys(failed.lastInstallResult!.stepResults), ["step_0"]);
});

test("already installed: 406 and state 0 with 603, not a failure", t => {
	const d = booted();
	const outs = d.host(d.feed({type: "desired", version: 4, service: service()}), {decide: () => checkDeployment(parse(kat.validManifest), {...target, installedCriteria: "1.0"}, [{fileId: FILE_ID, url: URL}])});
	t.deepEqual(types(outs), ["verify", "decide", "ack", "log", "remember", "report"]);
	t.deepEqual(acks(outs), [{ac: 406, av: 4, value: {}}]);
	const [r] = reports(outs);
	t.like(r, {state: 0, workflow: {action: 3, id: WORKFLOW}, lastInstallResult: {resultCode: 603, extendedResultCode: Reason.alreadyInstalled}});
	t.deepEqual(types(d.feed({type: "desired", version: 5, service: service()})), ["ack", "log"]);
});

test("an application that says \"not now\" sends 406 only and is asked again next time", t => {
	const d = booted();
	const outs = d.host(d.feed({type: "desired", version: 4, service: service()}), {decide: () => ({accept: false, retryLater: true, message: "busy"})});
	t.deepEqual(types(outs), ["verify", "decide", "ack", "log"]);
	t.deepEqual(acks(outs), [{ac: 406, av: 4, value: {}}]);
	t.is(d.state.last, undefined);
	t.deepEqual(types(d.feed({type: "desired", version: 5, service: service()})), ["verify"]);
});

test("cancel while downloading stops the download and reports idle with the cancel workflow; late download news is ignored", t => {
	const {d: e, ticket} = downloading();
	t.is(e.state.phase, "downloading");
	const cancel = e.feed({type: "desired", version: 5, service: CANCEL});
	t.deepEqual(types(cancel), ["abortDownload", "log", "report"]);
	t.deepEqual(acks(cancel), [], "a cancel is not acknowledged (as the C samples)");
	const [r] = reports(cancel);
	t.like(r, {state: 0, workflow: {action: 255, id: "nodeployment"}});
	t.deepEqual(installed(r), OLD);
	t.is(e.state.phase, "idle");
	t.deepEqual(types(e.feed({type: "downloaded", ticket, size: SIZE})), ["log"]);
});

test("cancel while idle reports idle with the cancel workflow", t => {
	const d = booted();
	const outs = d.feed({type: "desired", version: 2, service: CANCEL});
	t.deepEqual(types(outs), ["report"]);
	t.like(reports(outs)[0], {state: 0, workflow: {action: 255, id: "nodeployment"}});
});

test("an interrupted download resumes from where it stopped, and fails after the last attempt", t => {
	const {d, ticket} = downloading();
	t.deepEqual(d.feed({type: "downloadProgress", ticket, received: 4096}), []);
	for (let attempt = 1; attempt < MAX_DOWNLOAD_ATTEMPTS; attempt++) {
		const outs = d.feed({type: "downloadFailed", ticket, message: "connection reset", retriable: true});
		t.deepEqual(types(outs), ["log", "download"]);
		t.like(only(outs, "download"), {offset: 4096, url: URL});
	}
	t.deepEqual(types(d.feed({type: "downloadProgress", ticket, received: 100})), ["log"], "progress never goes back");
	const outs = d.feed({type: "downloadFailed", ticket, message: "connection reset", retriable: true});
	t.deepEqual(types(outs), ["abortDownload", "log", "remember", "report", "report"]);
	t.like(reports(outs)[0], {state: 255, lastInstallResult: {extendedResultCode: Reason.downloadFailed}});
	t.regex(reports(outs)[0].lastInstallResult!.resultDetails!, /failed after 4096 bytes: connection reset/);
	t.deepEqual(only(outs, "remember").record, {workflowId: WORKFLOW, outcome: "failed"});
});

test("a download of the wrong size, a hash mismatch and a failed install each end in 255 then 0", t => {
	const cases: [string, Parameters<Device["host"]>[1], number][] = [
		["size", {downloaded: SIZE - 1}, Reason.fileSizeMismatch],
		["hash", {digest: new Uint8Array(32)}, Reason.fileHashMismatch],
		["install", {install: false}, Reason.installFailed],
	];
	for (const [what, o, extended] of cases) {
		const d = booted();
		const outs = d.host(d.feed({type: "desired", version: 4, service: service()}), o);
		const [progress, failed, idle] = reports(outs);
		t.is(progress.state, 6, what);
		t.like(failed, {state: 255, lastInstallResult: {resultCode: 0, extendedResultCode: extended}}, what);
		t.like(idle, {state: 0, workflow: {action: 3, id: WORKFLOW}}, what);
		t.deepEqual(installed(idle), OLD, what);
		t.is(outs.some(o => o.type === "abortDownload"), what !== "install", `${what}: the written image is discarded`);
		t.false(outs.some(o => o.type === "restart"), what);
		t.is(d.state.phase, "idle");
	}
});

test("a new workflow replaces the one under way; the same one delivered again is acknowledged with its new version", t => {
	const {d, ticket} = downloading();
	const again = d.feed({type: "desired", version: 6, service: service()});
	t.deepEqual(types(again), ["ack"]);
	t.deepEqual(acks(again), [{ac: 200, av: 6, value: {}}]);
	t.is(d.state.phase, "downloading");
	const replaced = d.feed({type: "desired", version: 7, service: service({id: "next-workflow"})});
	t.deepEqual(types(replaced), ["abortDownload", "log", "verify"]);
	t.not(only(replaced, "verify").ticket, ticket);
	t.deepEqual(types(d.feed({type: "downloaded", ticket, size: SIZE})), ["log"], "the old job's news is stale");
});

test("delivered again while verifying: the acknowledgement carries the latest $version", t => {
	const d = booted();
	const start = d.feed({type: "desired", version: 4, service: service()});
	t.deepEqual(d.feed({type: "desired", version: 5, service: service()}), []);
	const outs = d.host(start);
	t.deepEqual(acks(outs), [{ac: 200, av: 5, value: {}}]);
});

test("while restarting into an update, new requests wait and a cancel is too late", t => {
	const d = booted();
	d.host(d.feed({type: "desired", version: 4, service: service()}));
	t.is(d.state.phase, "restarting");
	t.deepEqual(types(d.feed({type: "desired", version: 5, service: service({id: "later"})})), ["log"]);
	t.deepEqual(types(d.feed({type: "desired", version: 6, service: CANCEL})), ["log"]);
	t.deepEqual(types(d.feed({type: "desired", version: 7, service: service()})), ["ack"], "the same workflow is still acknowledged");
});

test("a malformed service is rejected with 406; an unknown action or a bad $version only noted", t => {
	const d = booted();
	const bad = d.feed({type: "desired", version: 3, service: {workflow: {action: 3}}});
	t.deepEqual(types(bad), ["ack", "log"]);
	t.deepEqual(acks(bad), [{ac: 406, av: 3, value: {}}]);
	t.deepEqual(types(d.feed({type: "desired", version: 3, service: {workflow: {action: 1, id: "legacy"}}})), ["log"]);
	t.deepEqual(types(d.feed({type: "desired", version: -1, service: service()})), ["log"]);
	t.deepEqual(types(d.feed({type: "desired", version: 1.5, service: service()})), ["log"]);
	t.is(d.state.phase, "idle");
});

test("a manifest that is signed but unreadable is refused as a bad manifest", t => {
	const d = booted();
	const start = d.feed({type: "desired", version: 3, service: service({manifest: "{\"updateId\":{}}"})});
	const outs = d.feed({type: "verified", ticket: only(start, "verify").ticket, result: {ok: true, rootKeyId: "EMU.ROOT.1"}});
	t.deepEqual(types(outs), ["ack", "log", "remember", "report", "report"]);
	t.like(reports(outs)[0], {state: 255, lastInstallResult: {extendedResultCode: Reason.badManifest}});
	t.regex(reports(outs)[0].lastInstallResult!.resultDetails!, /updateManifest\.updateId\.provider/);
});

test("malformed persisted records are ignored with a note", t => {
	const d = new Device();
	const outs = d.feed({type: "boot", installed: OLD, last: {workflowId: 5} as unknown as WorkflowRecord, pending: {update: {workflow: {}} as unknown as PendingUpdate, outcome: "booted"}});
	t.deepEqual(types(outs), ["log", "log", "forgetPending", "report"]);
	t.is(d.state.last, undefined);
	t.is(reports(outs)[0].state, 0);
});

test("boot without a proper installed update id is a config error", t => {
	const d = new Device();
	t.throws(() => d.feed({type: "boot", installed: {provider: "ESPRESSIF", name: "", version: "1.0"}}), {message: /deviceUpdate\.installed/});
});

test("states are frozen", t => {
	const {d} = downloading();
	t.true(Object.isFrozen(d.state) && Object.isFrozen(d.state.job));
});

function parse(text: string) {
	const r = parseUpdateManifest(text);
	if (!r.ok) throw new Error(r.message);
	return r.value;
}
