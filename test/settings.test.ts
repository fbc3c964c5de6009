import test from "ava";
import {checkSettings, settingsFromFile, SETTINGS, SETTING_NAMES} from "../src/settings.js";
import {AzureIoTError} from "../src/errors.js";

/** device.json through the one settings table, as the tools read it. */
function validateDeviceConfig(raw: unknown) {
	const byName = settingsFromFile(raw);
	return checkSettings(name => byName[name], "file");
}

const KEY = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=";
const good = () => ({dps: {host: "localhost", port: 8883, idScope: "0ne00000000", registrationId: "dev-1", symmetricKey: KEY}});

function fails(t: import("ava").ExecutionContext, raw: unknown, field: RegExp) {
	const error = t.throws(() => validateDeviceConfig(raw));
	t.true(error instanceof AzureIoTError);
	t.is((error as AzureIoTError).code, "config");
	t.regex(error!.message, field);
	t.false(error!.message.includes(KEY), "the key is never echoed");
	return error!;
}

test("a complete configuration gets defaults", t => {
	const c = validateDeviceConfig(good());
	t.is(c.hubPort, 8883);
	t.is(c.intervalMs, 10000);
	t.is(c.queueLimit, 16);
	t.is(c.idScope, "0ne00000000");
	t.is(c.firmwareVersion, "0.1.0");
	t.deepEqual(c.sntp, ["pool.ntp.org", "time.google.com", "time.cloudflare.com"]);
});

test("string values from mcconfig or Preference are accepted for numbers", t => {
	const raw = good() as Record<string, any>;
	raw.dps.port = "8884";
	raw.telemetry = {intervalMs: "5000"};
	const c = validateDeviceConfig(raw);
	t.is(c.dpsPort, 8884);
	t.is(c.intervalMs, 5000);
});

test("each bad field is named with a fix", t => {
	const cases: [(c: any) => void, RegExp][] = [
		[c => delete c.dps.idScope, /dps\.idScope: is missing\. Copy the ID Scope/],
		[c => c.dps.idScope = "0ne/000", /dps\.idScope: is not an ID scope/],
		[c => delete c.dps.registrationId, /dps\.registrationId: is missing/],
		[c => c.dps.registrationId = "Dev 1", /dps\.registrationId: contains " ", which DPS refuses/],
		[c => c.dps.registrationId = "a".repeat(129), /at most 128/],
		[c => c.dps.symmetricKey = "%%%notbase64", /dps\.symmetricKey: is not valid base64/],
		[c => c.dps.symmetricKey = "YWJj", /dps\.symmetricKey: decodes to only 3 bytes/],
		[c => c.dps.symmetricKey = 42, /dps\.symmetricKey: is missing/],
		[c => c.dps.port = 70000, /dps\.port: 70000 is not a TCP port/],
		[c => c.dps.host = "mqtts://x/y", /dps\.host: .* is not a host name/],
		[c => c.hub = {port: "abc"}, /hub\.port/],
		[c => c.telemetry = {intervalMs: 10}, /telemetry\.intervalMs: 10 is out of range/],
		[c => c.dps.modelId = "thermostat", /dps\.modelId: .* is not a DTDL model id/],
		[c => c.dps.registrationId = "dev-1.", /dps\.registrationId: ends in "\."/],
		[c => c.limits = {maxMessageBytes: -1}, /limits\.maxMessageBytes: -1 is out of range/],
		[c => c.dps.x509 = {certificate: new Uint8Array(64)}, /dps\.symmetricKey: is set together with an X\.509 identity/],
		[c => c.dps = "x", /dps\.idScope: is missing/],
	];
	for (const [mutate, message] of cases) {
		const raw = good();
		mutate(raw);
		fails(t, raw, message);
	}
	fails(t, null, /not an object/);
	fails(t, [], /not an object/);
	fails(t, {}, /dps\.idScope: is missing/);
});

test("fuzzed configurations never throw anything but a config error", t => {
	let seed = 7;
	const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
	const values = [undefined, null, "", " ", "x".repeat(300), 0, -1, 1.5, 1e20, NaN, true, [], {}, "0ne00000000", KEY, "dev-1", "==", "\u0000"];
	for (let i = 0; i < 500; i++) {
		const raw: any = good();
		for (const path of [["dps", "host"], ["dps", "port"], ["dps", "idScope"], ["dps", "registrationId"], ["dps", "symmetricKey"], ["hub", "port"], ["telemetry", "intervalMs"]]) {
			if (rand() < 0.3) {
				raw[path[0]] ??= {};
				raw[path[0]][path[1]] = values[Math.floor(rand() * values.length)];
			}
		}
		try {
			validateDeviceConfig(raw);
		}
		catch (e) {
			t.true(e instanceof AzureIoTError && e.code === "config", String(e));
		}
	}
	t.pass();
});

test("one table: every setting has a name NVS can hold, a device.json field, and one entry", t => {
	for (const name of SETTING_NAMES) t.true(name.length <= 15, `${name}: NVS keys are at most 15 characters`);
	const files = SETTING_NAMES.map(n => SETTINGS[n].file);
	t.is(new Set(files).size, files.length, "no two settings share a device.json field");
	t.true(Object.isFrozen(SETTINGS) && SETTING_NAMES.every(n => Object.isFrozen(SETTINGS[n])), "frozen: preloaded into flash on the device");
});

test("by name, as the firmware reads build values and Preference (strings), with errors naming the setting", t => {
	const values: Record<string, string> = {idScope: "0ne00000000", registrationId: "dev-1", symmetricKey: KEY, intervalMs: "2000", maxTwinBytes: "16384"};
	const s = checkSettings(name => values[name]);
	t.is(s.intervalMs, 2000);
	t.is(s.maxTwinBytes, 16384);
	t.is(s.maxMessageBytes, 8192);
	const error = t.throws(() => checkSettings(name => ({...values, dpsPort: "x"} as Record<string, string>)[name]));
	t.regex(error!.message, /^dpsPort: "x" is not a TCP port/);
});
