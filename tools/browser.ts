/*
 * Debian's Chromium driven by playwright-core, for the page's tests, its screenshot and its
 * benchmark. Headless, and quiet on the network: no component updates, no background requests,
 * no first-run work, no sandbox (the tests run as root).
 */
import * as fs from "node:fs";
import type {Browser} from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
	"--no-sandbox",
	"--disable-background-networking",
	"--disable-component-update",
	"--no-first-run",
	"--no-default-browser-check",
	"--disable-default-apps",
	"--disable-sync",
	"--disable-extensions",
	"--disable-dev-shm-usage",
	"--metrics-recording-only",
	"--mute-audio",
];

/** Whether Chromium is here, or why not and how to install it. */
export function chromiumAvailable(): {ok: true} | {ok: false; reason: string} {
	if (!fs.existsSync(CHROMIUM)) return {ok: false, reason: `${CHROMIUM} is missing: install Debian's Chromium (apt-get install chromium), or set CHROMIUM_PATH.`};
	return {ok: true};
}

export async function launchChromium(): Promise<Browser> {
	const {chromium} = await import("playwright-core");
	return chromium.launch({executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 60_000});
}
