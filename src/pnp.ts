/*
 * IoT Plug and Play conventions (shared/pnp.md §1), as Microsoft's samples apply them: components in
 * reported properties marked with "__t":"c"; writable properties acknowledged with
 * {"value","ac","av","ad"}; a top-level desired key counts as a component only when the model says
 * it is one (the marker is not sent in desired patches, so the Embedded C SDK asks for the component
 * names too). Commands of a component arrive as `component*command` (split by hub/topics.ts).
 * Pure functions: no I/O.
 */

/** One writable property found in a desired document or patch. */
export interface WritableProperty {
	/** Undefined for the root component. */
	component?: string;
	name: string;
	value: unknown;
	/** The desired document's $version: the `av` of the acknowledgement. */
	version: number;
}

/** A writable-property acknowledgement's fields; `value` defaults to the desired value. */
export interface Acknowledgement {
	/** 200 applied, 202 in progress, 203 the device's own value (no desired one: version 0), 400 refused, 500 failed. */
	status: number;
	description?: string;
	value?: unknown;
}

function isRecord(value: unknown): value is Record<string, unknown> {
	return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The writable properties of a desired document or patch, in document order. `$version`, `$metadata`
 * and `__t` are skipped, and so are deleted (null) values: there is nothing to apply or acknowledge.
 */
export function writableProperties(desired: Record<string, unknown>, version: number, components: readonly string[]): WritableProperty[] {
	const out: WritableProperty[] = [];
	for (const key of Object.keys(desired)) {
		if (key.startsWith("$") || key === "__t") continue;
		const value = desired[key];
		if (value === null) continue;
		if (components.includes(key)) {
			if (!isRecord(value)) continue;
			for (const name of Object.keys(value)) {
				if (name.startsWith("$") || name === "__t" || value[name] === null) continue;
				out.push({component: key, name, value: value[name], version});
			}
		}
		else out.push({name: key, value, version});
	}
	return out;
}

/** A reported patch for a component (`{"thermostat1":{"__t":"c",...}}`), or the properties as they are for the root. */
export function reportedPatch(properties: Record<string, unknown>, component?: string): Record<string, unknown> {
	return component === undefined ? properties : {[component]: {__t: "c", ...properties}};
}

/** The acknowledgement of one writable property, as a reported patch. */
export function acknowledgementPatch(property: WritableProperty, ack: Acknowledgement): Record<string, unknown> {
	const body: Record<string, unknown> = {value: ack.value === undefined ? property.value : ack.value, ac: ack.status, av: property.version};
	if (ack.description !== undefined && ack.description !== "") body.ad = ack.description;
	return reportedPatch({[property.name]: body}, property.component);
}

/**
 * Whether the reported properties already hold this acknowledgement (same status, version and
 * value), so that the read after every reconnect does not report it again.
 */
export function alreadyAcknowledged(reported: Record<string, unknown> | undefined, property: WritableProperty, ack: Acknowledgement): boolean {
	if (!reported) return false;
	const section = property.component === undefined ? reported : reported[property.component];
	if (!isRecord(section)) return false;
	const current = section[property.name];
	if (!isRecord(current)) return false;
	const value = ack.value === undefined ? property.value : ack.value;
	return current.ac === ack.status && current.av === property.version && sameJson(current.value, value) &&
		(current.ad ?? "") === (ack.description ?? "");
}

/** Deep equality of JSON values (key order ignored). */
export function sameJson(a: unknown, b: unknown): boolean {
	if (a === b) return true;
	if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
	if (isRecord(a) && isRecord(b)) {
		const keys = Object.keys(a);
		return keys.length === Object.keys(b).length && keys.every(k => k in b && sameJson(a[k], b[k]));
	}
	return false;
}

/** Merges reported patch `from` into `into` (objects merge key by key; anything else replaces). */
export function mergePatch(into: Record<string, unknown>, from: Record<string, unknown>): void {
	for (const key of Object.keys(from)) {
		const next = from[key];
		const current = into[key];
		if (isRecord(next)) {
			// A copy, so that later merges never change the caller's objects.
			const target: Record<string, unknown> = isRecord(current) ? current : {};
			into[key] = target;
			mergePatch(target, next);
		}
		else into[key] = next;
	}
}

for (const f of [writableProperties, reportedPatch, acknowledgementPatch, alreadyAcknowledged, sameJson, mergePatch]) Object.freeze(f);
