/*
 * Reported properties, merged: what the application reports in one turn, or while the hub is
 * unreachable, goes out as one patch (reported properties are state, so the latest value of each is
 * what counts; IoT Hub throttles twin updates). One patch is in flight at a time, so they reach the
 * hub in order. A patch that failed for a reason a retry can fix (no reply, a dropped connection,
 * 429 or 5xx) is merged back under what came after it and sent again; only a refusal that sending
 * again cannot fix reaches the callbacks as an error.
 */
import type {HostAdapter} from "../host.js";
import type {AzureIoTError} from "../errors.js";
import type {HubClient} from "../hub.js";
import {mergePatch} from "../pnp.js";
import {asError} from "./lifecycle.js";

export type ReportCallback = (error: AzureIoTError | null, version?: number) => void;

interface Waiting {
	/** What the twin.reported event says of this report, beside the version. */
	summary: Record<string, unknown>;
	callback?: ReportCallback;
}

const RETRY_MS = 10_000;

export class ReportQueue {
	private _adapter: HostAdapter;
	private _owner: {emit(event: {event: string; [key: string]: unknown}): void};
	private _hub?: HubClient;
	private _connected = false;
	private _pending: Record<string, unknown> | undefined;
	private _waiting: Waiting[] = [];
	private _inFlight = false;
	private _scheduled = false;
	private _retryTimer: unknown;
	private _closed = false;

	/** `owner.emit` prints the events (an object rather than a function: no closure to keep). */
	constructor(adapter: HostAdapter, owner: {emit(event: {event: string; [key: string]: unknown}): void}) {
		this._adapter = adapter;
		this._owner = owner;
	}

	attach(hub: HubClient): void {
		this._hub = hub;
	}

	set connected(connected: boolean) {
		this._connected = connected;
		if (connected) this._schedule();
	}

	add(patch: Record<string, unknown>, summary: Record<string, unknown>, callback?: ReportCallback): void {
		if (!this._pending) this._pending = {};
		mergePatch(this._pending, patch);
		this._waiting.push({summary, callback});
		this._schedule();
	}

	close(error: AzureIoTError): void {
		this._closed = true;
		this._adapter.clearTimer(this._retryTimer);
		const waiting = this._waiting;
		this._waiting = [];
		this._pending = undefined;
		for (const w of waiting) call(w, error);
	}

	/** In a job of its own: everything reported in this turn joins the one patch. */
	private _schedule(): void {
		if (this._scheduled || this._inFlight || !this._pending || !this._connected || this._closed) return;
		this._scheduled = true;
		Promise.resolve().then(() => {
			this._scheduled = false;
			this._flush();
		});
	}

	private _flush(): void {
		const hub = this._hub;
		if (!hub || !this._pending || this._inFlight || !this._connected || this._closed) return;
		const patch = this._pending;
		const waiting = this._waiting;
		this._pending = undefined;
		this._waiting = [];
		this._inFlight = true;
		// A callback, not a promise chain: the patch waiting for its reply holds less heap.
		hub.queueReported(patch, (e, version) => {
			this._inFlight = false;
			if (!e) {
				for (const w of waiting) {
					this._owner.emit({event: "twin.reported", version, ...w.summary});
					call(w, null, version);
				}
				this._schedule();
				return;
			}
			const error = asError(e);
			if (this._closed) {
				for (const w of waiting) call(w, error);
				return;
			}
			if (error.retriable || error.code === "mqtt.timeout" || error.code === "mqtt.closed") {
				// Sent again, under whatever was reported since (that is newer).
				const later = this._pending;
				this._pending = patch;
				if (later) mergePatch(this._pending, later);
				this._waiting = waiting.concat(this._waiting);
				this._adapter.clearTimer(this._retryTimer);
				this._retryTimer = this._adapter.setTimer(() => this._schedule(), RETRY_MS);
				return;
			}
			this._owner.emit({event: "error", code: error.code, message: `reported properties refused: ${error.message}`});
			for (const w of waiting) call(w, error);
			this._schedule();
		});
	}
}

function call(w: Waiting, error: AzureIoTError | null, version?: number): void {
	try {
		w.callback?.(error, version);
	}
	catch {
		// an application's callback must not stop the others
	}
}

Object.freeze(ReportQueue.prototype);
Object.freeze(ReportQueue);
