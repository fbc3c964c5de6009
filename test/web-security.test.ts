/*
 * The service API and the page are safe by default: loopback only unless asked, a token required
 * (and checked) anywhere else, no write from another site's page (Origin, Sec-Fetch-Site), no
 * answer to a request addressed to a name that is not loopback (DNS rebinding), and no key in the
 * page, its live streams, the enrollment lists or the logs unless asked for explicitly.
 */
import test from "ava";
import {spawn} from "node:child_process";
import * as http from "node:http";
import * as path from "node:path";
import {startEmulator, type Emulator} from "../emulator/index.js";
import {checkApiExposure, isLoopbackHost} from "../emulator/web/security.js";
import {chromiumAvailable, launchChromium} from "../tools/browser.js";
import {REPO_ROOT} from "../tools/sim-runner.js";
import {uniqueId} from "./helpers/e2e.js";

const TOKEN = "web-security-test-token-0123456789";

interface Reply {
	status: number;
	headers: http.IncomingHttpHeaders;
	body: string;
}

function request(base: string, method: string, p: string, options: {headers?: Record<string, string>; body?: unknown} = {}): Promise<Reply> {
	return new Promise((resolve, reject) => {
		const text = options.body === undefined ? undefined : JSON.stringify(options.body);
		const req = http.request(new URL(p, base), {method, headers: {...(text ? {"content-type": "application/json"} : {}), ...options.headers}, timeout: 10_000}, res => {
			const chunks: Buffer[] = [];
			res.on("data", c => chunks.push(c));
			res.on("end", () => resolve({status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8")}));
		});
		req.on("timeout", () => req.destroy(new Error("timed out")));
		req.on("error", reject);
		req.end(text);
	});
}

/** The first `ms` of a live stream, as text. */
function streamFor(base: string, p: string, ms: number, headers: Record<string, string> = {}): Promise<string> {
	return new Promise((resolve, reject) => {
		const req = http.get(new URL(p, base), {headers}, res => {
			let text = "";
			res.setEncoding("utf8");
			res.on("data", c => { text += c; });
			setTimeout(() => { req.destroy(); resolve(text); }, ms);
		});
		req.on("error", e => (e as NodeJS.ErrnoException).code === "ECONNRESET" ? undefined : reject(e));
	});
}

let emulator: Emulator;
const logLines: string[] = [];
test.before(async () => {
	emulator = await startEmulator({retryAfterSeconds: 1, log: line => logLines.push(line)});
});
test.after.always(async () => { await emulator?.close(); });

test("loopback names: 127.0.0.0/8, ::1 and localhost are loopback; 0.0.0.0 and others are not", t => {
	for (const h of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"]) t.true(isLoopbackHost(h), h);
	for (const h of ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "localhost.example.com"]) t.false(isLoopbackHost(h), h);
});

test("a non-loopback --api-host without --api-token refuses to start, saying what to do", async t => {
	const error = await t.throwsAsync(startEmulator({apiHost: "0.0.0.0"}));
	t.regex(error!.message, /--api-host 0\.0\.0\.0.*reachable from other machines.*--api-token/);
	t.throws(() => checkApiExposure("192.168.1.10", undefined), {message: /--api-token/});
	t.throws(() => checkApiExposure("0.0.0.0", "short"), {message: /at least 16 characters/});
	t.notThrows(() => checkApiExposure("0.0.0.0", TOKEN));
	t.notThrows(() => checkApiExposure("127.0.0.1", undefined));
});

test("the CLI refuses a non-loopback --api-host without a token, with the message and a failing exit code", async t => {
	const child = spawn(process.execPath, ["--import=tsx", path.join(REPO_ROOT, "emulator/cli.ts"), "--api-host", "0.0.0.0", "--quiet"], {cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"]});
	let stdout = "", stderr = "";
	child.stdout.on("data", c => { stdout += c; });
	child.stderr.on("data", c => { stderr += c; });
	const code = await new Promise<number | null>((resolve, reject) => {
		const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error("the CLI did not exit within 60 s")); }, 60_000);
		child.on("exit", c => { clearTimeout(timer); resolve(c); });
	});
	t.not(code, 0);
	t.is(stdout, "", "no ready line");
	t.regex(stderr, /--api-token/);
});

test("with a token every API request needs it: Bearer, or the page's cookie set from /?token= (then the address is cleaned)", async t => {
	const locked = await startEmulator({apiToken: TOKEN, retryAfterSeconds: 1});
	try {
		const base = locked.apiUrl;
		const none = await request(base, "GET", "/devices");
		t.is(none.status, 401);
		t.regex(JSON.parse(none.body).error, /Authorization: Bearer/);
		t.is((await request(base, "GET", "/", {})).status, 401, "the page too");
		t.is((await request(base, "GET", "/ui/events", {})).status, 401, "the live stream too");
		t.is((await request(base, "GET", "/devices", {headers: {authorization: "Bearer wrong-token-wrong-token"}})).status, 401);
		t.is((await request(base, "GET", "/devices", {headers: {authorization: `Bearer ${TOKEN}`}})).status, 200);
		t.is((await request(base, "POST", "/enrollments", {headers: {authorization: `Bearer ${TOKEN}`}, body: {registrationId: uniqueId("tok")}})).status, 201);

		const wrong = await request(base, "GET", "/?token=nope");
		t.is(wrong.status, 401);
		const entry = await request(base, "GET", `/?token=${encodeURIComponent(TOKEN)}&x=1`);
		t.is(entry.status, 303);
		t.is(entry.headers.location, "/?x=1", "the token leaves the address bar");
		const cookie = String(entry.headers["set-cookie"]).split(";")[0];
		t.regex(String(entry.headers["set-cookie"]), /HttpOnly; SameSite=Strict/);
		const page = await request(base, "GET", "/", {headers: {cookie}});
		t.is(page.status, 200);
		t.regex(page.headers["content-type"] ?? "", /text\/html/);
		t.is((await request(base, "GET", "/devices", {headers: {cookie}})).status, 200);
		t.false(logLines.join("\n").includes(TOKEN));

		const check = chromiumAvailable();
		if (!check.ok) {
			t.log(`the browser half is skipped: ${check.reason}`);
			return;
		}
		const browser = await launchChromium();
		try {
			const tab = await browser.newPage();
			await tab.goto(`${base}/?token=${encodeURIComponent(TOKEN)}#enrollments`);
			await tab.getByTestId("live").filter({hasText: "live"}).waitFor({timeout: 20_000});
			t.false(tab.url().includes(TOKEN));
			await tab.getByTestId("enrollment-row").first().waitFor({timeout: 20_000});
		}
		finally {
			await browser.close();
		}
	}
	finally {
		await locked.close();
	}
});

test("a write from another site's page is refused (Origin, Sec-Fetch-Site); the page's own and non-browser clients are not", async t => {
	const base = emulator.apiUrl;
	const own = new URL(base).host;
	const id = uniqueId("origin");
	const evil = await request(base, "POST", "/enrollments", {headers: {origin: "http://evil.example"}, body: {registrationId: id}});
	t.is(evil.status, 403);
	t.regex(JSON.parse(evil.body).error, /Cross-origin write refused/);
	t.false(emulator.enrollments().some(e => e.registrationId === id), "nothing was created");
	t.is((await request(base, "POST", "/enrollments", {headers: {origin: "null"}, body: {registrationId: id}})).status, 403);
	t.is((await request(base, "POST", "/enrollments", {headers: {"sec-fetch-site": "cross-site"}, body: {registrationId: id}})).status, 403);
	t.is((await request(base, "POST", "/enrollments", {headers: {origin: `http://localhost:1`}, body: {registrationId: id}})).status, 403, "another port is another origin");
	t.is((await request(base, "POST", "/faults", {headers: {origin: "http://evil.example"}, body: {kind: "throttle"}})).status, 403);
	t.is((await request(base, "DELETE", "/faults", {headers: {origin: "http://evil.example"}})).status, 403);
	t.deepEqual(emulator.faults(), []);

	t.is((await request(base, "POST", "/enrollments", {headers: {origin: `http://${own}`, "sec-fetch-site": "same-origin"}, body: {registrationId: id}})).status, 201);
	t.is((await request(base, "POST", "/enrollments", {body: {registrationId: uniqueId("curl")}})).status, 201, "curl sends neither header");
	// Reads carry no CORS header: another site's script cannot read them.
	const read = await request(base, "GET", "/devices", {headers: {origin: "http://evil.example"}});
	t.is(read.headers["access-control-allow-origin"], undefined);
});

test("a request addressed to a name that is not loopback (DNS rebinding) is refused", async t => {
	const port = new URL(emulator.apiUrl).port;
	const rebound = await request(emulator.apiUrl, "GET", "/enrollments", {headers: {host: `evil.example:${port}`}});
	t.is(rebound.status, 421);
	t.is((await request(emulator.apiUrl, "GET", "/enrollments", {headers: {host: `localhost:${port}`}})).status, 200);
});

test("no key in the page, its streams, the lists or the logs; the key only from the explicit call", async t => {
	const id = uniqueId("nokey");
	const {symmetricKey} = emulator.addEnrollment({registrationId: id});
	const groupId = uniqueId("nokey-group");
	const {symmetricKey: groupKey} = emulator.addEnrollmentGroup({groupId});
	const hub = emulator.addDevice({deviceId: uniqueId("nokey-hub")});
	const hubKey = (hub.authentication as {symmetricKey: string}).symmetricKey;
	const secrets = [symmetricKey, groupKey, hubKey];
	const base = emulator.apiUrl;
	const leaks = (text: string) => secrets.filter(s => text.includes(s)).length;

	const html = await request(base, "GET", "/");
	t.is(html.status, 200);
	t.regex(String(html.headers["content-security-policy"]), /default-src 'none'/);
	t.is(html.headers["x-frame-options"], "DENY");
	const script = await request(base, "GET", "/ui/assets/app.js");
	t.is(script.status, 200);
	const lists = (await request(base, "GET", "/enrollments")).body + (await request(base, "GET", "/enrollment-groups")).body + (await request(base, "GET", "/devices")).body;
	t.true(lists.includes(id) && lists.includes(groupId), "the lists have the enrollments");
	const fleet = await streamFor(base, "/ui/events", 1500);
	t.true(fleet.includes(id), "the stream has the enrollment");
	const device = await streamFor(base, `/ui/events/device/${encodeURIComponent(hub.deviceId)}`, 800);
	t.regex(device, /"type":"snapshot"/);
	t.is(leaks(html.body + script.body + lists + fleet + device), 0, "no key anywhere");

	const shown = JSON.parse((await request(base, "POST", `/enrollments/${encodeURIComponent(id)}/attestationmechanism`)).body);
	t.is(shown.type, "symmetricKey");
	t.true(shown.symmetricKey.primaryKey === symmetricKey, "the explicit call gives the key");
	const shownGroup = JSON.parse((await request(base, "POST", `/enrollment-groups/${encodeURIComponent(groupId)}/attestationmechanism`)).body);
	t.true(shownGroup.symmetricKey.primaryKey === groupKey);
	t.is((await request(base, "POST", `/enrollments/${encodeURIComponent(id)}/attestationmechanism`, {headers: {origin: "http://evil.example"}})).status, 403, "not for another site");
	t.is((await request(base, "GET", `/enrollments/${encodeURIComponent(id)}/attestationmechanism`)).status, 405, "not by a GET (a link, a prefetch)");

	const check = chromiumAvailable();
	if (check.ok) {
		const browser = await launchChromium();
		try {
			const page = await browser.newPage();
			await page.goto(`${emulator.pageUrl}#enrollments`);
			await page.locator(`[data-testid=enrollment-row][data-id="${id}"]`).waitFor({timeout: 20_000});
			await page.locator(`[data-testid=group-row][data-id="${groupId}"]`).waitFor();
			t.is(leaks(await page.content()), 0, "the rendered page has no key before it is asked for");
			await page.getByTestId(`show-key-${id}`).click();
			const key = await page.getByTestId(`key-${id}`).innerText();
			t.true(key === symmetricKey, "Show key shows it");
			t.false((await page.content()).includes(groupKey), "only the one asked for");
		}
		finally {
			await browser.close();
		}
	}
	else t.log(`the browser half is skipped: ${check.reason}`);
	t.is(leaks(logLines.join("\n")), 0, "no key in the emulator's log");
});
