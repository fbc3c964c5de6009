/*
 * `npm run commission -- --id-scope S --registration-id R (--group-key K | --symmetric-key K) --out nvs.csv`
 *
 * One firmware image, a distinct identity per device: this writes the device's identity as an
 * ESP-IDF NVS partition CSV (namespace "azure", the Preference domain the firmware reads), which
 * ESP-IDF's nvs_partition_gen.py turns into a partition image to flash beside the firmware. With
 * --group-key the device key is derived here, at the factory, so the group key never goes on a
 * device. Several --registration-id values give one CSV per device (R.csv in --out-dir).
 */
import {Command} from "commander";
import * as fs from "node:fs";
import * as path from "node:path";
import {deriveDeviceKey} from "../src/sas.js";
import {checkIdScope, checkKey, checkRegistrationId} from "../src/validate.js";
import {createNodeHost} from "../hosts/node/host.js";

const program = new Command()
	.name("commission")
	.description("Write per-device identities as ESP-IDF NVS CSV files (Preference domain \"azure\")")
	.requiredOption("--id-scope <scope>", "the DPS instance's ID scope")
	.requiredOption("--registration-id <id...>", "one or more registration ids")
	.option("--group-key <key>", "enrollment group key (base64): each device gets its derived key; or set GROUP_KEY", process.env.GROUP_KEY)
	.option("--symmetric-key <key>", "an individual enrollment's key (one registration id only)")
	.option("--dps-host <host>", "DPS host name", "global.azure-devices-provisioning.net")
	.option("--model-id <dtmi>", "IoT Plug and Play model id")
	.option("--out-dir <dir>", "where to write <registrationId>.csv", "commission")
	.parse();

const o = program.opts<{idScope: string; registrationId: string[]; groupKey?: string; symmetricKey?: string; dpsHost: string; modelId?: string; outDir: string}>();

function csvField(value: string): string {
	return /[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

try {
	checkIdScope(o.idScope, "--id-scope");
	if (!o.groupKey === !o.symmetricKey) throw new Error("give exactly one of --group-key (enrollment group) or --symmetric-key (individual enrollment)");
	if (o.symmetricKey && o.registrationId.length !== 1) throw new Error("--symmetric-key belongs to one individual enrollment: give one --registration-id");
	if (o.symmetricKey) checkKey(o.symmetricKey, "--symmetric-key");
	fs.mkdirSync(o.outDir, {recursive: true});
	const hmac = createNodeHost().hmacSha256;
	for (const id of o.registrationId) {
		checkRegistrationId(id, "--registration-id");
		const key = o.groupKey ? deriveDeviceKey(o.groupKey, id, hmac) : o.symmetricKey!;
		const rows = [
			["key", "type", "encoding", "value"],
			["azure", "namespace", "", ""],
			["dpsHost", "data", "string", o.dpsHost],
			["idScope", "data", "string", o.idScope],
			["registrationId", "data", "string", id],
			["symmetricKey", "data", "string", key],
			...(o.modelId ? [["modelId", "data", "string", o.modelId]] : []),
		];
		const file = path.join(o.outDir, `${id}.csv`);
		fs.writeFileSync(file, rows.map(r => r.map(csvField).join(",")).join("\n") + "\n", {mode: 0o600});
		console.log(`${id}: ${file}`);
	}
	console.log(`\nFor each device:\n  python $IDF_PATH/components/nvs_flash/nvs_partition_generator/nvs_partition_gen.py generate <id>.csv <id>-nvs.bin 0x6000\n  esptool.py --port /dev/ttyUSB0 write_flash 0x9000 <id>-nvs.bin\n(0x9000/0x6000: the nvs partition of the SDK's default ESP32 partition table.) The files hold device keys: keep them out of version control and delete them after flashing.`);
}
catch (e) {
	console.error(`commission: ${(e as Error).message}`);
	process.exit(2);
}
