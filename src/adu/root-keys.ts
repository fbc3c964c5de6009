/*
 * The root keys a device trusts to sign Device Update signing keys. The production table holds
 * Microsoft's two ADU root keys only; a build that talks to the local emulator extends it with the
 * emulator's root explicitly (extendRootKeys), so no test key can be trusted by default.
 *
 * ADU.200702.R and ADU.200703.R: modulus and exponent as standard base64 of the big-endian bytes
 * (no leading zero byte). Checked byte for byte to agree in four Microsoft sources:
 * Azure/iot-hub-device-update src/utils/root_key_utils/src/root_key_list.c (base64url),
 * Azure-Samples/iot-middleware-freertos-samples demos/sample_azure_iot_adu/sample_azure_iot_pnp_simulated_data.c,
 * Azure/azure-iot-middleware-freertos tests/ut/azure_iot_jws_mbedtls_ut.c and
 * tests/e2e/adu/device/e2e_device_commands.c (C byte arrays).
 * Strings keep the table in flash when the module is preloaded.
 */
import {base64Decode, base64Encode} from "../encoding.js";
import {configError} from "../errors.js";
import {rsaPublicKey, type RsaPublicKey} from "./rsa.js";

export interface RootKey {
	/** The `kid` of the sjwk header that names this key, e.g. "ADU.200702.R". */
	readonly kid: string;
	/** Modulus: big-endian bytes, or standard base64 of them. */
	readonly n: Uint8Array | string;
	/** Public exponent: big-endian bytes, or standard base64 of them (65537 is "AQAB"). */
	readonly e: Uint8Array | string;
}

/** A validated, frozen table; n and e are held as base64 strings. */
export type RootKeyTable = readonly (RootKey & {readonly n: string; readonly e: string})[];

/**
 * Checks a list of root keys and returns it frozen: every kid non-empty and unique, every key a
 * usable RSA public key. Throws a config error naming the entry otherwise.
 */
export function defineRootKeys(keys: readonly RootKey[]): RootKeyTable {
	if (!Array.isArray(keys)) throw configError("rootKeys", "is not an array", "Pass a list of {kid, n, e}");
	const out: (RootKey & {n: string; e: string})[] = [];
	for (let i = 0; i < keys.length; i++) {
		const key = keys[i];
		const where = `rootKeys[${i}]`;
		if (typeof key !== "object" || key === null || typeof key.kid !== "string" || key.kid === "")
			throw configError(`${where}.kid`, "is missing", "Give each root key the kid its sjwk headers use, e.g. \"ADU.200702.R\"");
		if (out.some(k => k.kid === key.kid))
			throw configError(`${where}.kid`, `repeats "${key.kid}"`, "Each root key id may appear once; a build cannot replace a production key");
		const n = keyBytes(key.n, `${where}.n`);
		const e = keyBytes(key.e, `${where}.e`);
		const problem = rsaPublicKey(n, e);
		if (typeof problem === "string")
			throw configError(where, `is not a usable RSA key (${problem})`, "Copy the modulus and exponent of the root key exactly");
		out.push(Object.freeze({kid: key.kid, n: base64Encode(stripZeros(n)), e: base64Encode(stripZeros(e))}));
	}
	return Object.freeze(out);
}

/** The production table plus extra keys (the emulator's root, for a build that asks for it). */
export function extendRootKeys(table: RootKeyTable, extra: readonly RootKey[]): RootKeyTable {
	const checked = defineRootKeys([...table, ...extra]);
	// The table's own entries are kept, not their checked copies: preloaded, they stay in flash instead of RAM.
	return Object.freeze([...table, ...checked.slice(table.length)]);
}

export function findRootKey(table: RootKeyTable, kid: string): RootKeyTable[number] | undefined {
	for (const key of table) if (key.kid === kid) return key;
	return undefined;
}

/** The key as numbers; a string saying what is wrong if the table entry was not built by defineRootKeys. */
export function rootPublicKey(key: RootKey): RsaPublicKey | string {
	const n = typeof key.n === "string" ? base64Decode(key.n) : key.n;
	const e = typeof key.e === "string" ? base64Decode(key.e) : key.e;
	if (!(n instanceof Uint8Array) || !(e instanceof Uint8Array)) return "its modulus or exponent is not valid base64";
	return rsaPublicKey(n, e);
}

function keyBytes(value: unknown, field: string): Uint8Array {
	const bytes = typeof value === "string" ? base64Decode(value) : value instanceof Uint8Array ? value : undefined;
	if (!bytes || bytes.length === 0)
		throw configError(field, "is not standard base64 or bytes", "Give the modulus and exponent as big-endian bytes or their standard (padded) base64");
	return bytes;
}

function stripZeros(bytes: Uint8Array): Uint8Array {
	let i = 0;
	while (i < bytes.length - 1 && bytes[i] === 0) i++;
	return bytes.subarray(i);
}

/** Microsoft's production Device Update root keys. */
export const ADU_ROOT_KEYS: RootKeyTable = defineRootKeys([
	{
		kid: "ADU.200702.R",
		n: "1UIurxFUo1Blh6JNW7oa+6ky3+mZXwVFyK+9NR2J6CcnWKOo7sXFHk/3kqYSBn09fbAH9ix/3m0q9bxJvBXv8IHLP4hPJx2IcShgCLYZ0tI50AUfPHaGcbtZWLyxiHurVii/MXNEMhD9PdOWXP9OXLNr/4uEm4uAuEnQffrWQFh2TcByJ3XLmi+btJ8PJfEcxRsLWjB9L7jvpyZYU6/VHVUBUQ3pG6IPP9fpHSBBpuYUCq7+8hwq1uQEe/YUfuwPl4P6WPqBNiG5oyv62WELGpT3wb5/QBRKyfo1f+9mcACx/dvXYQ07WHRnlIl1dpZ8kYfSjhGX7nuHbJovRdhlP1JwmCrLyARj9clHz3D07WSndKUjj7bt9xzTsBxkVxJaqYGEH6DnUBmWtIKxrEjj4TKCy0AfrMRZvBA0UYL5KI2oHpv1eUV1styaEUMIvmHMmsTLdzb/g92ocU9Rjg57Tfp5mI2+/IJ+QEipEgGo2X7zpRvx+5B3PkCHGMmr2fd5",
		e: "AQAB",
	},
	{
		kid: "ADU.200703.R",
		n: "sqOydBb6uyD5UnbmJz6AQcb+zzD5yJb1WQqqgedRg4rE9Rc6LyrmV9Rxzoo975pVdj6Z4sKuTO4tuHj1ok4o8pxOOWW87OQN5eM4qFmrCKQbtPSgUqM4s0YhE8w8aAbe/gCmkm7eTEcQ1hycJPXNcOH1anxoEx3hxfaoTyGfhnxExYqZHMXTBptacZ0JHMNkMWrFF5UdXSrxVcdm1Oj12albjKJsYmAFN9cysHPL90s2JyQhjDgKuBj+9RVgNYs17x4PiKYTjXt977PnsMmmHHB7zPIpi4f3vZ22iG+sc/9y8u9IJ5ZyhgaiXON9zrCe5cLZTsTzf3gHS2WIRQwR5ZZWNIgtFg5ZQtL32e0d7ck3d0R+44Q2n1gT72/kw0TUdwaKz1vIgByimGULNdxzyGnQXuglQ5722KsFr1EpI1VAWBDquOLNXXnM7N+0W5jH+uPSbCbOLixW4M+N7v2TEi8ASY0cgjhWpl15REoa89wWELPBLScR/huYBeSjYDGZ",
		e: "AQAB",
	},
]);

Object.freeze(defineRootKeys);
Object.freeze(extendRootKeys);
Object.freeze(findRootKey);
Object.freeze(rootPublicKey);
