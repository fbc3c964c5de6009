/*
 * The leak check behind `npm test` (see tools/test.ts): searches test output and log files for
 * the secrets the run created (device keys, group keys, derived keys and the SAS signatures the
 * emulator accepted, recorded by emulator/secret-log.ts) and for anything shaped like a SAS
 * signature (`sig=` and 43 base64 characters) or a connection-string key. Findings name the test
 * file that owns the secret and show the surrounding text with the secret masked: the report never
 * repeats what it found.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export interface Secret {
	kind: "key" | "groupKey" | "derivedKey" | "signature";
	value: string;
	/** The test file that created it, when known. */
	owner?: string;
}

export interface Finding {
	/** "test output" or a file path. */
	where: string;
	line: number;
	what: string;
	/** The test file the secret belongs to, or the nearest test named before it in the output. */
	testFile?: string;
	/** The line around the hit, with the secret replaced by a label. */
	context: string;
}

/** Published test vectors (docs/azure-protocol.md §5, Microsoft's documentation): not secrets. */
const PUBLIC_VECTORS = new Set([
	"8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==",
	"Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=",
	"UcaBdA4L3Se7NlFQZcBFRndkqyymINWtRUmVT5QYWng=",
	"aogMFXumN5h359Jd2lkt0nG5blAJKPNVgoseKPYlK6o=",
]);

const LABEL: Record<Secret["kind"], string> = {
	key: "a device key", groupKey: "a group key", derivedKey: "a derived device key", signature: "a SAS signature",
};

/** A SAS signature as it appears in a token: 32 bytes of base64 (43 characters and "="), raw or URL-encoded. */
const SIG_PATTERN = /sig=((?:[A-Za-z0-9+/]|%2[BbFf]){40,}(?:=|%3[Dd]){0,2})/g;
const ACCESS_KEY_PATTERN = /SharedAccessKey=([A-Za-z0-9+/]{20,}={0,2})/g;
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;

export function loadSecrets(file: string): Secret[] {
	let text: string;
	try {
		text = fs.readFileSync(file, "utf8");
	}
	catch {
		return [];
	}
	const secrets: Secret[] = [];
	for (const line of text.split("\n")) {
		if (!line.trim()) continue;
		try {
			const s = JSON.parse(line) as Secret;
			if (typeof s.value === "string" && s.value.length >= 16 && !PUBLIC_VECTORS.has(s.value)) secrets.push(s);
		}
		catch {
			// a torn line from a process that died mid-write
		}
	}
	return secrets;
}

/** The forms a secret takes in text: as is, URL-encoded (tokens, topics), JSON-escaped. */
function forms(value: string): string[] {
	return [...new Set([value, encodeURIComponent(value), JSON.stringify(value).slice(1, -1)])];
}

function relative(file: string | undefined): string | undefined {
	if (!file) return undefined;
	const rel = path.relative(process.cwd(), file);
	return rel.startsWith("..") ? file : rel;
}

/** The nearest test file named at or before `index` in AVA's output ("✔ name › title" or a path). */
function nearestTestFile(lines: string[], index: number): string | undefined {
	for (let i = index; i >= 0 && i > index - 400; i--) {
		const pathHit = /((?:^|[\s(])(?:[\w./-]*\/)?test\/[\w./-]+\.test\.ts)/.exec(lines[i]);
		if (pathHit) return pathHit[1].trim().replace(/^\(/, "");
		const avaHit = /[✔✘◌✖]\s+(?:\[[a-z]+\]:?\s+)?([\w.-]+(?:\/[\w.-]+)*) › /.exec(lines[i]);
		if (avaHit) return `test/${avaHit[1]}.test.ts`;
	}
	return undefined;
}

/** The line around `hit`, with every secret on it (not only `hit`) replaced by a label. */
function mask(line: string, hit: string, label: string, known: readonly {form: string; secret: Secret}[]): string {
	const at = line.indexOf(hit);
	let masked = line.split(hit).join(`<${label}>`);
	for (const {form, secret} of known) masked = masked.split(form).join(`<${secret.kind}>`);
	masked = masked.replace(SIG_PATTERN, "sig=<signature>").replace(ACCESS_KEY_PATTERN, "SharedAccessKey=<key>");
	const start = Math.max(0, at - 60);
	return (start > 0 ? "…" : "") + masked.slice(start, start + 160) + (masked.length > start + 160 ? "…" : "");
}

/** Every place in `text` holding a known secret or a signature-shaped string. */
export function scanText(text: string, secrets: readonly Secret[], where = "test output"): Finding[] {
	const lines = text.replace(ANSI, "").split("\n");
	const findings: Finding[] = [];
	const known = secrets.flatMap(s => forms(s.value).map(form => ({form, secret: s})));
	lines.forEach((line, i) => {
		const found = new Set<string>();
		for (const {form, secret} of known) {
			if (!line.includes(form) || found.has(secret.value)) continue;
			found.add(secret.value);
			findings.push({
				where, line: i + 1, what: LABEL[secret.kind],
				testFile: relative(secret.owner) ?? nearestTestFile(lines, i),
				context: mask(line, form, secret.kind, known),
			});
		}
		for (const [pattern, what] of [[SIG_PATTERN, "a SAS signature (sig=…)"], [ACCESS_KEY_PATTERN, "a shared access key"]] as const) {
			for (const m of line.matchAll(pattern)) {
				let value = m[1];
				try {
					value = decodeURIComponent(value);
				}
				catch {
					// keep it encoded
				}
				if (PUBLIC_VECTORS.has(value) || [...found].some(f => m[1].includes(f) || value.includes(f))) continue;
				findings.push({where, line: i + 1, what, testFile: nearestTestFile(lines, i), context: mask(line, m[1], "signature", known)});
			}
		}
	});
	return findings;
}

const LOG_FILE = /\.(log|txt|out|err|jsonl|ndjson)$|(^|[-_.])log([-_.]|$)/i;
const MAX_FILE_BYTES = 64 * 1024 * 1024;

/** Scans the log files under `dir` (symbolic links are not followed). */
export function scanLogFiles(dir: string, secrets: readonly Secret[]): Finding[] {
	const findings: Finding[] = [];
	const walk = (d: string) => {
		let entries: fs.Dirent[];
		try {
			entries = fs.readdirSync(d, {withFileTypes: true});
		}
		catch {
			return;
		}
		for (const e of entries) {
			const p = path.join(d, e.name);
			if (e.isDirectory()) walk(p);
			else if (e.isFile() && LOG_FILE.test(e.name)) {
				try {
					if (fs.statSync(p).size > MAX_FILE_BYTES) continue;
					findings.push(...scanText(fs.readFileSync(p, "utf8"), secrets, p));
				}
				catch {
					// vanished or unreadable
				}
			}
		}
	};
	walk(dir);
	return findings;
}

export function formatFindings(findings: readonly Finding[]): string {
	const out = [`secrets check: ${findings.length} leak${findings.length === 1 ? "" : "s"} found (keys, tokens and signatures must never appear in output or logs):`];
	for (const f of findings.slice(0, 50))
		out.push(`  - ${f.what}${f.testFile ? ` of ${f.testFile}` : " (test file unknown)"} in ${f.where}, line ${f.line}: ${f.context}`);
	if (findings.length > 50) out.push(`  … and ${findings.length - 50} more`);
	return out.join("\n");
}
