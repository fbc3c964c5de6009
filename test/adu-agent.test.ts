import test from "ava";
import {agentStatePayload, checkDeviceProperties, serviceAckPayload, updateIdString, type DeviceProperties} from "../src/adu/agent.js";
import {AgentState} from "../src/adu/codes.js";
import {jsonString} from "../src/adu/json.js";
import {parseServiceRequest} from "../src/adu/manifest.js";
import {AzureIoTError} from "../src/errors.js";
import {loadCSdkPayloads} from "./helpers/adu.js";

// The Embedded C SDK test's values (sdk/tests/iot/adu/test_az_iot_adu.c, setup()).
const c = loadCSdkPayloads();
const device: DeviceProperties = {manufacturer: "Contoso", model: "Foobar"};
const installedUpdateId = {provider: "Contoso", name: "Foobar", version: "1.0"};
const okResult = {resultCode: 0, extendedResultCode: 1234, resultDetails: "Ok"};

test("agent state, short: the C SDK's expected_agent_state_payload byte for byte", t => {
	t.is(agentStatePayload({device, state: AgentState.idle, installedUpdateId}), c.expected_agent_state_payload);
});

test("agent state, long: expected_agent_state_long_payload byte for byte, with the workflow parsed from adu_request_payload", t => {
	const request = parseServiceRequest((JSON.parse(c.adu_request_payload) as {service: unknown}).service);
	if (!request.ok) return t.fail(request.message);
	const lastInstallResult = {...okResult, stepResults: [okResult]};
	t.is(agentStatePayload({device, state: AgentState.idle, workflow: request.value.workflow, lastInstallResult, installedUpdateId}), c.expected_agent_state_long_payload);
	const retry = parseServiceRequest((JSON.parse(c.adu_request_payload_with_retry) as {service: unknown}).service);
	if (!retry.ok) return t.fail(retry.message);
	t.is(agentStatePayload({device, state: AgentState.idle, workflow: retry.value.workflow, lastInstallResult, installedUpdateId}), c.expected_agent_state_long_payload_with_retry);
});

test("the service acknowledgement is send_response_valid_payload byte for byte; 406 rejects", t => {
	t.is(serviceAckPayload(1, true), c.send_response_valid_payload);
	t.is(serviceAckPayload(17, false), "{\"deviceUpdate\":{\"__t\":\"c\",\"service\":{\"ac\":406,\"av\":17,\"value\":{}}}}");
	t.throws(() => serviceAckPayload(1.5, true), {instanceOf: RangeError});
});

test("custom properties come after model, doVer after aduVer; empty details and an empty workflow id are left out", t => {
	const payload = agentStatePayload({
		device: {manufacturer: "Contoso", model: "Foobar", customProperties: [{name: "location", value: "US"}, {name: "hw", value: "rev2"}], doVer: "DU;lib/v0.6.0+20211001.174458.c8c4051"},
		compatPropertyNames: "manufacturer,model,hw",
		state: AgentState.failed,
		workflow: {action: 3, id: ""},
		lastInstallResult: {resultCode: 0, extendedResultCode: 403, resultDetails: "", stepResults: [{resultCode: 0, extendedResultCode: 403}, {resultCode: 1, extendedResultCode: 0, resultDetails: "x"}]},
		installedUpdateId,
	});
	t.is(payload, "{\"deviceUpdate\":{\"__t\":\"c\",\"agent\":{\"deviceProperties\":{\"manufacturer\":\"Contoso\",\"model\":\"Foobar\",\"location\":\"US\",\"hw\":\"rev2\","
		+ "\"contractModelId\":\"dtmi:azure:iot:deviceUpdateContractModel;2\",\"aduVer\":\"DU;agent/1.0.0\",\"doVer\":\"DU;lib/v0.6.0+20211001.174458.c8c4051\"},"
		+ "\"compatPropertyNames\":\"manufacturer,model,hw\",\"lastInstallResult\":{\"resultCode\":0,\"extendedResultCode\":403,\"stepResults\":{"
		+ "\"step_0\":{\"resultCode\":0,\"extendedResultCode\":403},\"step_1\":{\"resultCode\":1,\"extendedResultCode\":0,\"resultDetails\":\"x\"}}},"
		+ "\"state\":255,\"installedUpdateId\":\"{\\\"provider\\\":\\\"Contoso\\\",\\\"name\\\":\\\"Foobar\\\",\\\"version\\\":\\\"1.0\\\"}\"}}}");
	const parsed = JSON.parse(payload) as {deviceUpdate: {agent: {installedUpdateId: string}}};
	t.deepEqual(JSON.parse(parsed.deviceUpdate.agent.installedUpdateId), installedUpdateId, "installedUpdateId is a string holding JSON");
	t.is(agentStatePayload({device, state: 0, lastInstallResult: {resultCode: 0, extendedResultCode: 0}, installedUpdateId}).includes("\"stepResults\":{}"), true);
});

test("strings are escaped as az_json_writer does: two-character escapes, \\u00XX in upper case, nothing else", t => {
	t.is(jsonString("a\"b\\c\b\f\n\r\t\u0001\u001f/é\u007f"), "\"a\\\"b\\\\c\\b\\f\\n\\r\\t\\u0001\\u001F/é\u007f\"");
	t.is(updateIdString({provider: "A\"", name: "n", version: "1"}), "{\"provider\":\"A\\\"\",\"name\":\"n\",\"version\":\"1\"}");
	for (const s of ["plain", "", "\u0000\u0010 end"]) t.is(JSON.parse(jsonString(s)), s);
});

test("device properties are checked once, with errors naming the field", t => {
	t.notThrows(() => checkDeviceProperties(device));
	const cases: [DeviceProperties, string | undefined, RegExp][] = [
		[{manufacturer: "", model: "m"}, undefined, /deviceUpdate\.device\.manufacturer: is missing/],
		[{manufacturer: "m"} as DeviceProperties, undefined, /deviceUpdate\.device\.model/],
		[{...device, customProperties: Array.from({length: 6}, (_, i) => ({name: `p${i}`, value: "v"}))}, undefined, /at most 5/],
		[{...device, customProperties: [{name: "model", value: "v"}]}, undefined, /"model" is reserved or repeated/],
		[{...device, customProperties: [{name: "a", value: "v"}, {name: "a", value: "w"}]}, undefined, /"a" is reserved or repeated/],
		[{...device, customProperties: [{name: "a", value: 1 as unknown as string}]}, undefined, /value: is not a string/],
		[device, "manufacturer,model,location", /names "location", which the device does not report/],
		[device, "a,b,c,d,e,f", /names 6 properties/],
	];
	for (const [d, compat, message] of cases) {
		const e = t.throws(() => checkDeviceProperties(d, compat), {instanceOf: AzureIoTError});
		t.regex(e?.message ?? "", message);
	}
	t.notThrows(() => checkDeviceProperties({...device, customProperties: [{name: "location", value: "US"}]}, "manufacturer,model,location"));
});
