/*
 * `npx tsx tools/settings-table.ts`: the README's table of settings ("Your own application"),
 * made from the one table in src/settings.ts: each setting's name (the build value and the
 * Preference key), its device.json field, its default (what its check gives when it is unset) and
 * whether it is secret, build-only or bytes. Only what a setting means is written here, and every
 * setting must have it. test/readme.test.ts checks that the README holds exactly this table.
 */
import {pathToFileURL} from "node:url";
import {SETTINGS, SETTING_NAMES, type SettingName} from "../src/settings.js";

const MEANING: Readonly<Record<SettingName, string>> = {
	dpsHost: "DPS endpoint",
	dpsPort: "DPS port",
	idScope: "the DPS instance's ID scope",
	registrationId: "the device's registration id: up to 128 of `a-z A-Z 0-9 - . _ :`",
	symmetricKey: "the enrollment's key, or for a group the device's key from `npm run derive-key` (never the group key); or an X.509 identity instead",
	modelId: "IoT Plug and Play model id, sent to DPS and the hub; an application's `modelId` option wins",
	hubPort: "the hub's port",
	intervalMs: "the telemetry interval applications read from `device.settings`, ms (1000 to 86400000)",
	queueLimit: "telemetry messages held while the hub is unreachable; beyond it new ones are refused (`queue.full`)",
	maxMessageBytes: "largest cloud-to-device message taken; a larger one is skipped unread, rejected and reported",
	maxMethodBytes: "largest command payload taken; a larger one gets 413",
	maxTwinBytes: "largest twin document or desired patch taken",
	ssid: "the ESP32's Wi-Fi network (the simulator uses the computer's)",
	password: "its password",
	sntp: "time servers, comma-separated (the clock is set before any TLS)",
	firmwareVersion: "the image's version (`device.settings.firmwareVersion`)",
	x509Cert: "X.509 identity: the device's certificate",
	x509Chain: "its intermediates, one after the other",
	x509Key: "its private key (PKCS#8)",
	aduManufacturer: "Device Update: the device's manufacturer, matched against an update's compatibility; set, it switches Device Update on",
	aduModel: "Device Update: the device's model, matched likewise",
	aduProvider: "the running image's update provider (default: aduManufacturer)",
	aduName: "the running image's update name (default: aduModel); its version is firmwareVersion",
	aduRootKey: "a Device Update root key trusted besides Microsoft's: the emulator's, in builds for it only",
	aduRollbackMs: "a new image that has not reached the hub after this long goes back to the previous one, ms",
};

function defaultOf(name: SettingName): string {
	let value: unknown;
	try {
		value = SETTINGS[name].check(undefined, name);
	}
	catch {
		return "required";
	}
	if (value === undefined) return "–";
	return `\`${Array.isArray(value) ? value.join(",") : String(value)}\``;
}

export function settingsTable(): string {
	const rows = ["| setting (build value, Preference key) | device.json | default | kind | meaning |", "|---|---|---|---|---|"];
	for (const name of SETTING_NAMES) {
		const spec = SETTINGS[name];
		const meaning = MEANING[name];
		if (!meaning) throw new Error(`tools/settings-table.ts: say what the setting ${name} means`);
		const kind = [spec.secret ? "secret" : "", spec.buildOnly ? "build only" : "", spec.bytes ? "DER bytes" : ""].filter(Boolean).join(", ");
		rows.push(`| \`${name}\` | \`${spec.file}\` | ${defaultOf(name)} | ${kind} | ${meaning} |`);
	}
	return rows.join("\n");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) process.stdout.write(settingsTable() + "\n");
