/*
 * What the README's "Your own application" shows is what the repository holds: the complete
 * minimal application is examples/minimal/main.ts byte for byte (test/examples.test.ts builds and
 * runs that file), the include lines are that example's manifest's, the settings table is the one
 * tools/settings-table.ts makes from src/settings.ts, and every example is listed.
 */
import test from "ava";
import * as fs from "node:fs";
import * as path from "node:path";
import {REPO_ROOT} from "../tools/sim-runner.js";
import {settingsTable} from "../tools/settings-table.js";

const readme = fs.readFileSync(path.join(REPO_ROOT, "README.md"), "utf8");

function section(title: string): string {
	const start = readme.indexOf(`\n## ${title}\n`);
	if (start < 0) throw new Error(`README.md has no section "## ${title}"`);
	const end = readme.indexOf("\n## ", start + 4);
	return readme.slice(start, end < 0 ? undefined : end);
}

/** The fenced blocks of a language in a piece of markdown, their text exactly. */
function blocks(markdown: string, language: string): string[] {
	const out: string[] = [];
	const fence = "```" + language + "\n";
	for (let at = markdown.indexOf(fence); at >= 0; at = markdown.indexOf(fence, at)) {
		const start = at + fence.length;
		const end = markdown.indexOf("\n```", start - 1);
		out.push(markdown.slice(start, end + 1));
		at = end + 4;
	}
	return out;
}

const own = section("Your own application");

test("the README's complete application is examples/minimal/main.ts, byte for byte", t => {
	const code = blocks(own, "ts");
	t.is(code.length, 1, "one TypeScript block in the section");
	const main = fs.readFileSync(path.join(REPO_ROOT, "examples/minimal/main.ts"), "utf8");
	t.is(code[0], main);
	const lines = main.trimEnd().split("\n").length;
	t.true(lines >= 30 && lines <= 50, `about 40 lines (${lines})`);
});

test("the README's include line is the minimal example's manifest", t => {
	const json = blocks(own, "json");
	t.is(json.length, 1);
	const shown = JSON.parse(json[0]);
	const manifest = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "examples/minimal/manifest.json"), "utf8"));
	t.deepEqual(shown.build, manifest.build);
	t.deepEqual(shown.include, manifest.include);
	t.deepEqual(shown.modules, manifest.modules);
	t.deepEqual(manifest.include, ["$(AZURE_IOT)/src/manifest.json"], "one include line");
	for (const dir of fs.readdirSync(path.join(REPO_ROOT, "examples"))) {
		const file = path.join(REPO_ROOT, "examples", dir, "manifest.json");
		if (!fs.existsSync(file)) continue;
		const m = JSON.parse(fs.readFileSync(file, "utf8"));
		t.deepEqual([m.build, m.include], [{"AZURE_IOT ?=": "./../.."}, ["$(AZURE_IOT)/src/manifest.json"]], `examples/${dir} includes the library the same way`);
	}
});

test("the README's settings table is the one src/settings.ts makes (npx tsx tools/settings-table.ts)", t => {
	t.true(own.includes("\n" + settingsTable() + "\n"), "regenerate it with npx tsx tools/settings-table.ts and paste it into README.md");
});

test("the README lists every example and how to run it", t => {
	for (const dir of fs.readdirSync(path.join(REPO_ROOT, "examples"))) {
		if (!fs.existsSync(path.join(REPO_ROOT, "examples", dir, "manifest.json"))) continue;
		t.true(own.includes(`\`examples/${dir}\``), dir);
	}
	for (const command of ["npm run sim -- --app examples/thermostat --config device.json", "npm start -- --app examples/thermostat"])
		t.true(own.includes(command), command);
});
