/*
 * The application API (src/device.ts, `azure-iot/device`) as the README promises it, on the Node
 * platform against the emulator (loopback): options checked before anything is taken; callbacks
 * never called from inside the call that triggered them; an idempotent close(); telemetry sent
 * before the connection queued (bounded) and delivered; writable properties from the initial twin
 * and from updates, root and per component, acknowledged {"value","ac","av","ad"}; commands, with
 * a 404 and a JSON message for what the application does not know. What the hub received is read
 * from the emulator.
 */
import test from "ava";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {Device, type DeviceOptions, type DeviceState} from "../src/device.js";
import {AzureIoTError} from "../src/errors.js";
import {createNodePlatform} from "../hosts/node/platform.js";
import type {SettingName} from "../src/settings.js";
import {EventLog, eventually, startRig, uniqueId, type Rig} from "./helpers/e2e.js";

let rig: Rig;
let dir: string;
const devices: Device[] = [];

test.before(async () => {
	rig = await startRig();
	dir = fs.mkdtempSync(path.join(os.tmpdir(), "device-test-"));
});

test.after.always(async () => {
	for (const d of devices) d.close();
	await new Promise(r => setTimeout(r, 200));
	await rig?.emulator.close();
	if (dir) fs.rmSync(dir, {recursive: true, force: true});
});

interface Made {
	device: Device;
	id: string;
	log: EventLog;
	states: DeviceState[];
}

/** A Device on the Node platform for a fresh enrollment (or the settings given). */
function make(options: Partial<DeviceOptions> & {enrollment?: {initialTwin?: object}; settings?: Partial<Record<SettingName, unknown>>} = {}): Made {
	const id = uniqueId("device-api");
	const {symmetricKey} = rig.emulator.addEnrollment({registrationId: id, ...options.enrollment});
	const log = new EventLog();
	const states: DeviceState[] = [];
	const platform = createNodePlatform({
		roots: rig.roots, emit: log.emit, print: () => {}, storageFile: path.join(dir, `${id}.json`),
		settings: {dpsHost: rig.emulator.host, dpsPort: rig.emulator.port, idScope: rig.emulator.idScope, registrationId: id, symmetricKey, hubPort: rig.emulator.port},
	});
	const {enrollment: _e, onStateChange, ...rest} = options;
	const device = new Device({
		platform,
		...rest,
		onStateChange(state, info) {
			states.push(state);
			onStateChange?.call(this, state, info);
		},
	});
	devices.push(device);
	return {device, id, log, states};
}

function reported(id: string): Record<string, any> {
	// Empty until the device has registered.
	return rig.emulator.devices().some(d => d.deviceId === id) ? rig.emulator.twin(id).reported as Record<string, any> : {};
}

test("options are checked before anything is taken: each mistake throws a config error naming the option", t => {
	const platform = createNodePlatform({roots: rig.roots, emit: () => {}, settings: {}});
	const cases: [unknown, RegExp][] = [
		[undefined, /options/],
		[{}, /platform/],
		[{platform: {}}, /platform/],
		[{platform, onCommand: "yes"}, /onCommand/],
		[{platform, components: ["thermostat 1"]}, /components/],
		[{platform, components: "thermostat1"}, /components/],
		[{platform, settings: {idscope: "0ne"}}, /settings\.idscope.*is not a setting/],
		[{platform, modelId: "thermostat"}, /modelId|dtmi/],
	];
	for (const [options, message] of cases) {
		const error = t.throws(() => new Device(options as DeviceOptions), {instanceOf: AzureIoTError});
		t.is(error?.code, "config");
		t.regex(error!.message, message);
	}
});

test("callbacks are never called from inside the call that triggered them, close() is idempotent", async t => {
	let inCall = false;
	const sync: string[] = [];
	const note = (what: string) => { if (inCall) sync.push(what); };
	const errors: AzureIoTError[] = [];
	const states: DeviceState[] = [];
	// A bad setting: the device reports it (onError, "failed") after the constructor has returned.
	const platform = createNodePlatform({roots: rig.roots, emit: () => {}, settings: {idScope: "not a scope", registrationId: "x", symmetricKey: "AAAA"}});
	inCall = true;
	const device = new Device({
		platform,
		components: ["c1"],
		onStateChange(state) { note(`state ${state}`); states.push(state); },
		onError(error) { note("onError"); errors.push(error); },
	});
	inCall = false;
	await eventually(() => states.includes("failed"), 5000, "failed");
	t.is(errors[0]?.code, "config");
	t.regex(errors[0].message, /idScope/);

	const results: string[] = [];
	inCall = true;
	device.send({x: 1}, {component: "nope"}, error => { note("send"); results.push(`send ${error?.code}`); });
	device.report(null as unknown as Record<string, unknown>, undefined, error => { note("report"); results.push(`report ${error?.code}`); });
	device.report({a: 1}, {component: "nope"}, error => { note("report component"); results.push(`report component ${error?.code}`); });
	device.acknowledge({name: "x"} as never, 200, error => { note("acknowledge"); results.push(`acknowledge ${error?.code}`); });
	device.close();
	device.close();
	device.send({x: 2}, undefined, error => { note("send after close"); results.push(`closed ${error?.code}`); });
	inCall = false;
	t.deepEqual(results, [], "nothing was called back synchronously");
	await eventually(() => states.includes("closed") && results.length === 5, 5000, "the callbacks");
	t.deepEqual(results.sort(), ["acknowledge config", "closed device.closed", "report component config", "report config", "send config"]);
	t.is(states.filter(s => s === "closed").length, 1, "closed once, however often close() is called");
	t.is(device.state, "closed");
	t.deepEqual(sync, []);
});

test("telemetry sent before the connection waits for it (bounded by queueLimit) and reaches the hub", async t => {
	t.timeout(60_000);
	const {device, id, states} = make({settings: {queueLimit: 2}});
	t.is(device.state, "starting");
	const acked: string[] = [];
	const refused: string[] = [];
	let inCall = true;
	for (const n of [1, 2, 3]) {
		device.send({early: n}, {properties: {n: String(n)}}, (error, result) => {
			t.false(inCall, "not from inside send()");
			if (error) refused.push(`${n} ${error.code}`);
			else acked.push(`${n} ${result?.messageId}`);
		});
	}
	inCall = false;
	await eventually(() => acked.length === 2, 30_000, "the two queued messages acknowledged");
	t.deepEqual(refused, ["3 queue.full"], "the third did not fit in the queue, and was said so");
	const bodies = rig.emulator.telemetry(id).map(r => JSON.parse(r.body));
	t.deepEqual(bodies.slice(0, 2), [{early: 1}, {early: 2}]);
	t.deepEqual(rig.emulator.telemetry(id)[0].properties, {n: "1"});
	t.deepEqual(states.slice(0, 3), ["provisioning", "connecting", "connected"]);
});

test("writable properties from the initial twin and from updates, root and per component, are acknowledged {value, ac, av, ad}", async t => {
	t.timeout(60_000);
	const seen: string[] = [];
	const {device, id, log} = make({
		enrollment: {initialTwin: {properties: {desired: {speed: 3}}}},
		components: ["fan"],
		onWritable(property) {
			seen.push(`${property.component ?? ""}/${property.name}=${JSON.stringify(property.value)}@${property.version}`);
			if (property.name === "later") return undefined;
			if (property.name === "broken") throw new Error("the motor is stuck");
			if (property.name === "mode" && property.value !== "auto") return {status: 400, value: "auto", description: "only auto"};
			return property.component ? {status: 200, description: "applied"} : 200;
		},
	});
	const initial = await eventually(() => reported(id).speed, 30_000, "the acknowledgement of the initial twin");
	const desiredVersion = (rig.emulator.twin(id).desired as {$version: number}).$version;
	t.deepEqual(initial, {value: 3, ac: 200, av: desiredVersion});

	const patch = rig.emulator.patchDesired(id, {speed: 5, mode: "turbo", fan: {rpm: 1200}, later: true});
	await eventually(() => reported(id).speed?.av === patch.version && reported(id).fan?.rpm, 30_000, "the acknowledgements of the update");
	const r = reported(id);
	t.deepEqual(r.speed, {value: 5, ac: 200, av: patch.version});
	t.deepEqual(r.mode, {value: "auto", ac: 400, av: patch.version, ad: "only auto"}, "refused with the value in use");
	t.deepEqual(r.fan, {__t: "c", rpm: {value: 1200, ac: 200, av: patch.version, ad: "applied"}});
	t.is(r.later, undefined, "nothing returned: no acknowledgement yet");
	t.true(seen.includes(`fan/rpm=1200@${patch.version}`), seen.join(", "));

	// Acknowledged later by the application, as an update in progress.
	device.acknowledge({name: "later", value: true, version: patch.version}, {status: 202, description: "in progress"});
	t.deepEqual(await eventually(() => reported(id).later, 30_000, "the later acknowledgement"), {value: true, ac: 202, av: patch.version, ad: "in progress"});

	const failing = rig.emulator.patchDesired(id, {broken: 1});
	const failed = await eventually(() => reported(id).broken, 30_000, "the failure's acknowledgement");
	t.like(failed, {value: 1, ac: 500, av: failing.version});
	t.regex(failed.ad, /the motor is stuck/);
	t.true(log.count("twin.reported") >= 3);
});

test("commands: the application's answer, per component; unknown commands and components get 404 with a JSON message", async t => {
	t.timeout(60_000);
	const calls: string[] = [];
	const {id} = make({
		components: ["thermostat1"],
		async onCommand(command) {
			calls.push(`${command.component ?? ""}*${command.name} ${JSON.stringify(command.payload)}`);
			if (command.name === "echo") return {status: 200, payload: {got: command.payload, component: command.component ?? null}};
			if (command.name === "slow") {
				await new Promise(r => setTimeout(r, 100));
				return {status: 202, payload: "later"};
			}
			return undefined;
		},
	});
	const bare = make(); // no onCommand at all
	await eventually(() => rig.emulator.devices().find(d => d.deviceId === id)?.connected && rig.emulator.devices().find(d => d.deviceId === bare.id)?.connected, 30_000, "both connected");
	await eventually(() => rig.emulator.devices().find(d => d.deviceId === id)?.subscriptions.includes("$iothub/methods/POST/#"), 30_000, "subscribed");

	t.deepEqual(await rig.emulator.invokeMethod(id, "echo", {a: 1}, 20), {status: 200, payload: {got: {a: 1}, component: null}});
	t.deepEqual(await rig.emulator.invokeMethod(id, "thermostat1*echo", "x", 20), {status: 200, payload: {got: "x", component: "thermostat1"}});
	t.deepEqual(await rig.emulator.invokeMethod(id, "slow", null, 20), {status: 202, payload: "later"});
	const unknown = await rig.emulator.invokeMethod(id, "selfDestruct", null, 20);
	t.is(unknown.status, 404);
	t.regex((unknown.payload as {message: string}).message, /selfDestruct/);
	const noComponent = await rig.emulator.invokeMethod(id, "thermostat9*echo", null, 20);
	t.is(noComponent.status, 404);
	t.regex((noComponent.payload as {message: string}).message, /thermostat9/);
	t.false(calls.some(c => c.startsWith("thermostat9")), "a component the model does not have never reaches the application");

	await eventually(() => rig.emulator.devices().find(d => d.deviceId === bare.id)?.subscriptions.includes("$iothub/methods/POST/#"), 30_000, "subscribed");
	const none = await rig.emulator.invokeMethod(bare.id, "reboot", null, 20);
	t.is(none.status, 404);
	t.regex((none.payload as {message: string}).message, /reboot/);
});
