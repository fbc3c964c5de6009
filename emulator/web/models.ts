/*
 * The IoT Plug and Play models the page can read: DTDL interfaces in a directory (--models, or
 * examples/models/ of the repository), found as the models repository lays them out
 * (`dtmi:com:example:Thermostat;1` → dtmi/com/example/thermostat-1.json, or .expanded.json) or by
 * their "@id" anywhere in the directory. From a model the page takes its commands (with the
 * component prefix a method name carries, `thermostat1*getMaxMinReport`), writable properties and
 * telemetry names.
 */
import * as fs from "node:fs";
import * as path from "node:path";

export interface ModelCommand {
	/** The direct method name to invoke. */
	method: string;
	name: string;
	component?: string;
	displayName?: string;
	description?: string;
	/** A payload that fits the request schema, to start from; undefined for a command without a request. */
	example?: unknown;
	requestSchema?: unknown;
}

export interface ModelView {
	id: string;
	displayName?: string;
	commands: ModelCommand[];
	writableProperties: {name: string; component?: string; schema?: unknown; example?: unknown}[];
	telemetry: {name: string; component?: string}[];
	/** The file it came from, relative to the models directory. */
	file: string;
}

const MAX_FILES = 5000;
const MAX_FILE_BYTES = 1024 * 1024;
const DTMI = /^dtmi:[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?(?::[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?)*;[1-9][0-9]{0,8}(?:\.[1-9][0-9]{0,5})?$/;

export function isDtmi(value: string): boolean {
	return DTMI.test(value);
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
	return typeof v === "object" && v !== null && !Array.isArray(v);
}

function types(entry: Json): string[] {
	const t = entry["@type"];
	return Array.isArray(t) ? t.filter((x): x is string => typeof x === "string") : typeof t === "string" ? [t] : [];
}

function text(v: unknown): string | undefined {
	if (typeof v === "string") return v;
	if (isObject(v) && typeof v.en === "string") return v.en;
	return undefined;
}

/** A value of the schema, to start editing from. */
export function exampleOf(schema: unknown, depth = 0): unknown {
	if (depth > 5) return null;
	if (typeof schema === "string") {
		switch (schema) {
		case "boolean": return false;
		case "date": return new Date().toISOString().slice(0, 10);
		case "dateTime": return new Date().toISOString();
		case "time": return "00:00:00";
		case "duration": return "PT1M";
		case "string": return "";
		case "double": case "float": case "integer": case "long": case "byte": case "short": case "unsignedByte": case "unsignedShort": case "unsignedInteger": case "unsignedLong": return 0;
		default: return null;
		}
	}
	if (!isObject(schema)) return null;
	const kind = types(schema)[0];
	if (kind === "Object" && Array.isArray(schema.fields)) {
		const out: Json = {};
		for (const f of schema.fields) if (isObject(f) && typeof f.name === "string") out[f.name] = exampleOf(f.schema, depth + 1);
		return out;
	}
	if (kind === "Enum" && Array.isArray(schema.enumValues)) {
		const first = schema.enumValues.find(isObject);
		return first?.enumValue ?? null;
	}
	if (kind === "Array") return [];
	if (kind === "Map") return {};
	return null;
}

export class ModelStore {
	readonly dir: string | undefined;
	#index?: Map<string, string>;
	#indexedAt = 0;

	constructor(dir: string | undefined) {
		this.dir = dir && fs.existsSync(dir) ? path.resolve(dir) : undefined;
	}

	/** The model, or undefined when no file in the directory has it. */
	find(id: string): ModelView | undefined {
		if (!this.dir || !isDtmi(id)) return undefined;
		const doc = this.#load(id);
		if (!doc) return undefined;
		const view: ModelView = {id, displayName: text(doc.entry.displayName), commands: [], writableProperties: [], telemetry: [], file: path.relative(this.dir, doc.file)};
		this.#collect(doc.entry, undefined, view, doc.others);
		return view;
	}

	#collect(iface: Json, component: string | undefined, view: ModelView, others: Json[]): void {
		const contents = Array.isArray(iface.contents) ? iface.contents.filter(isObject) : [];
		for (const entry of contents) {
			const name = typeof entry.name === "string" ? entry.name : undefined;
			if (!name) continue;
			const t = types(entry);
			if (t.includes("Command")) {
				const request = isObject(entry.request) ? entry.request : undefined;
				view.commands.push({
					method: component ? `${component}*${name}` : name, name,
					...(component ? {component} : {}),
					...(text(entry.displayName) ? {displayName: text(entry.displayName)} : {}),
					...(text(entry.description) ? {description: text(entry.description)} : {}),
					...(request ? {example: exampleOf(request.schema), requestSchema: request.schema} : {}),
				});
			}
			else if (t.includes("Property") && entry.writable === true) view.writableProperties.push({name, ...(component ? {component} : {}), schema: entry.schema, example: exampleOf(entry.schema)});
			else if (t.includes("Telemetry")) view.telemetry.push({name, ...(component ? {component} : {})});
			else if (t.includes("Component") && component === undefined) {
				const schema = entry.schema;
				const inner = isObject(schema) ? schema : typeof schema === "string" ? (others.find(o => o["@id"] === schema) ?? this.#load(schema)?.entry) : undefined;
				if (inner) this.#collect(inner, name, view, others);
			}
		}
	}

	/** The interface `id` and the other interfaces of its file (an expanded file holds its components too). */
	#load(id: string): {entry: Json; others: Json[]; file: string} | undefined {
		const dir = this.dir!;
		const base = path.join(dir, ...id.toLowerCase().replace(/;/, "-").split(":"));
		const candidates = [`${base}.json`, `${base}.expanded.json`];
		const indexed = this.#lookup(id);
		if (indexed) candidates.push(indexed);
		for (const file of candidates) {
			const docs = this.#read(file);
			const entry = docs.find(d => d["@id"] === id);
			if (entry) return {entry, others: docs, file};
		}
		return undefined;
	}

	#read(file: string): Json[] {
		try {
			if (!fs.statSync(file).isFile() || fs.statSync(file).size > MAX_FILE_BYTES) return [];
			const value: unknown = JSON.parse(fs.readFileSync(file, "utf8"));
			return (Array.isArray(value) ? value : [value]).filter(isObject);
		}
		catch {
			return [];
		}
	}

	/** Finds the file of `id` by scanning the directory (once, and again at most every 5 s on a miss). */
	#lookup(id: string): string | undefined {
		if (!this.#index || (!this.#index.has(id) && Date.now() - this.#indexedAt > 5000)) {
			this.#index = new Map();
			this.#indexedAt = Date.now();
			let files = 0;
			const walk = (dir: string, depth: number) => {
				if (depth > 8) return;
				let entries: fs.Dirent[];
				try {
					entries = fs.readdirSync(dir, {withFileTypes: true});
				}
				catch {
					return;
				}
				for (const e of entries) {
					if (files >= MAX_FILES) return;
					const full = path.join(dir, e.name);
					if (e.isDirectory() && !e.name.startsWith(".") && e.name !== "node_modules") walk(full, depth + 1);
					else if (e.isFile() && e.name.endsWith(".json")) {
						files++;
						for (const doc of this.#read(full)) if (typeof doc["@id"] === "string" && !this.#index!.has(doc["@id"])) this.#index!.set(doc["@id"], full);
					}
				}
			};
			walk(this.dir!, 0);
		}
		return this.#index.get(id);
	}
}
