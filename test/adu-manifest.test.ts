import test from "ava";
import {Reason, ResultCode, type ReasonName} from "../src/adu/codes.js";
import {checkDeployment, parseServiceRequest, parseUpdateManifest, type DeploymentTarget, type FileUrl, type UpdateManifest} from "../src/adu/manifest.js";
import {loadCSdkPayloads, loadKat} from "./helpers/adu.js";

const c = loadCSdkPayloads();
const service = (name: string) => (JSON.parse(c[name]) as {service: unknown}).service;
const FILE_ID = "f2f4a804ca17afbae";

function request(name: string) {
	const r = parseServiceRequest(service(name));
	if (!r.ok) throw new Error(`${name}: ${r.message}`);
	return r.value;
}

function manifestOf(text: string): UpdateManifest {
	const r = parseUpdateManifest(text);
	if (!r.ok) throw new Error(r.message);
	return r.value;
}

test("the C SDK's service payloads parse as its tests expect", t => {
	for (const name of ["adu_request_payload", "adu_request_payload_reverse_order", "adu_request_payload_with_null_file_url_value"]) {
		const r = request(name);
		t.deepEqual(r.workflow, {action: 3, id: "51552a54-765e-419f-892a-c822549b6f38"}, name);
		t.is(r.updateManifest, c.adu_request_manifest, `${name}: the manifest string as received`);
		t.is(r.updateManifestSignature, c.valid_signature, name);
		t.deepEqual(r.fileUrls, [{fileId: FILE_ID, url: c.file_url}], `${name}: null URLs skipped`);
	}
	t.deepEqual(request("adu_request_payload_with_retry").workflow, {action: 3, id: "51552a54-765e-419f-892a-c822549b6f38", retryTimestamp: "2022-01-26T11:33:29.9680598Z"});
	t.deepEqual(request("adu_request_payload_multiple_file_url_value").fileUrls, [{fileId: FILE_ID, url: c.file_url}, {fileId: "f9fec76f10aede60e", url: c.file_url_contoso}]);
	const r = parseServiceRequest(service("adu_request_payload_too_many_file_url_value"));
	t.false(r.ok);
	if (!r.ok) t.regex(r.message, /fileUrls has more than 2 files/);
});

test("cancel and no-deployment payloads parse with nothing but the workflow", t => {
	for (const name of ["adu_request_manifest_no_deployment_null_manifest", "adu_request_manifest_no_deployment_null_file_url_value"])
		t.deepEqual(request(name), {workflow: {action: 255, id: "nodeployment"}, fileUrls: []}, name);
	t.deepEqual(request("adu_request_manifest_unknown_action_null_manifest").workflow, {action: -1, id: "nodeployment"});
	// A full twin after a cancel keeps only the workflow (samples issue #214).
	t.deepEqual(parseServiceRequest({workflow: {action: 255, id: "nodeployment"}}), {ok: true, value: {workflow: {action: 255, id: "nodeployment"}, fileUrls: []}});
});

test("unknown keys in service and workflow are ignored; wrong types and missing parts are named", t => {
	const base = service("adu_request_payload") as Record<string, unknown>;
	const tolerant = parseServiceRequest({...base, rootkeyPackageUrl: "http://x/rootkey.json", workflow: {action: 3, id: "w", extra: 1}});
	t.true(tolerant.ok);
	const cases: [unknown, RegExp][] = [
		[null, /service is not an object/],
		["{}", /service is not an object/],
		[{}, /workflow is missing/],
		[{workflow: {action: "3", id: "w"}}, /action is not an integer/],
		[{workflow: {action: 3.5, id: "w"}}, /action is not an integer/],
		[{workflow: {action: 3}}, /workflow\.id is missing/],
		[{workflow: {action: 3, id: "w", retryTimestamp: 5}}, /retryTimestamp is not a string/],
		[{...base, updateManifest: {}}, /updateManifest is not a string or null/],
		[{...base, updateManifestSignature: 1}, /updateManifestSignature is not a string or null/],
		[{...base, fileUrls: []}, /fileUrls is not an object or null/],
		[{...base, fileUrls: {a: 1}}, /fileUrls\.a is not a URL string/],
		[{...base, updateManifest: null}, /action 3 \(apply deployment\) needs updateManifest and updateManifestSignature/],
	];
	for (const [value, message] of cases) {
		const r = parseServiceRequest(value);
		t.false(r.ok, String(message));
		if (!r.ok) t.regex(r.message, message);
	}
	const proto = parseServiceRequest(JSON.parse(`{"workflow":{"action":3,"id":"w"},"updateManifest":"m","updateManifestSignature":"s","fileUrls":{"__proto__":"http://a/b"}}`));
	t.true(proto.ok && proto.value.fileUrls[0].fileId === "__proto__" && Object.getPrototypeOf(proto.value.fileUrls) === Array.prototype, "a __proto__ key stays a file id");
});

test("the C SDK's manifests parse to the values its tests expect", t => {
	for (const name of ["adu_request_manifest", "adu_request_manifest_unused_fields", "adu_request_manifest_unknown_nested_fields", "adu_request_manifest_reverse_order"]) {
		const m = manifestOf(c[name]);
		t.is(m.manifestVersion, "5", name);
		t.deepEqual(m.updateId, {provider: "Contoso", name: "Foobar", version: "1.1"}, name);
		t.deepEqual(m.compatibility, [{deviceManufacturer: "Contoso", deviceModel: "Foobar"}], name);
		t.is(m.steps.length, 1);
		t.like(m.steps[0], {type: "inline", handler: "microsoft/swupdate:1", installedCriteria: "1.0"}, name);
		t.deepEqual(m.steps[0].files, [FILE_ID]);
		t.deepEqual(m.files, [{id: FILE_ID, fileName: "iot-middleware-sample-adu-v1.1", sizeInBytes: 844976, sha256: "xsoCnYAMkZZ7m9RL9Vyg9jKfFehCNxyuPFaJVM/WBi0="}], name);
		t.is(m.createdDateTime, "2022-07-07T03:02:48.8449038Z", name);
		t.true(Object.isFrozen(m) && Object.isFrozen(m.files[0]) && Object.isFrozen(m.steps[0]));
	}
	const kat = manifestOf(loadKat().validManifest);
	t.is(kat.manifestVersion, "4");
	t.deepEqual(kat.updateId, {provider: "ESPRESSIF", name: "ESP32-Azure-IoT-Kit", version: "1.1"});
});

test("the C SDK's limits: more than 2 files in a step or in all is an error naming the field", t => {
	const steps = parseUpdateManifest(c.adu_request_manifest_too_many_file_ids);
	t.false(steps.ok);
	if (!steps.ok) t.regex(steps.message, /updateManifest\.instructions\.steps\[0\]\.files lists 4 files; this device takes at most 2 per step/);
	const total = parseUpdateManifest(c.adu_request_manifest_too_many_total_files);
	t.false(total.ok);
	if (!total.ok) t.regex(total.message, /updateManifest\.files has more than 2 files/);
});

test("every problem in a manifest names the field", t => {
	const m = JSON.parse(c.adu_request_manifest) as Record<string, any>;
	const edit = (f: (x: Record<string, any>) => void) => { const x = structuredClone(m); f(x); return JSON.stringify(x); };
	const cases: [string, RegExp][] = [
		["not json", /updateManifest is not valid JSON/],
		["[]", /updateManifest is not a JSON object/],
		["[".repeat(20) + "]".repeat(20), /nested deeper than 16/],
		["x".repeat(40000), /40000 characters long/],
		[edit(x => { delete x.updateId; }), /updateManifest\.updateId is missing/],
		[edit(x => { x.updateId.provider = 1; }), /updateManifest\.updateId\.provider is missing or not a string/],
		[edit(x => { delete x.updateId.version; }), /updateManifest\.updateId\.version/],
		[edit(x => { x.manifestVersion = 5; }), /manifestVersion is not a string/],
		[edit(x => { x.compatibility = {}; }), /compatibility is not an array/],
		[edit(x => { x.compatibility = [{deviceModel: {}}]; }), /compatibility\[0\]\.deviceModel is not a string/],
		[edit(x => { delete x.files; }), /updateManifest\.files is missing/],
		[edit(x => { x.files[FILE_ID].sizeInBytes = "844976"; }), /files\.f2f4a804ca17afbae\.sizeInBytes is not a whole number/],
		[edit(x => { x.files[FILE_ID].sizeInBytes = -1; }), /sizeInBytes is not a whole number/],
		[edit(x => { x.files[FILE_ID].hashes = {sha1: "x"}; }), /hashes\.sha256 is not the standard base64 of 32 bytes/],
		[edit(x => { x.files[FILE_ID].hashes.sha256 = "xsoCnYAMkZZ7m9RL9Vyg9jKfFehCNxyuPFaJVM_WBi0="; }), /hashes\.sha256/],
		[edit(x => { delete x.files[FILE_ID].fileName; }), /fileName is missing/],
		[edit(x => { delete x.instructions; }), /updateManifest\.instructions is missing/],
		[edit(x => { x.instructions.steps = []; }), /steps is missing, empty or not an array/],
		[edit(x => { x.instructions.steps = [x.instructions.steps[0], x.instructions.steps[0], x.instructions.steps[0]]; }), /has 3 steps; this device takes at most 2/],
		[edit(x => { delete x.instructions.steps[0].handler; }), /steps\[0\]\.handler is missing/],
		[edit(x => { x.instructions.steps[0].files = ["nope"]; }), /steps\[0\]\.files\[0\] "nope" is not in updateManifest\.files/],
		[edit(x => { x.instructions.steps[0].files = [7]; }), /steps\[0\]\.files\[0\] is not a file id/],
		[edit(x => { x.instructions.steps[0].handlerProperties = {installedCriteria: 1}; }), /installedCriteria is not a string/],
	];
	for (const [text, message] of cases) {
		const r = parseUpdateManifest(text);
		t.false(r.ok, String(message));
		if (!r.ok) t.regex(r.message, message);
	}
});

const device: DeploymentTarget = {manufacturer: "Contoso", model: "Foobar", installedCriteria: "0.9", availableBytes: 1024 * 1024};
const urls: FileUrl[] = [{fileId: FILE_ID, url: "http://contoso.b.nlu.dl.adu.microsoft.com/westus2/x/iot-middleware-sample-adu-v1.1"}];

test("checkDeployment accepts a compatible update and says what to download", t => {
	const d = checkDeployment(manifestOf(c.adu_request_manifest), device, urls);
	t.deepEqual(d, {accept: true, plan: {
		updateId: {provider: "Contoso", name: "Foobar", version: "1.1"}, handler: "microsoft/swupdate:1", installedCriteria: "1.0",
		fileId: FILE_ID, fileName: "iot-middleware-sample-adu-v1.1", sizeInBytes: 844976, sha256: "xsoCnYAMkZZ7m9RL9Vyg9jKfFehCNxyuPFaJVM/WBi0=", url: urls[0].url, stepCount: 1,
	}});
});

test("checkDeployment refuses with a reason, a result code and a message for each problem", t => {
	const m = JSON.parse(c.adu_request_manifest) as Record<string, any>;
	const edit = (f: (x: Record<string, any>) => void) => { const x = structuredClone(m); f(x); return manifestOf(JSON.stringify(x)); };
	const cases: [string, UpdateManifest, DeploymentTarget, FileUrl[], ReasonName, RegExp][] = [
		["other model", manifestOf(c.adu_request_manifest), {...device, model: "Other"}, urls, "incompatible", /deviceManufacturer "Contoso" deviceModel "Foobar", not for manufacturer "Contoso" model "Other"/],
		["case differs", manifestOf(c.adu_request_manifest), {...device, manufacturer: "contoso"}, urls, "incompatible", /not for manufacturer "contoso"/],
		["no compatibility", edit(x => { delete x.compatibility; }), device, urls, "incompatible", /no compatibility/],
		["empty entry", edit(x => { x.compatibility = [{}]; }), device, urls, "incompatible", /not for/],
		["unreported compat property", edit(x => { x.compatibility[0].hw = "rev2"; }), device, urls, "incompatible", /hw "rev2"/],
		["two steps", edit(x => { x.instructions.steps.push(x.instructions.steps[0]); }), device, urls, "unsupportedSteps", /has 2 steps/],
		["reference step", edit(x => { x.instructions.steps = [{type: "reference", detachedManifestFileId: FILE_ID}]; }), device, urls, "unsupportedSteps", /type "reference"/],
		["other handler", edit(x => { x.instructions.steps[0].handler = "microsoft/script:1"; }), device, urls, "unsupportedHandler", /handler "microsoft\/script:1"; this device implements "microsoft\/swupdate:1"/],
		["already installed", manifestOf(c.adu_request_manifest), {...device, installedCriteria: "1.0"}, urls, "alreadyInstalled", /already installed: step 0's installedCriteria "1.0"/],
		["no file", edit(x => { x.instructions.steps[0].files = []; }), device, urls, "unsupportedFiles", /lists 0 files/],
		["empty file", edit(x => { x.files[FILE_ID].sizeInBytes = 0; }), device, urls, "unsupportedFiles", /is empty/],
		["too large", manifestOf(c.adu_request_manifest), {...device, availableBytes: 844975}, urls, "tooLarge", /is 844976 bytes; this device has room for 844975/],
		["no URL", manifestOf(c.adu_request_manifest), device, [{fileId: "other", url: "http://x/y"}], "noFileUrl", /no download URL for file "f2f4a804ca17afbae"/],
		["ftp URL", manifestOf(c.adu_request_manifest), device, [{fileId: FILE_ID, url: "ftp://x/y"}], "noFileUrl", /not http:\/\/ or https:\/\//],
	];
	for (const [what, manifest, target, fileUrls, reason, message] of cases) {
		const d = checkDeployment(manifest, target, fileUrls);
		t.false(d.accept, what);
		if (d.accept) continue;
		t.is(d.reason, reason, what);
		t.regex(d.message, message, what);
		t.is(d.extendedResultCode, Reason[d.reason], what);
		t.is(d.resultCode, reason === "alreadyInstalled" ? ResultCode.alreadyInstalled : ResultCode.failure, what);
	}
});

test("compatibility: any entry may match, all of its properties must; custom names match custom properties", t => {
	const m = JSON.parse(c.adu_request_manifest) as Record<string, any>;
	m.compatibility = [{deviceManufacturer: "Other", deviceModel: "X"}, {deviceManufacturer: "Contoso", deviceModel: "Foobar", hw: "rev2"}];
	const manifest = manifestOf(JSON.stringify(m));
	t.false(checkDeployment(manifest, device, urls).accept);
	t.true(checkDeployment(manifest, {...device, customProperties: [{name: "hw", value: "rev2"}]}, urls).accept);
	const custom = checkDeployment(manifestOf(c.adu_request_manifest), {...device, handler: "contoso/esp32:1"}, urls);
	t.true(!custom.accept && custom.reason === "unsupportedHandler", "the device's own handler name is what counts");
});
