/*
 * `npm start` on the Node host (the path a newcomer without the SDK takes): the whole flow shows,
 * the device is labelled as not the firmware, and the process ends cleanly.
 */
import test from "ava";
import {spawn} from "node:child_process";

test("npm start --node shows the whole flow and exits cleanly", async t => {
	const child = spawn(process.execPath, ["--import=tsx", "tools/start.ts", "--node", "--duration", "20"], {stdio: ["ignore", "pipe", "pipe"]});
	let output = "";
	child.stdout.on("data", d => { output += d; });
	child.stderr.on("data", d => { output += d; });
	const code = await new Promise<number | null>(resolve => {
		const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
		child.on("close", c => { clearTimeout(timer); resolve(c); });
	});
	t.is(code, 0, output);
	t.regex(output, /NOT the firmware/);
	t.regex(output, /The emulator's page: \S*http:\/\/127\.0\.0\.1:\d+\//, "the page's address is printed");
	for (const step of ["dps.assigned", "hub.connected", "telemetry.acked", "method.invoked", "twin.desired", "c2d.received", "Registration result:", "The whole flow ran"])
		t.true(output.includes(step), `${step} missing from:\n${output}`);
	t.notRegex(output, /sig=[A-Za-z0-9%]{20,}/, "no SAS signature is printed");
});
