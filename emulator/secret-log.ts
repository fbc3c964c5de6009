/*
 * Test hook for the leak check of `npm test` (tools/test.ts): when AZURE_IOT_SECRETS_FILE is set,
 * every key the emulator stores or derives and every SAS signature it accepts is appended there,
 * one JSON line each, with the test file that created it, so the run's output can be searched for
 * them afterwards. Does nothing unless that variable is set.
 */
import * as fs from "node:fs";

export type SecretKind = "key" | "groupKey" | "derivedKey" | "signature";

const seen = new Set<string>();
const owners = new Map<string, string | undefined>();

/** `relatedKey`: the key a signature or derived key came from, whose test file owns it too. */
export function noteSecret(kind: SecretKind, value: string | undefined, relatedKey?: string): void {
	const file = process.env.AZURE_IOT_SECRETS_FILE;
	if (!file || !value || seen.has(value)) return;
	seen.add(value);
	const owner = (relatedKey !== undefined ? owners.get(relatedKey) : undefined) ?? callerTestFile();
	owners.set(value, owner);
	try {
		fs.appendFileSync(file, JSON.stringify({kind, value, owner, pid: process.pid}) + "\n", {mode: 0o600});
	}
	catch {
		// the check then misses this one; never break the emulator over it
	}
}

/** The first *.test.ts frame of the current stack: the test that asked for the key. */
function callerTestFile(): string | undefined {
	const m = /(?:file:\/\/)?(\/[^\s():]+\.test\.[cm]?[jt]s)/.exec(new Error().stack ?? "");
	return m?.[1];
}
