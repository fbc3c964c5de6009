import test from "ava";
import {dpsUsername, parseErrorBody, parseOperationReply, parseReplyTopic, pollTopic, registerTopic} from "../src/dps/topics.js";
import {AzureIoTError} from "../src/errors.js";

test("topics and username are Azure's", t => {
	t.is(dpsUsername("0ne00000000", "dev-1"), "0ne00000000/registrations/dev-1/api-version=2019-03-31");
	t.is(registerTopic("7"), "$dps/registrations/PUT/iotdps-register/?$rid=7");
	t.is(pollTopic("8", "4.abc.def"), "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=8&operationId=4.abc.def");
});

test("reply topics parse status, rid and retry-after", t => {
	t.deepEqual(parseReplyTopic("$dps/registrations/res/202/?$rid=7&retry-after=3"), {status: 202, rid: "7", retryAfter: 3});
	t.deepEqual(parseReplyTopic("$dps/registrations/res/200/?$rid=7"), {status: 200, rid: "7"});
	t.deepEqual(parseReplyTopic("$dps/registrations/res/429/?retry-after=10&$rid=x%20y"), {status: 429, rid: "x y", retryAfter: 10});
	for (const bad of ["", "$dps/registrations/res/", "$dps/registrations/res/abc/?$rid=1", "$dps/registrations/res/200/", "$dps/registrations/res/200?$rid=1",
		"devices/x/messages/devicebound/", "$dps/registrations/res/99/?$rid=1", "$dps/registrations/res/200/?$rid=%E0%A4%A"]) {
		const parsed = parseReplyTopic(bad);
		t.true(parsed === undefined || typeof parsed.rid === "string", bad);
	}
	t.is(parseReplyTopic("$dps/registrations/res/202/?$rid=1&retry-after=-5")?.retryAfter, undefined, "a negative retry-after is ignored");
	t.is(parseReplyTopic("$dps/registrations/res/202/?$rid=1&retry-after=abc")?.retryAfter, undefined);
});

test("operation replies: every registrationState field is kept", t => {
	const reply = parseOperationReply(JSON.stringify({
		operationId: "op", status: "assigned",
		registrationState: {registrationId: "r", createdDateTimeUtc: "c", assignedHub: "h", deviceId: "d", status: "assigned", substatus: "s",
			lastUpdatedDateTimeUtc: "l", etag: "e", errorCode: 1, errorMessage: "m", payload: {x: [1]}},
	}), "r");
	t.deepEqual(reply.result, {registrationId: "r", operationId: "op", createdDateTimeUtc: "c", assignedHub: "h", deviceId: "d", status: "assigned",
		substatus: "s", lastUpdatedDateTimeUtc: "l", etag: "e", errorCode: 1, errorMessage: "m", payload: {x: [1]}});
});

test("malformed operation replies are retriable dps.badReply errors", t => {
	for (const bad of ["", "{", "null", "[]", "42", '{"status":1}', '{"operationId":"x"}', '{"status":"assigned","registrationState":"x"}', "\u0000".repeat(100)]) {
		const error = t.throws(() => parseOperationReply(bad, "r"), {instanceOf: AzureIoTError}, bad);
		t.is((error as AzureIoTError).code, "dps.badReply");
		t.true((error as AzureIoTError).retriable);
	}
	t.is((t.throws(() => parseOperationReply(`{${"x".repeat(100_000)}}`, "r")) as AzureIoTError).code, "dps.badReply", "large garbage");
});

test("error bodies are read when they are JSON and tolerated when not", t => {
	t.deepEqual(parseErrorBody('{"errorCode":401002,"trackingId":"t","message":"no","timestampUtc":"x"}'), {errorCode: 401002, message: "no", trackingId: "t"});
	t.deepEqual(parseErrorBody("<html>"), {});
	t.is(parseErrorBody(JSON.stringify({message: "m".repeat(1000)})).message!.length, 200, "long messages are cut");
});
