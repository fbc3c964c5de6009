/*
 * SAS vectors for device ids with each of ! ' ( ) * + = @ $ : (all allowed in hub device ids), made by
 * the core (src/sas.ts, src/query.ts) and by Microsoft's Node SDK (azure-iot-common, which
 * azure-iot-device uses: `SharedAccessSignature.create(encodeUriComponentStrict(host/devices/id), ...)`)
 * in the same test, compared, and then given to the emulator's hub, which must accept both.
 *
 * Where they differ, and why that is not a bug: for `*`, azure-iot-common writes the escape in lower
 * case (`%2a`, `"%" + c.charCodeAt(0).toString(16)`), the core in upper case (`%2A`), as Microsoft's
 * Embedded C SDK does (its URL encoder writes upper-case hex) and as RFC 3986 §2.1 asks. The two
 * Microsoft SDKs disagree there; each signs the `sr` it sends, so both tokens are valid. For DPS,
 * Microsoft's symmetric-key provisioning client signs the resource unencoded (`scope/registrations/id`);
 * the core encodes it, as the Embedded C SDK does; the emulator takes both, as Azure does.
 */
import test from "ava";
import common from "azure-iot-common";
import {type Emulator, startEmulator} from "../emulator/index.js";
import {createNodeHost} from "../hosts/node/host.js";
import {encodeComponent} from "../src/query.js";
import {dpsPassword, hubPassword} from "../src/sas.js";
import {ConnackError, connect, end, inAnHour} from "./helpers/emulator-client.js";

const {SharedAccessSignature, encodeUriComponentStrict} = common;
const hmac = createNodeHost().hmacSha256;
const KEY = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=";
const HUB = "contoso.azure-devices.net";
const EXPIRY = 1700000000;
const SPECIAL = ["!", "'", "(", ")", "*", "+", "=", "@", "$", ":"] as const;
/** What encodeURIComponent leaves alone among them, and Microsoft's SDKs encode. */
const STRICT = ["!", "'", "(", ")", "*"];

/** Microsoft's Node SDK's device token (azure-iot-device's SharedAccessKeyAuthenticationProvider). */
function microsoftHubToken(host: string, deviceId: string, key: string, expiry: number): string {
	return SharedAccessSignature.create(encodeUriComponentStrict(`${host}/devices/${deviceId}`), undefined as unknown as string, key, expiry).toString();
}

/** Microsoft's Node SDK's DPS token (azure-iot-security-symmetric-key's SymmetricKeySecurityClient). */
function microsoftDpsToken(idScope: string, registrationId: string, key: string, expiry: number): string {
	return SharedAccessSignature.create(`${idScope}/registrations/${registrationId}`, "registration", key, expiry).toString();
}

function fields(token: string): Record<string, string> {
	return Object.fromEntries(token.slice("SharedAccessSignature ".length).split("&").map(f => [f.slice(0, f.indexOf("=")), f.slice(f.indexOf("=") + 1)]));
}

const lowerEscapes = (text: string) => text.replace(/%[0-9A-F]{2}/gi, e => e.toLowerCase());

test("each character: the core's encoding is encodeURIComponent plus ! ' ( ) *, as azure-iot-common's encodeUriComponentStrict (the hex of * in upper case)", t => {
	for (const c of SPECIAL) {
		const ours = encodeComponent(`a${c}b`);
		const theirs = encodeUriComponentStrict(`a${c}b`);
		t.is(lowerEscapes(ours), lowerEscapes(theirs), c);
		if (c !== "*") t.is(ours, theirs, `${c}: the same bytes`);
		t.is(ours === `a${c}b`, false, `${c} is percent-encoded`);
		if (STRICT.includes(c)) t.is(encodeURIComponent(c), c, `${c}: plain encodeURIComponent would leave it`);
	}
	t.is(encodeComponent("*"), "%2A");
	t.is(encodeUriComponentStrict("*"), "%2a");
});

test("hub tokens for device ids with each character: the core's and Microsoft's Node SDK's are the same token (for *, the same but for the escape's case)", t => {
	for (const c of SPECIAL) {
		const deviceId = `dev${c}1`;
		const ours = hubPassword(HUB, deviceId, KEY, EXPIRY, hmac);
		const theirs = microsoftHubToken(HUB, deviceId, KEY, EXPIRY);
		if (c === "*") {
			t.is(fields(ours).sr, "contoso.azure-devices.net%2Fdevices%2Fdev%2A1");
			t.is(fields(theirs).sr, "contoso.azure-devices.net%2Fdevices%2Fdev%2a1");
			t.not(fields(ours).sig, fields(theirs).sig, "each signs its own sr");
			// The same token once the core's sr is written as azure-iot-common writes it.
			t.is(hubPasswordOverSr(fields(ours).sr.replace("%2A", "%2a")), theirs);
		}
		else t.is(ours, theirs, c);
		t.is(fields(ours).se, String(EXPIRY));
		t.false("skn" in fields(ours));
	}
});

/** The token azure-iot-common makes for an sr given as is. */
function hubPasswordOverSr(sr: string): string {
	return SharedAccessSignature.create(sr, undefined as unknown as string, KEY, EXPIRY).toString();
}

test("a DPS token for a registration id with : (the only one of these DPS allows): the same signature scheme, the resource encoded by the core and raw by Microsoft's Node SDK", t => {
	const ours = fields(dpsPassword("0ne00000000", "dev:1", KEY, EXPIRY, hmac));
	const theirs = fields(microsoftDpsToken("0ne00000000", "dev:1", KEY, EXPIRY));
	t.is(ours.sr, "0ne00000000%2Fregistrations%2Fdev%3A1");
	t.is(theirs.sr, "0ne00000000/registrations/dev:1");
	t.is(decodeURIComponent(ours.sr), theirs.sr);
	t.is(ours.skn, "registration");
	t.is(theirs.skn, "registration");
	t.is(ours.se, theirs.se);
});

let emu: Emulator;
test.before(async () => {
	emu = await startEmulator();
});
test.after.always(async () => {
	await emu?.close();
});

async function connackOf(p: Promise<unknown>): Promise<number> {
	try {
		await end(await p as never);
		return 0;
	}
	catch (error) {
		return error instanceof ConnackError ? error.returnCode : -1;
	}
}

test("the emulator's hub accepts both tokens for a device id with each character, and refuses a token signed over another sr", async t => {
	for (const c of SPECIAL) {
		const deviceId = `sas${c}${process.pid}`;
		emu.addDevice({deviceId, authentication: {type: "sas", symmetricKey: KEY}});
		const username = `${emu.hubName}/${deviceId}/?api-version=2021-04-12`;
		const se = inAnHour();
		for (const [who, password] of [["core", hubPassword(emu.hubName, deviceId, KEY, se, hmac)], ["azure-iot-common", microsoftHubToken(emu.hubName, deviceId, KEY, se)]]) {
			t.is(await connackOf(connect(emu, {clientId: deviceId, username, password, clean: true})), 0, `${c}: ${who}`);
		}
		// Plain encodeURIComponent in sr, with the signature of the strict form: what the core used to get wrong.
		const strict = hubPassword(emu.hubName, deviceId, KEY, se, hmac);
		const plainSr = encodeURIComponent(`${emu.hubName}/devices/${deviceId}`);
		if (STRICT.includes(c)) {
			const mixed = strict.replace(/sr=[^&]+/, `sr=${plainSr}`);
			t.is(await connackOf(connect(emu, {clientId: deviceId, username, password: mixed, clean: true})), 5, `${c}: a signature over another sr is refused`);
		}
	}
});

test("the emulator's DPS accepts both tokens for a registration id with :", async t => {
	const registrationId = `sas:${process.pid}`;
	emu.addEnrollment({registrationId, symmetricKey: KEY});
	const username = `${emu.idScope}/registrations/${registrationId}/api-version=2019-03-31`;
	const se = inAnHour();
	for (const [who, password] of [["core", dpsPassword(emu.idScope, registrationId, KEY, se, hmac)], ["azure-iot-common", microsoftDpsToken(emu.idScope, registrationId, KEY, se)]])
		t.is(await connackOf(connect(emu, {clientId: registrationId, username, password, clean: true})), 0, who);
});
