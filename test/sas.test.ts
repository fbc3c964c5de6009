import test from "ava";
import * as crypto from "node:crypto";
import {deriveDeviceKey, dpsPassword, hubPassword, redact, sasToken} from "../src/sas.js";
import {createNodeHost} from "../hosts/node/host.js";

// The protocol note §5: Microsoft's documented group-key example.
const GROUP_KEY = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
const REGISTRATION_ID = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6";
const DEVICE_KEY = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=";
const hmac = createNodeHost().hmacSha256;

test("group enrollment key derivation reproduces Microsoft's example", t => {
	t.is(deriveDeviceKey(GROUP_KEY, REGISTRATION_ID, hmac), DEVICE_KEY);
});

test("DPS password matches the test vector", t => {
	t.is(dpsPassword("0ne00000000", REGISTRATION_ID, DEVICE_KEY, 1700000000, hmac),
		"SharedAccessSignature sr=0ne00000000%2Fregistrations%2Fsn-007-888-abc-mac-a1-b2-c3-d4-e5-f6&sig=UcaBdA4L3Se7NlFQZcBFRndkqyymINWtRUmVT5QYWng%3D&se=1700000000&skn=registration");
});

test("hub password matches the test vector and has no skn", t => {
	t.is(hubPassword("contoso.azure-devices.net", REGISTRATION_ID, DEVICE_KEY, 1700000000, hmac),
		"SharedAccessSignature sr=contoso.azure-devices.net%2Fdevices%2Fsn-007-888-abc-mac-a1-b2-c3-d4-e5-f6&sig=aogMFXumN5h359Jd2lkt0nG5blAJKPNVgoseKPYlK6o%3D&se=1700000000");
});

test("the signature covers the encoded sr exactly as sent", t => {
	const token = sasToken({resourceUri: "hub.example/devices/a b+c", key: DEVICE_KEY, expiry: 1700000000.9, hmac});
	const params = new URLSearchParams(token.slice("SharedAccessSignature ".length));
	const sr = token.match(/sr=([^&]+)/)![1];
	t.is(sr, "hub.example%2Fdevices%2Fa%20b%2Bc");
	t.is(params.get("se"), "1700000000", "fractional expiry is truncated to whole seconds");
	const expected = crypto.createHmac("sha256", Buffer.from(DEVICE_KEY, "base64")).update(`${sr}\n1700000000`).digest("base64");
	t.is(params.get("sig"), expected);
});

test("a key that is not base64 is a config error naming the field, without echoing the key", t => {
	const error = t.throws(() => sasToken({resourceUri: "x", key: "not base64!!", expiry: 1, hmac}));
	t.is((error as {code?: string}).code, "config");
	t.regex(error!.message, /symmetricKey: is not valid base64/);
	t.false(error!.message.includes("not base64!!"));
	t.throws(() => deriveDeviceKey("abc", "x", hmac), {message: /groupKey/});
});

test("redact hides signatures and connection-string keys", t => {
	t.is(redact("SharedAccessSignature sr=x&sig=abc%3D&se=1"), "SharedAccessSignature sr=x&sig=<redacted>&se=1");
	t.is(redact("HostName=h;DeviceId=d;SharedAccessKey=abc="), "HostName=h;DeviceId=d;SharedAccessKey=<redacted>");
});
