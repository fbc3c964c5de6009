/*
 * `npm run commission -- --id-scope S --registration-id R (--group-key K | --symmetric-key K) --out-dir D`
 * `npm run commission -- --id-scope S --registration-id R --x509 [--ca-dir C --create-ca [--intermediate]] --out-dir D`
 * `npm run commission -- --ca-dir C --verification-code CODE` (proof of possession for DPS or the hub)
 *
 * One firmware image, a distinct identity per device: this writes the device's identity as an
 * ESP-IDF NVS partition CSV (namespace "azure", the Preference domain the firmware reads), which
 * ESP-IDF's nvs_partition_gen.py turns into a partition image to flash beside the firmware. With
 * --group-key the device key is derived here, at the factory, so the group key never goes on a
 * device. With --x509 each device gets its own key and certificate from the fleet CA in --ca-dir
 * (x509Cert, x509Chain and x509Key as DER blobs), plus PEM files for Node. Several
 * --registration-id values give one CSV per device (R.csv in --out-dir).
 */
import {Command, InvalidArgumentError} from "commander";
import * as fs from "node:fs";
import * as path from "node:path";
import {deriveDeviceKey} from "../src/sas.js";
import {checkIdScope, checkKey, checkRegistrationId} from "../src/validate.js";
import {createNodeHost} from "../hosts/node/host.js";
import {createFleetCa, fleetCaFiles, issueDevice, loadFleetCa, verificationCertificate, writePrivate} from "./fleet-ca.js";

function positive(value: string): number {
	const n = Number(value);
	if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError("expected a whole number of days, at least 1.");
	return n;
}

const program = new Command()
	.name("commission")
	.description("Write per-device identities as ESP-IDF NVS CSV files (Preference domain \"azure\")")
	.option("--id-scope <scope>", "the DPS instance's ID scope")
	.option("--registration-id <id...>", "one or more registration ids")
	.option("--group-key <key>", "enrollment group key (base64): each device gets its derived key; or set GROUP_KEY", process.env.GROUP_KEY)
	.option("--symmetric-key <key>", "an individual enrollment's key (one registration id only)")
	.option("--x509", "issue each device its own certificate from the fleet CA in --ca-dir instead of a key")
	.option("--ca-dir <dir>", "the fleet CA's directory (root, optional intermediate, their keys)", "fleet-ca")
	.option("--create-ca", "create the fleet CA in --ca-dir first (refuses to replace one)")
	.option("--intermediate", "with --create-ca: an intermediate CA under the root, which then issues the devices")
	.option("--ca-name <name>", "with --create-ca: the name in the CAs' subjects", "Fleet")
	.option("--days <n>", "validity of device certificates in days", positive, 365)
	.option("--verification-code <code>", "write the proof-of-possession certificate for this DPS/hub verification code (signed by the root)")
	.option("--dps-host <host>", "DPS host name", "global.azure-devices-provisioning.net")
	.option("--model-id <dtmi>", "IoT Plug and Play model id")
	.option("--out-dir <dir>", "where to write <registrationId>.csv", "commission")
	.parse();

const o = program.opts<{
	idScope?: string; registrationId?: string[]; groupKey?: string; symmetricKey?: string; x509?: boolean; caDir: string; createCa?: boolean;
	intermediate?: boolean; caName: string; days: number; verificationCode?: string; dpsHost: string; modelId?: string; outDir: string;
}>();

function csvField(value: string): string {
	return /[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

function writeCsv(id: string, rows: string[][]): string {
	const file = path.join(o.outDir, `${id}.csv`);
	const all = [["key", "type", "encoding", "value"], ["azure", "namespace", "", ""], ...rows];
	fs.writeFileSync(file, all.map(r => r.map(csvField).join(",")).join("\n") + "\n", {mode: 0o600});
	return file;
}

const FLASH_STEPS = `For each device:
  python $IDF_PATH/components/nvs_flash/nvs_partition_generator/nvs_partition_gen.py generate <id>.csv <id>-nvs.bin 0x6000
  esptool.py --port /dev/ttyUSB0 write_flash 0x9000 <id>-nvs.bin
(0x9000/0x6000: the nvs partition of the SDK's default ESP32 partition table.)`;

/** The same X.509 checks DPS makes of a CN: the registration id rules, and at most 64 characters (the CN's limit). */
function checkX509RegistrationId(id: string): void {
	checkRegistrationId(id, "--registration-id");
	if (id.length > 64) throw new Error(`--registration-id: "${id}" is ${id.length} characters long; with X.509 the CN limits it to 64`);
	if (!/[A-Za-z0-9-]$/.test(id)) throw new Error(`--registration-id: "${id}" ends in "${id.slice(-1)}"; DPS wants the last character a letter, a digit or -`);
}

function azSteps(files: {root: string; intermediate?: string}, outDir: string): string {
	const dps = "-g my-iot --dps-name my-dps";
	const etag = (kind: "dps" | "hub") => kind === "dps"
		? `--etag $(az iot dps certificate show ${dps} --name fleet-root --query etag -o tsv)`
		: "--etag $(az iot hub certificate show --hub-name my-hub --name fleet-root --query etag -o tsv)";
	return `The Azure side (az CLI with the azure-iot extension), once per fleet: an enrollment group for the root CA.
  az iot dps certificate create ${dps} --name fleet-root --path ${files.root}
  az iot dps certificate generate-verification-code ${dps} --name fleet-root ${etag("dps")}
  npm run commission -- --ca-dir ${o.caDir} --verification-code <the code>        # writes ${path.join(o.caDir, "verification.cert.pem")}
  az iot dps certificate verify ${dps} --name fleet-root --path ${path.join(o.caDir, "verification.cert.pem")} ${etag("dps")}
    (or skip proof of possession: add --verified true to "az iot dps certificate create")
  az iot dps enrollment-group create ${dps} --enrollment-id my-fleet --ca-name fleet-root
    (or let the group hold a CA itself: --certificate-path ${files.intermediate ?? files.root})
The hub must know the CA too, or provisioned devices cannot connect:
  az iot hub certificate create --hub-name my-hub --name fleet-root --path ${files.root}
  az iot hub certificate generate-verification-code --hub-name my-hub --name fleet-root ${etag("hub")}
  npm run commission -- --ca-dir ${o.caDir} --verification-code <the hub's code>
  az iot hub certificate verify --hub-name my-hub --name fleet-root --path ${path.join(o.caDir, "verification.cert.pem")} ${etag("hub")}
    (or --verified true on "az iot hub certificate create")
Or, per device, an individual enrollment instead of the group (the hub then checks the certificate's thumbprint, no CA needed):
  az iot dps enrollment create ${dps} --enrollment-id <id> --attestation-type x509 --certificate-path ${path.join(outDir, "<id>.cert.pem")}`;
}

try {
	if (o.verificationCode !== undefined) {
		if (!/^[A-Za-z0-9\-._]{1,128}$/.test(o.verificationCode)) throw new Error("--verification-code: give the code DPS or the hub printed (letters and digits)");
		const ca = loadFleetCa(o.caDir);
		const file = path.join(o.caDir, "verification.cert.pem");
		fs.writeFileSync(file, verificationCertificate(ca, o.verificationCode));
		console.log(`${file}: CN=${o.verificationCode}, signed by the fleet root. Upload it with "az iot dps certificate verify" or "az iot hub certificate verify".`);
		process.exit(0);
	}
	if (!o.idScope) throw new Error("--id-scope: give the DPS instance's ID scope");
	if (!o.registrationId?.length) throw new Error("--registration-id: give one or more registration ids");
	checkIdScope(o.idScope, "--id-scope");
	const modelRow = o.modelId ? [["modelId", "data", "string", o.modelId]] : [];
	const common = (id: string) => [
		["dpsHost", "data", "string", o.dpsHost],
		["idScope", "data", "string", o.idScope!],
		["registrationId", "data", "string", id],
	];
	if (o.x509) {
		if (o.groupKey || o.symmetricKey) throw new Error("--x509 issues certificates: leave out --group-key and --symmetric-key (GROUP_KEY too)");
		for (const id of o.registrationId) checkX509RegistrationId(id);
		const ca = o.createCa ? createFleetCa(o.caDir, {name: o.caName, intermediate: !!o.intermediate}) : loadFleetCa(o.caDir);
		if (o.createCa) console.log(`fleet CA: ${o.caDir} (root${ca.intermediate ? " and intermediate" : ""}; keep its keys offline)`);
		else if (o.intermediate) throw new Error("--intermediate belongs with --create-ca");
		fs.mkdirSync(o.outDir, {recursive: true});
		for (const id of o.registrationId) {
			const device = issueDevice(ca, id, o.days);
			const base = path.join(o.outDir, id);
			for (const file of [`${base}.key.pem`, `${base}.cert.pem`, `${base}.fullchain.pem`, `${base}.csv`]) fs.rmSync(file, {force: true});
			writePrivate(`${base}.key.pem`, device.keyPem);
			fs.writeFileSync(`${base}.cert.pem`, device.certPem);
			fs.writeFileSync(`${base}.fullchain.pem`, device.fullChainPem);
			const file = writeCsv(id, [
				...common(id),
				["x509Cert", "data", "base64", device.certDer.toString("base64")],
				...(device.chainDer.length ? [["x509Chain", "data", "base64", device.chainDer.toString("base64")]] : []),
				["x509Key", "data", "base64", device.keyDer.toString("base64")],
				...modelRow,
			]);
			console.log(`${id}: ${file}, ${base}.cert.pem, ${base}.fullchain.pem, ${base}.key.pem`);
		}
		console.log(`\n${FLASH_STEPS} The CSV and .key.pem files hold device private keys: keep them out of version control and delete them after flashing.\n\n${azSteps(fleetCaFiles(o.caDir, ca), o.outDir)}`);
		process.exit(0);
	}
	if (!o.groupKey === !o.symmetricKey) throw new Error("give exactly one of --group-key (enrollment group) or --symmetric-key (individual enrollment), or --x509 for certificates");
	if (o.symmetricKey && o.registrationId.length !== 1) throw new Error("--symmetric-key belongs to one individual enrollment: give one --registration-id");
	if (o.symmetricKey) checkKey(o.symmetricKey, "--symmetric-key");
	fs.mkdirSync(o.outDir, {recursive: true});
	const hmac = createNodeHost().hmacSha256;
	for (const id of o.registrationId) {
		checkRegistrationId(id, "--registration-id");
		const key = o.groupKey ? deriveDeviceKey(o.groupKey, id, hmac) : o.symmetricKey!;
		const file = writeCsv(id, [...common(id), ["symmetricKey", "data", "string", key], ...modelRow]);
		console.log(`${id}: ${file}`);
	}
	console.log(`\n${FLASH_STEPS} The files hold device keys: keep them out of version control and delete them after flashing.`);
}
catch (e) {
	console.error(`commission: ${(e as Error).message}`);
	process.exit(2);
}
