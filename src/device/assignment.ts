/*
 * The DPS assignment cached in storage (Preference on the device), so that a reboot connects
 * straight to the hub: registration is billable and throttled, and Microsoft asks devices not to
 * register on every boot. The cache is tied to the identity it was made for, so flashing a new
 * registration id or id scope provisions afresh. Keys stay within NVS's 15 characters.
 */
import type {Storage} from "../host.js";

export interface Assignment {
	assignedHub: string;
	deviceId: string;
}

const HUB = "dps.hub";
const DEVICE = "dps.device";
const IDENTITY = "dps.regid";
const BOOTS = "boot.count";

/** What the cache is for: the DPS instance and the registration. */
export interface Identity {
	idScope: string;
	registrationId: string;
	dpsHost: string;
}

function identity(config: Identity): string {
	return `${config.idScope}/${config.registrationId}@${config.dpsHost}`;
}

export function loadAssignment(storage: Storage | undefined, config: Identity): Assignment | undefined {
	if (!storage) return undefined;
	const assignedHub = storage.get(HUB);
	const deviceId = storage.get(DEVICE);
	if (!assignedHub || !deviceId || storage.get(IDENTITY) !== identity(config)) return undefined;
	return {assignedHub, deviceId};
}

export function saveAssignment(storage: Storage | undefined, config: Identity, a: Assignment): void {
	if (!storage) return;
	storage.set(HUB, a.assignedHub);
	storage.set(DEVICE, a.deviceId);
	storage.set(IDENTITY, identity(config));
}

export function clearAssignment(storage: Storage | undefined): void {
	storage?.delete(HUB);
	storage?.delete(DEVICE);
	storage?.delete(IDENTITY);
}

export function nextBootCount(storage: Storage | undefined): number {
	const count = (Number(storage?.get(BOOTS)) || 0) + 1;
	storage?.set(BOOTS, String(count));
	return count;
}
