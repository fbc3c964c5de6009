import test from "ava";
import * as topics from "../src/hub/topics.js";
import {hubPassword} from "../src/sas.js";
import * as crypto from "node:crypto";

const hmac = (key: Uint8Array, message: Uint8Array) => new Uint8Array(crypto.createHmac("sha256", key).update(message).digest());

test("protocol note §5 hub vector through hubPassword", t => {
	t.is(hubPassword("contoso.azure-devices.net", "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=", 1700000000, hmac),
		"SharedAccessSignature sr=contoso.azure-devices.net%2Fdevices%2Fsn-007-888-abc-mac-a1-b2-c3-d4-e5-f6&sig=aogMFXumN5h359Jd2lkt0nG5blAJKPNVgoseKPYlK6o%3D&se=1700000000");
});

test("username with and without model id", t => {
	t.is(topics.hubUsername("h.azure-devices.net", "dev-1"), "h.azure-devices.net/dev-1/?api-version=2021-04-12");
	t.is(topics.hubUsername("h.azure-devices.net", "dev-1", "dtmi:com:example:Thermostat;1"),
		"h.azure-devices.net/dev-1/?api-version=2021-04-12&model-id=dtmi%3Acom%3Aexample%3AThermostat%3B1");
});

test("fixed topics", t => {
	t.is(topics.c2dSubscription("d"), "devices/d/messages/devicebound/#");
	t.is(topics.TWIN_RESPONSES, "$iothub/twin/res/#");
	t.is(topics.DESIRED_PATCHES, "$iothub/twin/PATCH/properties/desired/#");
	t.is(topics.METHOD_REQUESTS, "$iothub/methods/POST/#");
	t.is(topics.twinGetTopic("7"), "$iothub/twin/GET/?$rid=7");
	t.is(topics.reportedPatchTopic("8"), "$iothub/twin/PATCH/properties/reported/?$rid=8");
	t.is(topics.methodResponseTopic(200, "1f"), "$iothub/methods/res/200/?$rid=1f");
	t.is(topics.telemetryTopic("d", "$.mid=1"), "devices/d/messages/events/$.mid=1");
});

test("telemetry bag: system properties, then URL-encoded application properties", t => {
	const bag = topics.telemetryBag({
		messageId: "m 1", correlationId: "c/1", contentType: "application/json", contentEncoding: "utf-8", component: "thermostat1",
		properties: {"a b": "x&y=z", "ü": "/?#%", plain: "v"},
	});
	t.is(bag, "$.mid=m%201&$.cid=c%2F1&$.ct=application%2Fjson&$.ce=utf-8&$.sub=thermostat1&a%20b=x%26y%3Dz&%C3%BC=%2F%3F%23%25&plain=v");
	// It round-trips through the parser.
	const parsed = topics.parsePropertyBag(bag);
	t.deepEqual(parsed.properties, {"a b": "x&y=z", "ü": "/?#%", plain: "v"});
	t.deepEqual(parsed.systemProperties, {"$.mid": "m 1", "$.cid": "c/1", "$.ct": "application/json", "$.ce": "utf-8", "$.sub": "thermostat1"});
	t.throws(() => topics.telemetryBag({messageId: "x", properties: {k: "\ud800"}}), {instanceOf: URIError});
});

test("cloud-to-device bag as the hub sends it (encoded $ names, iothub-ack), malformed escapes kept raw", t => {
	const topic = "devices/dev/messages/devicebound/%24.mid=abc&%24.to=%2Fdevices%2Fdev%2Fmessages%2FdeviceBound&iothub-ack=full&color=r%C3%A9d&x=1%262&bad=%E0%A4%A&flag";
	const c2d = topics.classifyTopic(topic, "dev");
	t.deepEqual(c2d, {kind: "c2d", bag: topic.slice("devices/dev/messages/devicebound/".length)});
	const parsed = topics.parsePropertyBag((c2d as {bag: string}).bag);
	t.deepEqual(parsed.systemProperties, {"$.mid": "abc", "$.to": "/devices/dev/messages/deviceBound", "iothub-ack": "full"});
	t.deepEqual(parsed.properties, {color: "réd", x: "1&2", bad: "%E0%A4%A", flag: ""});
	t.deepEqual(topics.classifyTopic("devices/dev/messages/devicebound", "dev"), {kind: "c2d", bag: ""});
	t.deepEqual(topics.classifyTopic("devices/d%2Bv/messages/devicebound/%24.mid=1", "d+v"), {kind: "c2d", bag: "%24.mid=1"}, "the device id as the hub encodes it");
	t.is(topics.classifyTopic("devices/dev/messages/deviceboundx", "dev").kind, "unknown");
	t.is(topics.classifyTopic("devices/a/b/messages/devicebound/x", "dev").kind, "unknown");
});

test("twin replies", t => {
	t.deepEqual(topics.classifyTopic("$iothub/twin/res/200/?$rid=12", "d"), {kind: "twinResponse", status: 200, rid: "12"});
	t.deepEqual(topics.classifyTopic("$iothub/twin/res/204/?$rid=3&$version=17", "d"), {kind: "twinResponse", status: 204, rid: "3", version: 17});
	t.deepEqual(topics.classifyTopic("$iothub/twin/res/429/?$rid=4", "d"), {kind: "twinResponse", status: 429, rid: "4"});
	t.is(topics.classifyTopic("$iothub/twin/res/abc/?$rid=4", "d").kind, "unknown");
	t.is(topics.classifyTopic("$iothub/twin/res/200/", "d").kind, "unknown");
	t.is(topics.topicKind("$iothub/twin/res/200/", "d"), "twinResponse", "the cheap kind, for the size limit, goes by the prefix");
});

test("desired patches and method requests, IoT Plug and Play component commands split at the first *", t => {
	t.deepEqual(topics.classifyTopic("$iothub/twin/PATCH/properties/desired/?$version=5", "d"), {kind: "desired", version: 5});
	t.deepEqual(topics.classifyTopic("$iothub/twin/PATCH/properties/desired/", "d"), {kind: "desired"});
	t.deepEqual(topics.classifyTopic("$iothub/methods/POST/reboot/?$rid=1a", "d"), {kind: "method", name: "reboot", rid: "1a", command: "reboot"});
	t.deepEqual(topics.classifyTopic("$iothub/methods/POST/set%20led/?$rid=2", "d"), {kind: "method", name: "set led", rid: "2", command: "set led"});
	t.deepEqual(topics.classifyTopic("$iothub/methods/POST/thermostat2*getMaxMinReport/?$rid=3", "d"),
		{kind: "method", name: "thermostat2*getMaxMinReport", rid: "3", component: "thermostat2", command: "getMaxMinReport"});
	t.deepEqual(topics.classifyTopic("$iothub/methods/POST/*reboot/?$rid=4", "d"), {kind: "method", name: "*reboot", rid: "4", command: "reboot"});
	t.is(topics.classifyTopic("$iothub/methods/POST/reboot/", "d").kind, "unknown");
	t.is(topics.classifyTopic("$iothub/methods/POST//?$rid=1", "d").kind, "unknown");
	t.is(topics.classifyTopic("some/other/topic", "d").kind, "unknown");
	t.is(topics.topicKind("some/other/topic", "d"), "unknown");
});

test("values are percent-encoded as Microsoft's SDKs do: ! ' ( ) * too", t => {
	t.is(topics.telemetryBag({messageId: "a(1)!", properties: {"k*": "it's"}}), "$.mid=a%281%29%21&k%2A=it%27s");
	t.is(topics.hubUsername("h", "d", "dtmi:a:b;1", "my-client/1.0 (x)"), "h/d/?api-version=2021-04-12&DeviceClientType=my-client%2F1.0%20%28x%29&model-id=dtmi%3Aa%3Ab%3B1");
});
