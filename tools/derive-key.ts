/*
 * `npm run derive-key -- --group-key K --registration-id R [--registration-id R2 …]`
 * Prints each device's key for an enrollment group, so the group key stays at the factory and never
 * goes on a device. Uses the same derivation as the core (src/sas.ts).
 */
import {Command} from "commander";
import {deriveDeviceKey} from "../src/sas.js";
import {checkRegistrationId} from "../src/validate.js";
import {createNodeHost} from "../hosts/node/host.js";

const program = new Command()
	.name("derive-key")
	.description("Derive per-device keys from an enrollment group's key (base64(HMAC-SHA256(groupKey, registrationId))).")
	.requiredOption("--group-key <key>", "the enrollment group's primary or secondary key (base64); or set GROUP_KEY", process.env.GROUP_KEY)
	.requiredOption("--registration-id <id...>", "one or more registration ids")
	.option("--json", "print JSON lines {registrationId, symmetricKey}")
	.parse();

const options = program.opts<{groupKey: string; registrationId: string[]; json?: boolean}>();
try {
	const hmac = createNodeHost().hmacSha256;
	for (const id of options.registrationId) {
		checkRegistrationId(id, "--registration-id");
		const key = deriveDeviceKey(options.groupKey, id, hmac);
		console.log(options.json ? JSON.stringify({registrationId: id, symmetricKey: key}) : `${id} ${key}`);
	}
}
catch (e) {
	console.error(`derive-key: ${(e as Error).message}`);
	process.exit(2);
}
