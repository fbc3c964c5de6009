/*
 * Device Update for IoT Hub, the service side: imports updates (signed manifests), deploys them
 * through the device twin's `deviceUpdate` component, serves their files and judges each device's
 * progress from what it reports.
 */
import * as crypto from "node:crypto";
import type {FaultSet} from "../faults.js";
import type {ServedIdentity} from "../pki.js";
import {EmulatorHttpError, type Registry} from "../registry.js";
import {isPlainObject} from "../wire.js";
import {type DeploymentView, type DeviceEntry, judge, overallState, readReport} from "./deployments.js";
import {FILE_URL_SCHEMES, type FileServer, type FileUrlScheme, startFileServer} from "./files.js";
import {signManifest, signingKeyJws} from "./jws.js";
import type {AduKeys, AduPublicKey} from "./keys.js";
import {type Update, type UpdateId, buildUpdate, parseUpdateId, updateKey} from "./update.js";

export interface ImportedUpdate {
	updateId: UpdateId;
	/** The manifest string exactly as signed and as deployments send it. */
	manifest: string;
	/** The compact JWS sent as `updateManifestSignature`. */
	signature: string;
	/** fileId → plain HTTP URL (what deployments send by default). */
	fileUrls: Record<string, string>;
	/** fileId → HTTPS URL, served with the emulator's TLS identity. */
	httpsFileUrls: Record<string, string>;
}

export interface DeployRequest {
	updateId: UpdateId;
	deviceIds: string[];
	/** Which file URLs the devices get; default "http", as ADU's are. */
	fileUrlScheme?: FileUrlScheme;
}

/** What the hub offers Device Update: desired patches, sent to a connected device as the hub sends any. */
export interface AduHub {
	patchDesired(deviceId: string, patch: object): {version: number};
}

export interface AduServiceOptions {
	keys: AduKeys;
	registry: Registry;
	hub: AduHub;
	faults: FaultSet;
	identity: ServedIdentity;
	bindHost: string;
	urlHost: string;
	httpPort: number;
	httpsPort: number;
	log(line: string): void;
}

interface Deployment {
	deploymentId: string;
	update: Update;
	workflowId: string;
	fileUrlScheme: FileUrlScheme;
	createdDateTime: string;
	canceled: boolean;
	entries: DeviceEntry[];
}

/** The whole set of imported files is held in memory. */
const MAX_STORED_BYTES = 256 * 1024 * 1024;
const MAX_DEVICES_PER_DEPLOYMENT = 1000;
const DEPLOY_KEYS = ["updateId", "deviceIds", "fileUrlScheme"];
const CANCEL_WORKFLOW = {action: 255, id: "nodeployment"};

function bad(message: string): never {
	throw new EmulatorHttpError(400, message);
}

export class AduService {
	readonly #options: AduServiceOptions;
	readonly #files: FileServer;
	readonly #sjwk: string;
	readonly #updates = new Map<string, Update>();
	/** Shared with the file server, which looks files up by id. */
	readonly #byFileId: Map<string, Update>;
	readonly #deployments = new Map<string, Deployment>();
	/** The deployment each device was last sent (until canceled). */
	readonly #active = new Map<string, {deployment: Deployment; entry: DeviceEntry}>();

	private constructor(options: AduServiceOptions, files: FileServer, byFileId: Map<string, Update>) {
		this.#options = options;
		this.#files = files;
		this.#byFileId = byFileId;
		this.#sjwk = signingKeyJws(options.keys);
	}

	static async start(options: AduServiceOptions): Promise<AduService> {
		const byFileId = new Map<string, Update>();
		const files = await startFileServer({
			bindHost: options.bindHost, urlHost: options.urlHost, httpPort: options.httpPort, httpsPort: options.httpsPort,
			identity: options.identity, faults: options.faults, log: options.log,
			lookup: fileId => byFileId.get(fileId),
		});
		return new AduService(options, files, byFileId);
	}

	get rootKey(): AduPublicKey {
		return {...this.#options.keys.root.publicKey};
	}

	get rootKeyPath(): string {
		return this.#options.keys.rootKeyPath;
	}

	get fileServer(): {http: string; https: string} {
		return {http: this.#files.httpUrl, https: this.#files.httpsUrl};
	}

	#view(update: Update): ImportedUpdate {
		return {
			updateId: {...update.updateId},
			manifest: update.manifest,
			signature: update.signature,
			fileUrls: {[update.fileId]: this.#files.url("http", update)},
			httpsFileUrls: {[update.fileId]: this.#files.url("https", update)},
		};
	}

	importUpdate(input: unknown): ImportedUpdate {
		const built = buildUpdate(input);
		const key = updateKey(built.updateId);
		if (this.#updates.has(key)) throw new EmulatorHttpError(409, `Update ${key} is already imported: give a new version.`);
		let stored = 0;
		for (const u of this.#updates.values()) stored += u.data.length;
		if (stored + built.data.length > MAX_STORED_BYTES)
			throw new EmulatorHttpError(413, `The emulator holds at most ${MAX_STORED_BYTES} bytes of update files (${stored} in use): restart it to start afresh.`);
		const update: Update = {...built, signature: signManifest(built.manifest, this.#options.keys, this.#sjwk)};
		this.#updates.set(key, update);
		this.#byFileId.set(update.fileId, update);
		this.#options.log(`adu: update ${key} imported (${update.fileName}, ${update.data.length} bytes, file ${update.fileId})`);
		return this.#view(update);
	}

	updates(): ImportedUpdate[] {
		return [...this.#updates.values()].map(u => this.#view(u));
	}

	deploy(input: unknown): {deploymentId: string} {
		if (!isPlainObject(input)) bad("Expected a JSON object {\"updateId\":{\"provider\",\"name\",\"version\"},\"deviceIds\":[…],\"fileUrlScheme\"?}.");
		for (const key of Object.keys(input)) if (!DEPLOY_KEYS.includes(key)) bad(`Unknown key "${key}" in the deployment; keys: ${DEPLOY_KEYS.join(", ")}.`);
		const updateId = parseUpdateId(input.updateId);
		const update = this.#updates.get(updateKey(updateId));
		if (!update) throw new EmulatorHttpError(404, `No imported update ${updateKey(updateId)}: import it first (POST /updates).`);
		const scheme = input.fileUrlScheme ?? "http";
		if (!FILE_URL_SCHEMES.includes(scheme as FileUrlScheme)) bad(`"fileUrlScheme" must be ${FILE_URL_SCHEMES.map(s => `"${s}"`).join(" or ")}.`);
		const deviceIds = input.deviceIds;
		if (!Array.isArray(deviceIds) || !deviceIds.length || deviceIds.length > MAX_DEVICES_PER_DEPLOYMENT || !deviceIds.every(d => typeof d === "string"))
			bad(`"deviceIds" must be an array of 1 to ${MAX_DEVICES_PER_DEPLOYMENT} device id strings.`);
		const duplicate = deviceIds.find((d, i) => deviceIds.indexOf(d) !== i);
		if (duplicate !== undefined) bad(`"deviceIds" names device "${duplicate}" twice.`);
		// All or nothing: every device must be registered before any is sent the deployment.
		const devices = (deviceIds as string[]).map(id => this.#options.registry.device(id));

		const deployment: Deployment = {
			deploymentId: crypto.randomUUID(),
			update,
			workflowId: crypto.randomUUID(),
			fileUrlScheme: scheme as FileUrlScheme,
			createdDateTime: new Date().toISOString(),
			canceled: false,
			entries: [],
		};
		this.#deployments.set(deployment.deploymentId, deployment);
		for (const device of devices) {
			const fileUrls: Record<string, string | null> = {};
			// ADU nulls the file ids of the previous deployment, or the twin's merge would keep them.
			const previous = (device.twin.desired.deviceUpdate as {service?: {fileUrls?: unknown}} | undefined)?.service?.fileUrls;
			if (isPlainObject(previous)) for (const id of Object.keys(previous)) fileUrls[id] = null;
			fileUrls[update.fileId] = this.#files.url(deployment.fileUrlScheme, update, device.deviceId);
			this.#supersede(device.deviceId, deployment.deploymentId);
			const entry: DeviceEntry = {
				deviceId: device.deviceId, state: "inProgress", desiredVersion: device.twin.desiredVersion,
				reported: readReport(device.twin.reported), problems: [], updatedDateTime: new Date().toISOString(),
			};
			deployment.entries.push(entry);
			try {
				entry.desiredVersion = this.#options.hub.patchDesired(device.deviceId, {deviceUpdate: {__t: "c", service: {
					workflow: {action: 3, id: deployment.workflowId},
					updateManifest: update.manifest,
					updateManifestSignature: update.signature,
					fileUrls,
				}}}).version;
			}
			catch (error) {
				// The twin refused it (for example the 32 KB limit): this device never got the deployment.
				entry.state = "failed";
				entry.reason = `the desired patch was refused: ${(error as Error).message}`;
				continue;
			}
			this.#active.set(device.deviceId, {deployment, entry});
		}
		this.#options.log(`adu: deployment ${deployment.deploymentId} of ${updateKey(updateId)} to ${deviceIds.length} device(s), workflow ${deployment.workflowId}`);
		return {deploymentId: deployment.deploymentId};
	}

	#supersede(deviceId: string, by: string): void {
		const active = this.#active.get(deviceId);
		if (!active) return;
		this.#active.delete(deviceId);
		if (active.entry.state === "inProgress") {
			active.entry.state = "canceled";
			active.entry.reason = `superseded by deployment ${by}`;
		}
	}

	#deployment(deploymentId: string): Deployment {
		const deployment = this.#deployments.get(deploymentId);
		if (!deployment) throw new EmulatorHttpError(404, `No deployment "${deploymentId}".`);
		return deployment;
	}

	#deploymentView(d: Deployment): DeploymentView {
		return {
			deploymentId: d.deploymentId,
			updateId: {...d.update.updateId},
			workflowId: d.workflowId,
			fileUrlScheme: d.fileUrlScheme,
			createdDateTime: d.createdDateTime,
			canceled: d.canceled,
			state: overallState(d.canceled, d.entries),
			devices: d.entries.map(e => ({
				deviceId: e.deviceId,
				state: e.state,
				...(e.reason !== undefined ? {reason: e.reason} : {}),
				desiredVersion: e.desiredVersion,
				reported: structuredClone(e.reported),
				download: this.#files.downloads(d.update.fileId, e.deviceId),
				problems: [...e.problems],
				updatedDateTime: e.updatedDateTime,
			})),
		};
	}

	deployment(deploymentId: string): DeploymentView {
		return this.#deploymentView(this.#deployment(deploymentId));
	}

	deployments(): DeploymentView[] {
		return [...this.#deployments.values()].map(d => this.#deploymentView(d));
	}

	/** Sends the devices still on this deployment the cancel request; their open entries become canceled. */
	cancel(deploymentId: string): DeploymentView {
		const deployment = this.#deployment(deploymentId);
		if (!deployment.canceled) {
			deployment.canceled = true;
			for (const entry of deployment.entries) {
				if (this.#active.get(entry.deviceId)?.deployment !== deployment) continue;
				this.#active.delete(entry.deviceId);
				if (entry.state === "inProgress") {
					entry.state = "canceled";
					entry.reason = "the deployment was canceled";
				}
				if (!this.#options.registry.devices.has(entry.deviceId)) continue;
				this.#options.hub.patchDesired(entry.deviceId, {deviceUpdate: {__t: "c", service: {
					workflow: {...CANCEL_WORKFLOW}, updateManifest: null, updateManifestSignature: null, fileUrls: null,
				}}});
			}
			this.#options.log(`adu: deployment ${deploymentId} canceled`);
		}
		return this.#deploymentView(deployment);
	}

	/** A reported patch the hub accepted; `reported` is the section after the merge (read only). */
	observe(deviceId: string, patch: Record<string, unknown>, reported: Record<string, unknown>): void {
		if (!isPlainObject(patch.deviceUpdate)) return;
		const active = this.#active.get(deviceId);
		if (!active) return;
		const {deployment, entry} = active;
		if (judge(entry, {updateId: deployment.update.updateId, workflowId: deployment.workflowId}, patch.deviceUpdate, reported))
			this.#options.log(`adu: deployment ${deployment.deploymentId}: device ${deviceId} ${entry.state}${entry.reason ? ` (${entry.reason})` : ""}`);
	}

	close(): Promise<void> {
		return this.#files.close();
	}
}
