/*
 * Exponential backoff with full jitter (the AWS architecture blog's "full jitter"), with a floor.
 * Jitter spreads a fleet that lost its hub at the same moment; the floor keeps even the first retry
 * from being immediate, because an unexplained disconnect may be the hub throttling us and a tight
 * reconnect loop is what gets devices throttled for longer.
 */

export interface BackoffOptions {
	/** Cap of the first delay. Default 1000. */
	initialMs?: number;
	/** Largest delay. Default 60000. */
	maxMs?: number;
	/** Smallest delay, even on the first retry. Default initialMs / 2. */
	minMs?: number;
}

export interface BackoffSettings {
	readonly initialMs: number;
	readonly maxMs: number;
	readonly minMs: number;
}

export function backoffSettings(options: BackoffOptions = {}): BackoffSettings {
	const initialMs = options.initialMs ?? 1000;
	const maxMs = options.maxMs ?? 60000;
	if (!(initialMs >= 1) || !Number.isFinite(initialMs))
		throw new RangeError("backoff.initialMs must be a number of milliseconds of at least 1");
	if (!(maxMs >= initialMs) || !Number.isFinite(maxMs))
		throw new RangeError("backoff.maxMs must be at least backoff.initialMs");
	const minMs = Math.max(1, Math.min(options.minMs ?? initialMs / 2, initialMs));
	return Object.freeze({initialMs, maxMs, minMs});
}

/**
 * The delay before retry number `attempt` (0 for the first retry): uniform in [minMs, cap] where
 * cap = min(maxMs, initialMs * 2^attempt). Never below minMs, never 0.
 */
export function backoffDelay(attempt: number, settings: BackoffSettings, random: () => number): number {
	const exponent = Math.min(Math.max(0, Math.floor(attempt)), 30);
	const cap = Math.max(settings.minMs, Math.min(settings.maxMs, settings.initialMs * 2 ** exponent));
	let r = random();
	if (!(r >= 0) || !(r < 1)) r = 0.5; // a broken random source must not produce 0 ms or NaN
	return Math.max(settings.minMs, Math.round(settings.minMs + r * (cap - settings.minMs)));
}

/** Counts attempts; `next()` gives the next delay, `reset()` after a connection that proved stable. */
export class Backoff {
	readonly settings: BackoffSettings;
	private _random: () => number;
	private _attempt = 0;

	constructor(options: BackoffOptions, random: () => number) {
		this.settings = backoffSettings(options);
		this._random = random;
	}

	get attempt(): number {
		return this._attempt;
	}

	next(): number {
		return backoffDelay(this._attempt++, this.settings, this._random);
	}

	/**
	 * A long pause, for failures that retrying soon will not fix (credentials refused, certificate
	 * refused): uniform in [maxMs / 2, maxMs], and later retries stay at the cap.
	 */
	long(): number {
		this._attempt = Math.max(this._attempt, 31);
		const floor = Math.max(this.settings.minMs, this.settings.maxMs / 2);
		return backoffDelay(0, {initialMs: this.settings.maxMs, maxMs: this.settings.maxMs, minMs: floor}, this._random);
	}

	reset(): void {
		this._attempt = 0;
	}
}

Object.freeze(Backoff.prototype);
Object.freeze(Backoff);
Object.freeze(backoffSettings);
Object.freeze(backoffDelay);
