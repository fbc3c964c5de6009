/*
 * The bounded telemetry queue. Overflow policy: reject the new message, never drop an accepted
 * one. A message is either accepted (and then stays until the hub acknowledges it or the client
 * is closed, in which case its promise rejects with hub.closed) or refused at once with queue.full;
 * nothing accepted disappears silently. Dropping the oldest instead would hide data loss from the
 * application, which is the failure users of the peer SDKs complain about.
 *
 * Entries keep their acceptance order. Messages in flight when a connection ends go back to
 * "unsent" in place, so after a reconnect they are sent again first and in the same order.
 */

import type {AzureIoTError} from "../errors.js";

export interface OutboxEntry {
	readonly messageId: string;
	/** Property bag without the topic prefix: the device id may change (retarget) before it is sent. */
	readonly bag: string;
	readonly payload: Uint8Array;
	/** Connection generation it is in flight on, or 0 when waiting to be sent. */
	inFlight: number;
	/** How many times it has been published. */
	sends: number;
	/** Told how it ended (one function, not a promise's two: each costs heap while the message waits). */
	readonly done: (error: AzureIoTError | null, result?: {messageId: string}) => void;
}

export class Outbox {
	readonly limit: number;
	private _entries: OutboxEntry[] = [];

	constructor(limit: number) {
		if (!Number.isInteger(limit) || limit < 1) throw new RangeError("queueLimit must be an integer of at least 1");
		this.limit = limit;
	}

	get length(): number {
		return this._entries.length;
	}

	get inFlight(): number {
		let n = 0;
		for (const e of this._entries) if (e.inFlight) n++;
		return n;
	}

	/** False when full: the caller must refuse the message (reject-new policy). */
	accept(entry: OutboxEntry): boolean {
		if (this._entries.length >= this.limit) return false;
		this._entries.push(entry);
		return true;
	}

	/** The oldest entry not in flight. */
	nextUnsent(): OutboxEntry | undefined {
		return this._entries.find(e => !e.inFlight);
	}

	has(entry: OutboxEntry): boolean {
		return this._entries.includes(entry);
	}

	/** Removes an acknowledged (or finally refused) entry; false if it was already gone. */
	remove(entry: OutboxEntry): boolean {
		const i = this._entries.indexOf(entry);
		if (i < 0) return false;
		this._entries.splice(i, 1);
		return true;
	}

	/** Puts everything in flight on `generation` (all, if omitted) back to unsent, in place. */
	requeue(generation?: number): void {
		for (const e of this._entries)
			if (e.inFlight && (generation === undefined || e.inFlight === generation)) e.inFlight = 0;
	}

	/** Empties the queue and returns what was in it (close()). */
	drain(): OutboxEntry[] {
		const entries = this._entries;
		this._entries = [];
		return entries;
	}
}

Object.freeze(Outbox.prototype);
Object.freeze(Outbox);
