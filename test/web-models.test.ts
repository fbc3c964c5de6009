/*
 * The Plug and Play models the page reads a device's commands from (emulator/web/models.ts): found
 * at the models repository's path for a DTMI or by "@id" anywhere in the directory, with the
 * commands of their components named as the device receives them.
 */
import test from "ava";
import * as path from "node:path";
import {ModelStore, exampleOf, isDtmi} from "../emulator/web/models.js";
import {REPO_ROOT} from "../tools/sim-runner.js";

const store = new ModelStore(path.join(REPO_ROOT, "test/fixtures/models"));

test("a model at its repository path, with a component's interface found by @id elsewhere", t => {
	const model = store.find("dtmi:moddable:azureiot:Reference;1")!;
	t.truthy(model);
	t.is(model.file, path.join("dtmi", "moddable", "azureiot", "reference-1.json"));
	t.is(model.displayName, "Reference firmware");
	t.deepEqual(model.commands.map(c => c.method), ["reboot", "reprovision", "setTelemetryInterval", "diagnostics*ping"]);
	const ping = model.commands.find(c => c.method === "diagnostics*ping")!;
	t.is(ping.component, "diagnostics");
	t.is(ping.example, "");
	t.deepEqual(model.commands.find(c => c.name === "setTelemetryInterval")!.example, {intervalMs: 0});
	t.is(model.commands.find(c => c.name === "reboot")!.example, undefined, "no request, no payload");
	t.deepEqual(model.writableProperties.map(p => [p.component, p.name]), [[undefined, "telemetryIntervalMs"], ["diagnostics", "level"]]);
	t.deepEqual(model.telemetry.map(p => p.name), ["seq", "uptimeMs", "bootCount", "firmwareVersion"]);
});

test("an interface found only by its @id; an unknown or malformed id, or no directory, finds nothing", t => {
	t.deepEqual(store.find("dtmi:moddable:azureiot:Diagnostics;1")!.commands.map(c => c.method), ["ping"]);
	t.is(store.find("dtmi:moddable:azureiot:Nothing;1"), undefined);
	t.is(store.find("../../etc/passwd"), undefined);
	t.false(isDtmi("dtmi:a:b"));
	t.true(isDtmi("dtmi:com:example:Thermostat;1"));
	t.is(new ModelStore(undefined).find("dtmi:moddable:azureiot:Reference;1"), undefined);
	t.is(new ModelStore("/nonexistent/models").dir, undefined);
});

test("example payloads follow the schema", t => {
	t.is(exampleOf("double"), 0);
	t.is(exampleOf("boolean"), false);
	t.is(exampleOf("duration"), "PT1M");
	t.deepEqual(exampleOf({"@type": "Object", fields: [{name: "a", schema: "string"}, {name: "b", schema: {"@type": "Object", fields: [{name: "c", schema: "integer"}]}}]}), {a: "", b: {c: 0}});
	t.is(exampleOf({"@type": "Enum", valueSchema: "integer", enumValues: [{name: "x", enumValue: 2}]}), 2);
	t.deepEqual(exampleOf({"@type": "Array", elementSchema: "double"}), []);
});
