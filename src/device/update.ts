/*
 * Device Update for IoT Hub on the device: the `deviceUpdate` component of the twin, driven by the
 * pure state machine of src/adu/state.ts. This file does its I/O: the reports and acknowledgements
 * (in order, one at a time, never merged: a 255 followed by a 0 must reach the service as two
 * reports), the signature check, the decision, the download (streamed, resumed with Range after a
 * drop), the hash of the image as written, making it bootable, the records that outlive a restart
 * (Preference keys aduLast and aduPending) and the restart itself; and it tells the application
 * what happens, as `update.*` events.
 *
 * Rollback: a new image is confirmed once it reaches the hub (ESP-IDF's app rollback: until then the
 * bootloader would go back to the previous image); one that has not after rollbackAfterMs goes back
 * at once. The image then running finds the record of the pending update, sees that it is not that
 * update, and reports the failure (255, then 0 with its own id). On the simulator the runner does the
 * going back (tools/sim-runner.ts).
 */
import type {HostAdapter, ImageSink, ImageStore, Sha256, TimerHandle} from "../host.js";
import type {HubClient} from "../hub.js";
import {AzureIoTError, configError, type ErrorCode} from "../errors.js";
import {ADU_CONTRACT_MODEL_ID, type CustomProperty, type DeviceProperties, type UpdateId} from "../adu/agent.js";
import type {ReasonName} from "../adu/codes.js";
import {verifyManifestSignature} from "../adu/jws.js";
import {checkDeployment, type DeploymentTarget} from "../adu/manifest.js";
import {ADU_ROOT_KEYS, extendRootKeys, type RootKey, type RootKeyTable} from "../adu/root-keys.js";
import {createAduState, reduceAdu, type AduInput, type AduOutput, type AduState, type PendingUpdate, type WorkflowRecord} from "../adu/state.js";
import {clipUrl, httpGet, parseHttpUrl, type HttpRequest} from "../http.js";
import {isDigits} from "../chars.js";
import type {Settings} from "../settings.js";
import type {DeviceEvent, Platform} from "./platform.js";
import {asError} from "./lifecycle.js";

export {ADU_CONTRACT_MODEL_ID};

/** What the application says of its Device Update; each field defaults to the setting named. */
export interface UpdateOptions {
	/** The device's manufacturer and model as the update manifests' compatibility names them (aduManufacturer, aduModel). */
	manufacturer?: string;
	model?: string;
	/** Up to 5 more device properties; name them in compatPropertyNames to group devices by them. */
	customProperties?: readonly CustomProperty[];
	compatPropertyNames?: string;
	/** The update id of the running image (aduProvider, default the manufacturer; aduName, default the model; firmwareVersion). */
	provider?: string;
	name?: string;
	version?: string;
	/** What an update's installedCriteria must equal for it to count as installed already; default the version. */
	installedCriteria?: string;
	/** The update handler this device implements; default "microsoft/swupdate:1". */
	handler?: string;
	/** Root keys trusted besides Microsoft's (and the aduRootKey setting's). */
	rootKeys?: readonly RootKey[];
	/** A new image that has not reached the hub after this long goes back to the previous one (aduRollbackMs). */
	rollbackAfterMs?: number;
}

interface UpdateConfig {
	readonly device: DeviceProperties;
	readonly compatPropertyNames?: string;
	readonly installed: UpdateId;
	readonly installedCriteria: string;
	readonly handler?: string;
	readonly rootKeys: RootKeyTable;
	readonly rollbackAfterMs: number;
}

/** Preference keys (at most 15 characters): the last workflow's outcome, and the update the device restarts into. */
export const LAST_KEY = "aduLast";
export const PENDING_KEY = "aduPending";

const REPORT_RETRY_MS = 5000;
const MAX_QUEUED_REPORTS = 16;
/** After a dropped download, wait this long (times the attempt) before resuming. */
const RESUME_DELAY_MS = 1000;
const MAX_REDIRECTS = 3;
/** How long the reports before a restart may take to be acknowledged. */
const RESTART_WAIT_MS = 30_000;
/** Read back and hash this much per turn, so that MQTT keeps running while a large image is hashed. */
const HASH_SLICE_BYTES = 32 * 1024;
const HASH_READ_BYTES = 4096;

const REASON_CODES: Readonly<Record<ReasonName, ErrorCode>> = Object.freeze({
	badRequest: "adu.request",
	badManifest: "adu.request",
	jwsFormat: "adu.signature",
	jwsAlgorithm: "adu.signature",
	jwsUnknownRootKey: "adu.signature",
	jwsRootSignature: "adu.signature",
	jwsSigningKey: "adu.signature",
	jwsManifestSignature: "adu.signature",
	jwsManifestHash: "adu.signature",
	incompatible: "adu.incompatible",
	unsupportedSteps: "adu.incompatible",
	unsupportedHandler: "adu.incompatible",
	alreadyInstalled: "adu.alreadyInstalled",
	unsupportedFiles: "adu.incompatible",
	tooLarge: "adu.tooLarge",
	noFileUrl: "adu.incompatible",
	refusedByApplication: "adu.incompatible",
	downloadFailed: "adu.download",
	fileSizeMismatch: "adu.download",
	fileHashMismatch: "adu.hash",
	installFailed: "adu.install",
	rolledBack: "adu.rolledBack",
	cancelled: "adu.download",
});

/** Checks what the application and the settings say; throws a config error naming the field. */
export function resolveUpdateConfig(option: UpdateOptions | true, settings: Settings, platform: Platform): UpdateConfig {
	const o: UpdateOptions = option === true ? {} : option;
	if (typeof o !== "object" || o === null) throw configError("update", "is not an object", "Pass {manufacturer, model, ...}, true (everything from the settings), or leave it out");
	if (!platform.images) throw configError("update", "is set, but this platform has no image store (platform.images)", "Build for the ESP32 or the simulator, or give the Node platform an image file (createNodePlatform({images}))");
	if (typeof platform.adapter.sha256 !== "function") throw configError("update", "is set, but the host adapter has no sha256()", "Use a host that provides SHA-256 (hosts/moddable, hosts/node)");
	if (!platform.adapter.storage) throw configError("update", "is set, but the host adapter has no storage", "Device Update keeps what it did across restarts in storage (Preference): give the host one");
	const manufacturer = o.manufacturer ?? settings.aduManufacturer;
	const model = o.model ?? settings.aduModel;
	const device: DeviceProperties = {
		manufacturer: manufacturer as string,
		model: model as string,
		...(o.customProperties ? {customProperties: o.customProperties} : {}),
	};
	createAduState({device, ...(o.compatPropertyNames !== undefined ? {compatPropertyNames: o.compatPropertyNames} : {})});
	const installed: UpdateId = Object.freeze({
		provider: o.provider ?? settings.aduProvider ?? device.manufacturer,
		name: o.name ?? settings.aduName ?? device.model,
		version: o.version ?? settings.firmwareVersion,
	});
	for (const key of ["provider", "name", "version"] as const)
		if (typeof installed[key] !== "string" || !installed[key]) throw configError(`update.${key}`, "is missing or empty", "Give the update id of the running image, as it is imported into Device Update");
	const installedCriteria = o.installedCriteria ?? installed.version;
	if (typeof installedCriteria !== "string") throw configError("update.installedCriteria", "is not a string", "Leave it out for the version");
	if (o.handler !== undefined && (typeof o.handler !== "string" || !o.handler)) throw configError("update.handler", "is not a handler name", "Leave it out for microsoft/swupdate:1");
	const extra: RootKey[] = [...(o.rootKeys ?? [])];
	if (settings.aduRootKey) extra.push(settings.aduRootKey);
	const rootKeys = extra.length ? extendRootKeys(ADU_ROOT_KEYS, extra) : ADU_ROOT_KEYS;
	const rollbackAfterMs = o.rollbackAfterMs ?? settings.aduRollbackMs;
	if (!(typeof rollbackAfterMs === "number" && rollbackAfterMs >= 1000)) throw configError("update.rollbackAfterMs", "is not a number of at least 1000 ms", "Give how long a new image may take to reach the hub");
	return Object.freeze({
		device: Object.freeze(device),
		...(o.compatPropertyNames !== undefined ? {compatPropertyNames: o.compatPropertyNames} : {}),
		installed, installedCriteria,
		...(o.handler !== undefined ? {handler: o.handler} : {}),
		rootKeys, rollbackAfterMs,
	});
}

interface Download {
	readonly ticket: number;
	readonly workflowId: string;
	readonly size: number;
	readonly sink: ImageSink;
	/** The hash over the bytes as written; undefined when the sink reads back (then that is hashed). */
	readonly hash: Sha256 | undefined;
	written: number;
	/** Tenths of the file reported so far (update.download events). */
	tenths: number;
	attempt: number;
	request?: HttpRequest;
	timer?: TimerHandle;
}

export interface UpdateHooks {
	emit(event: DeviceEvent): void;
	/** A refused or failed update, for the application's onError. */
	error(error: AzureIoTError): void;
}

// State is in TypeScript-private properties, not #private names: XS copies every outer name a
// function uses, #names included, into its stack frame (BENCHMARKS.md, finding 6).
export class DeviceUpdate {
	private _adapter: HostAdapter;
	private _platform: Platform;
	private _images: ImageStore;
	private _config: UpdateConfig;
	private _hooks: UpdateHooks;
	private _state: AduState;
	private _hub: HubClient | undefined;
	private _connected = false;
	private _booted = false;
	private _opened = false;
	private _closed = false;
	/** Delivered before the boot: handed over right after it. */
	private _early: {version: number; service: unknown} | undefined;
	private _queue: string[] = [];
	private _inFlight = false;
	private _retryTimer: TimerHandle | undefined;
	private _rollbackTimer: TimerHandle | undefined;
	private _restartTimer: TimerHandle | undefined;
	private _restarting = false;
	private _download: Download | undefined;
	private _workflows: Record<number, string> = {};

	constructor(platform: Platform, config: UpdateConfig, hooks: UpdateHooks) {
		this._platform = platform;
		this._adapter = platform.adapter;
		this._images = platform.images!;
		this._config = config;
		this._hooks = hooks;
		this._state = createAduState({device: config.device, ...(config.compatPropertyNames !== undefined ? {compatPropertyNames: config.compatPropertyNames} : {})});
		let pending = false;
		try {
			pending = this._images.runningState?.() === "pending";
		}
		catch (e) {
			this._log(`cannot read the state of the running image: ${message(e)}`);
		}
		if (pending) {
			this._emit({event: "update.pendingConfirmation", installed: config.installed, rollbackAfterMs: config.rollbackAfterMs});
			this._rollbackTimer = this._adapter.setTimer(() => this._rollBack(), config.rollbackAfterMs);
		}
	}

	/** The installed update id the device reports. */
	get installed(): UpdateId {
		return this._config.installed;
	}

	attach(hub: HubClient): void {
		this._hub = hub;
	}

	/** Connected to the hub (subscribed), or not any more. The first connection confirms a new image and starts the agent. */
	setConnected(connected: boolean): void {
		if (this._closed) return;
		this._connected = connected;
		if (connected && !this._booted) {
			if (this._opened) this._boot();
			return;
		}
		if (connected) this._flush();
	}

	/**
	 * The hub client's first twin read is over: the agent starts now, not at the connection itself,
	 * whose twin read, subscriptions and the application's first report set the firmware's heap peak
	 * (the agent's report and its stack on top of them did not fit the ESP32's default heap).
	 */
	opened(): void {
		if (this._closed || this._opened) return;
		this._opened = true;
		if (this._connected && !this._booted) {
			this._boot();
			this._flush();
		}
	}

	/** `desired.deviceUpdate.service` from the twin read or a patch, with the desired $version. */
	desired(version: number, service: unknown): void {
		if (this._closed) return;
		if (!this._booted) {
			this._early = {version, service};
			return;
		}
		this._feed({type: "desired", version, service});
	}

	close(): void {
		if (this._closed) return;
		this._closed = true;
		this._adapter.clearTimer(this._retryTimer);
		this._adapter.clearTimer(this._rollbackTimer);
		this._adapter.clearTimer(this._restartTimer);
		// A partial image is of no use to the next start (an OTA handle left open would hold the partition).
		this._stopDownload(true);
		this._queue = [];
	}

	// --- the state machine ---

	private _boot(): void {
		this._booted = true;
		if (this._rollbackTimer !== undefined) {
			this._adapter.clearTimer(this._rollbackTimer);
			this._rollbackTimer = undefined;
			try {
				this._images.confirm?.();
				this._emit({event: "update.confirmed", installed: this._config.installed});
			}
			catch (e) {
				this._log(`cannot confirm the running image: ${message(e)}`);
			}
		}
		const storage = this._adapter.storage!;
		const last = readRecord(storage.get(LAST_KEY));
		const pendingUpdate = readRecord(storage.get(PENDING_KEY)) as unknown as PendingUpdate | undefined;
		const installed = this._config.installed;
		const input: AduInput = {
			type: "boot",
			installed,
			...(last !== undefined ? {last: last as unknown as WorkflowRecord} : {}),
			...(pendingUpdate !== undefined ? {pending: {update: pendingUpdate, outcome: sameUpdateId(pendingUpdate.updateId, installed) ? "booted" : "rolledBack"}} : {}),
		};
		this._feed(input);
		const early = this._early;
		this._early = undefined;
		if (early) this._feed({type: "desired", version: early.version, service: early.service});
	}

	private _feed(input: AduInput): void {
		if (this._closed) return;
		const before = this._state;
		let step;
		try {
			step = reduceAdu(before, input);
		}
		catch (e) {
			// Only a bug gets here (the reducer checks its input): say so, and carry on with the state as it was.
			this._emit({event: "error", code: "internal", message: `deviceUpdate: ${message(e)}`});
			return;
		}
		this._state = step.state;
		for (const output of step.outputs) {
			try {
				this._do(output);
			}
			catch (e) {
				this._emit({event: "error", code: "internal", message: `deviceUpdate ${output.type}: ${message(e)}`});
			}
		}
		const job = before.job;
		if (input.type === "desired" && job && step.state.job?.ticket !== job.ticket && !step.outputs.some(o => o.type === "remember" || o.type === "restart")) {
			const replaced = step.state.job?.request.workflow.id;
			this._emit({event: "update.canceled", workflowId: job.request.workflow.id, ...(replaced ? {replacedBy: replaced} : {})});
		}
	}

	/** Feeds later, never from inside the call that produced the output. */
	private _soon(input: () => AduInput | undefined): void {
		this._adapter.setTimer(() => {
			if (this._closed) return;
			let value: AduInput | undefined;
			try {
				value = input();
			}
			catch (e) {
				this._emit({event: "error", code: "internal", message: `deviceUpdate: ${message(e)}`});
				return;
			}
			if (value) this._feed(value);
		}, 0);
	}

	private _do(o: AduOutput): void {
		switch (o.type) {
		case "report":
		case "ack":
			this._send(o.payload);
			break;
		case "verify":
			this._workflows = {[o.ticket]: this._state.job?.request.workflow.id ?? ""};
			this._emit({event: "update.offered", workflowId: this._workflows[o.ticket]});
			this._soon(() => ({type: "verified", ticket: o.ticket, result: verifyManifestSignature(o.manifest, o.signature, this._config.rootKeys, () => this._adapter.sha256!(), this._modPow())}));
			break;
		case "decide":
			this._soon(() => this._decide(o));
			break;
		case "download":
			this._startDownload(o);
			break;
		case "abortDownload":
			this._stopDownload(true);
			break;
		case "hash":
			this._hash(o.ticket);
			break;
		case "install":
			this._install(o.ticket, o.pending);
			break;
		case "restart":
			this._restart();
			break;
		case "remember":
			this._adapter.storage!.set(LAST_KEY, JSON.stringify(o.record));
			this._outcome(o);
			break;
		case "forgetPending":
			this._adapter.storage!.delete(PENDING_KEY);
			break;
		case "log":
			this._log(o.message);
			break;
		}
	}

	/** The host's native exponentiation, bound to it; undefined for the core's own. */
	private _modPow(): ((base: bigint, e: bigint, n: bigint) => bigint) | undefined {
		const adapter = this._adapter;
		return typeof adapter.modPow === "function" ? (base, e, n) => adapter.modPow!(base, e, n) : undefined;
	}

	private _decide(o: Extract<AduOutput, {type: "decide"}>): AduInput {
		const c = this._config;
		const target: DeploymentTarget = {
			...c.device,
			...(c.handler !== undefined ? {handler: c.handler} : {}),
			installedCriteria: c.installedCriteria,
			availableBytes: this._images.capacity,
		};
		const decision = checkDeployment(o.manifest, target, o.fileUrls);
		if (decision.accept) {
			const p = decision.plan;
			this._emit({event: "update.accepted", workflowId: this._workflows[o.ticket], updateId: p.updateId, fileName: p.fileName, sizeInBytes: p.sizeInBytes, url: clipUrl(p.url)});
		}
		return {type: "decided", ticket: o.ticket, decision};
	}

	private _outcome(o: Extract<AduOutput, {type: "remember"}>): void {
		const workflowId = o.record.workflowId;
		if (o.record.outcome === "succeeded") {
			this._emit({event: "update.succeeded", workflowId, installed: this._config.installed});
			return;
		}
		const reason = o.reason ?? "refusedByApplication";
		const code = REASON_CODES[reason] ?? "adu.incompatible";
		const text = o.message ?? "";
		this._emit({event: o.record.outcome === "refused" ? "update.rejected" : "update.failed", workflowId, code, reason, message: text});
		if (reason !== "alreadyInstalled") this._hooks.error(new AzureIoTError(code, `Device Update workflow ${workflowId} ${o.record.outcome}: ${text}`));
	}

	// --- download ---

	private _startDownload(o: Extract<AduOutput, {type: "download"}>): void {
		let d = this._download;
		if (o.offset === 0) {
			this._stopDownload(true);
			let sink: ImageSink;
			try {
				sink = this._images.begin(o.sizeInBytes);
			}
			catch (e) {
				const text = message(e);
				this._soon(() => ({type: "downloadFailed", ticket: o.ticket, message: `cannot start writing the image: ${text}`}));
				return;
			}
			d = this._download = {
				ticket: o.ticket, workflowId: this._workflows[o.ticket] ?? "", size: o.sizeInBytes, sink,
				hash: sink.read ? undefined : this._adapter.sha256!(), written: 0, tenths: 0, attempt: 0,
			};
		}
		else if (!d || d.ticket !== o.ticket || d.written !== o.offset) {
			this._soon(() => ({type: "downloadFailed", ticket: o.ticket, message: `cannot resume at byte ${o.offset}: the image written so far is not there any more`}));
			return;
		}
		const job = d;
		job.attempt++;
		job.timer = this._adapter.setTimer(() => {
			job.timer = undefined;
			this._request(job, o.url, 0);
		}, o.offset === 0 ? 0 : RESUME_DELAY_MS * (job.attempt - 1));
	}

	private _request(d: Download, url: string, redirects: number): void {
		if (this._download !== d) return;
		const from = d.written;
		let skip = 0;
		const fail = (text: string, retriable: boolean) => {
			if (this._download !== d) return;
			d.request?.abort();
			d.request = undefined;
			this._progress(d, true);
			this._feed({type: "downloadFailed", ticket: d.ticket, message: text, retriable});
		};
		if (from) this._emit({event: "update.resuming", workflowId: d.workflowId, bytes: from, total: d.size, attempt: d.attempt});
		d.request = httpGet(this._adapter, {url, roots: this._platform.roots, headers: from ? {Range: `bytes=${from}-${d.size - 1}`} : {}}, {
			onResponse: r => {
				const location = r.headers.location;
				if (r.status >= 300 && r.status < 400 && location) {
					if (redirects >= MAX_REDIRECTS) return fail(`more than ${MAX_REDIRECTS} redirects from ${clipUrl(url)}`, false);
					if (typeof parseHttpUrl(location) === "string") return fail(`${clipUrl(url)} redirects to a relative, non-HTTP or malformed location`, false);
					d.request?.abort();
					d.request = undefined;
					this._request(d, location, redirects + 1);
					return;
				}
				if (r.status === 206) {
					if (rangeStart(r.headers["content-range"] ?? "") !== from) return fail(`the file server answered the range from byte ${from} with ${JSON.stringify(r.headers["content-range"] ?? "no Content-Range")}`, false);
				}
				else if (r.status === 200) skip = from; // the server ignored Range: the bytes written already are skipped
				else return fail(`the file server answered ${r.status} for ${clipUrl(url)}`, r.status === 408 || r.status === 429 || r.status >= 500);
			},
			onData: bytes => {
				if (this._download !== d) return;
				let chunk = bytes;
				if (skip) {
					const n = Math.min(skip, chunk.length);
					skip -= n;
					chunk = chunk.subarray(n);
					if (!chunk.length) return;
				}
				if (d.written + chunk.length > d.size) {
					// More than the manifest says: the state machine refuses the file for its size.
					const size = d.written + chunk.length;
					d.request?.abort();
					d.request = undefined;
					this._progress(d, true);
					this._feed({type: "downloaded", ticket: d.ticket, size});
					return;
				}
				try {
					d.sink.write(chunk);
				}
				catch (e) {
					fail(`cannot write the image at byte ${d.written}: ${message(e)}`, false);
					return;
				}
				d.hash?.update(chunk);
				d.written += chunk.length;
				this._progress(d, false);
			},
			onEnd: () => {
				if (this._download !== d) return;
				d.request = undefined;
				if (d.written === d.size) {
					this._progress(d, true);
					this._feed({type: "downloaded", ticket: d.ticket, size: d.written});
				}
				else if (skip) fail(`the file server's whole-file answer ended before byte ${from}`, true);
				else fail(`the download ended after ${d.written} of ${d.size} bytes`, true);
			},
			onError: error => {
				if (this._download !== d) return;
				d.request = undefined;
				fail(`${error.kind}: ${error.message}`, true);
			},
		});
	}

	/** update.download at most every 10%; the state machine learns the count then, and before any end. */
	private _progress(d: Download, always: boolean): void {
		const tenths = Math.floor(d.written * 10 / d.size);
		if (tenths > d.tenths) {
			d.tenths = tenths;
			this._emit({event: "update.download", workflowId: d.workflowId, bytes: d.written, total: d.size});
		}
		else if (!always) return;
		this._feed({type: "downloadProgress", ticket: d.ticket, received: d.written});
	}

	private _stopDownload(abortImage: boolean): void {
		const d = this._download;
		if (!d) return;
		this._download = undefined;
		this._adapter.clearTimer(d.timer);
		d.request?.abort();
		if (abortImage) {
			try {
				d.sink.abort();
			}
			catch (e) {
				this._log(`cannot drop the partial image: ${message(e)}`);
			}
		}
	}

	private _hash(ticket: number): void {
		const d = this._download;
		if (!d || d.ticket !== ticket) {
			this._soon(() => ({type: "hashed", ticket, sha256: new Uint8Array(0)}));
			return;
		}
		if (d.hash) {
			const digest = d.hash.digest();
			this._soon(() => ({type: "hashed", ticket, sha256: digest}));
			return;
		}
		const h = this._adapter.sha256!();
		let offset = 0;
		const slice = () => {
			if (this._download !== d || this._closed) return;
			try {
				const end = Math.min(d.size, offset + HASH_SLICE_BYTES);
				while (offset < end) {
					const n = Math.min(HASH_READ_BYTES, end - offset);
					h.update(d.sink.read!(offset, n));
					offset += n;
				}
			}
			catch (e) {
				this._log(`cannot read the image back at byte ${offset}: ${message(e)}`);
				this._feed({type: "hashed", ticket, sha256: new Uint8Array(0)});
				return;
			}
			if (offset < d.size) this._adapter.setTimer(slice, 0);
			else this._feed({type: "hashed", ticket, sha256: h.digest()});
		};
		this._adapter.setTimer(slice, 0);
	}

	private _install(ticket: number, pending: PendingUpdate): void {
		const d = this._download;
		const workflowId = pending.workflow.id;
		this._emit({event: "update.verified", workflowId, updateId: pending.updateId});
		this._emit({event: "update.installing", workflowId, updateId: pending.updateId});
		if (!d || d.ticket !== ticket) {
			this._soon(() => ({type: "installFailed", ticket, message: "the image is not there any more"}));
			return;
		}
		const storage = this._adapter.storage!;
		try {
			// The record first: should the device stop right after the boot partition is set, the new image still knows what it is.
			storage.set(PENDING_KEY, JSON.stringify(pending));
			d.sink.complete();
		}
		catch (e) {
			storage.delete(PENDING_KEY);
			const text = message(e);
			this._soon(() => ({type: "installFailed", ticket, message: text}));
			return;
		}
		this._download = undefined;
		this._soon(() => ({type: "installed", ticket}));
	}

	private _restart(): void {
		this._restarting = true;
		this._restartTimer = this._adapter.setTimer(() => this._restartNow(), RESTART_WAIT_MS);
		this._flush();
	}

	private _restartNow(): void {
		if (this._closed || !this._restarting) return;
		this._restarting = false;
		this._adapter.clearTimer(this._restartTimer);
		this._emit({event: "update.rebooting", installed: this._config.installed});
		const images = this._images;
		const restart = images.restart ? () => images.restart!() : this._platform.reboot;
		if (!restart) {
			this._emit({event: "error", code: "adu.install", message: "the update is installed, but this platform cannot restart: the new image runs at the next start"});
			return;
		}
		// On a fresh stack, after the event has gone out.
		this._adapter.setTimer(() => {
			try {
				restart();
			}
			catch (e) {
				this._emit({event: "error", code: "adu.install", message: `restart failed: ${message(e)}; the new image runs at the next start`});
			}
		}, 100);
	}

	private _rollBack(): void {
		this._rollbackTimer = undefined;
		if (this._closed || this._booted) return;
		this._emit({event: "update.rollingBack", installed: this._config.installed, afterMs: this._config.rollbackAfterMs});
		try {
			this._images.rollback?.();
		}
		catch (e) {
			this._emit({event: "error", code: "adu.rolledBack", message: `cannot go back to the previous image: ${message(e)}`});
		}
	}

	// --- reports: in order, one at a time ---

	private _send(payload: string): void {
		this._queue.push(payload);
		if (this._queue.length > MAX_QUEUED_REPORTS) {
			this._queue.shift();
			this._log(`deviceUpdate: more than ${MAX_QUEUED_REPORTS} reports wait for the hub; the oldest was dropped`);
		}
		this._flush();
	}

	private _flush(): void {
		if (this._closed || this._inFlight) return;
		const hub = this._hub;
		if (!this._queue.length) {
			if (this._restarting) this._restartNow();
			return;
		}
		if (!hub || !this._connected) return;
		const payload = this._queue[0];
		this._inFlight = true;
		hub.updateReportedJson(payload).then(version => {
			this._inFlight = false;
			if (this._queue[0] === payload) this._queue.shift();
			this._emit({event: "twin.reported", version, component: "deviceUpdate"});
			this._flush();
		}, e => {
			this._inFlight = false;
			if (this._closed) return;
			const error = asError(e);
			if (error.retriable || error.code === "mqtt.timeout" || error.code === "mqtt.closed" || error.code === "network") {
				this._adapter.clearTimer(this._retryTimer);
				this._retryTimer = this._adapter.setTimer(() => this._flush(), REPORT_RETRY_MS);
				return;
			}
			if (this._queue[0] === payload) this._queue.shift();
			this._emit({event: "error", code: error.code, message: `deviceUpdate report refused: ${error.message}`});
			this._flush();
		});
	}

	private _emit(event: DeviceEvent): void {
		try {
			this._hooks.emit(event);
		}
		catch {
			// printing must never stop the update
		}
	}

	private _log(line: string): void {
		this._adapter.log?.(`adu: ${line}`);
	}
}

/** Versions compare by their numbers where they are numbers, as ADU drops leading zeros ("1.01" is "1.1"). */
export function sameUpdateId(a: UpdateId | undefined, b: UpdateId): boolean {
	if (!a || typeof a !== "object") return false;
	const norm = (v: string) => String(v).split(".").map(p => isDigits(p) ? String(Number(p)) : p).join(".");
	return a.provider === b.provider && a.name === b.name && norm(a.version) === norm(b.version);
}

function readRecord(text: string | undefined): Record<string, unknown> | undefined {
	if (typeof text !== "string" || !text) return undefined;
	try {
		const value: unknown = JSON.parse(text);
		return typeof value === "object" && value !== null ? value as Record<string, unknown> : {};
	}
	catch {
		return {}; // malformed: the state machine says so and drops it
	}
}

function message(e: unknown): string {
	return e instanceof Error ? e.message : String(e);
}

Object.freeze(resolveUpdateConfig);
Object.freeze(sameUpdateId);
Object.freeze(DeviceUpdate.prototype);
Object.freeze(DeviceUpdate);

/**
 * The first byte of a 206's `Content-Range: bytes first-last/total` (total may be `*`), or
 * undefined when it is not that form. Without RegExp: src/chars.ts says why.
 */
function rangeStart(value: string): number | undefined {
	if (!value.startsWith("bytes ")) return undefined;
	const slash = value.indexOf("/");
	const dash = value.indexOf("-");
	if (slash < 0 || dash < 0 || dash > slash) return undefined;
	const first = value.slice(6, dash), last = value.slice(dash + 1, slash), total = value.slice(slash + 1);
	if (!isDigits(first) || !isDigits(last) || !(total === "*" || isDigits(total))) return undefined;
	return Number(first);
}
Object.freeze(rangeStart);
