import test from "ava";
import {Backoff, backoffDelay, backoffSettings} from "../src/backoff.js";
import {seededRandom} from "./helpers/fake-host.js";

test("defaults: 1 s initial, 60 s max, floor of half the initial delay", t => {
	t.deepEqual({...backoffSettings()}, {initialMs: 1000, maxMs: 60000, minMs: 500});
	t.true(Object.isFrozen(backoffSettings()));
});

test("full jitter: each delay lies in [min, min(max, initial * 2^n)] and the cap doubles", t => {
	const settings = backoffSettings({initialMs: 1000, maxMs: 30000});
	for (let attempt = 0; attempt < 12; attempt++) {
		const cap = Math.min(30000, 1000 * 2 ** attempt);
		t.is(backoffDelay(attempt, settings, () => 0), 500, `attempt ${attempt}: the smallest delay is the floor`);
		t.is(backoffDelay(attempt, settings, () => 0.999999), cap, `attempt ${attempt}: the largest delay is the cap`);
	}
});

test("never 0 ms, never NaN, even with a broken random source or a tiny initial delay", t => {
	const settings = backoffSettings({initialMs: 1, maxMs: 10});
	for (const r of [0, -1, 1, NaN, Infinity]) {
		const d = backoffDelay(0, settings, () => r);
		t.true(d >= 1 && Number.isFinite(d), `random ${r} gave ${d}`);
	}
});

test("delays are spread (jitter), grow with attempts on average, and stay within bounds", t => {
	const b = new Backoff({initialMs: 1000, maxMs: 60000}, seededRandom(42));
	const delays = Array.from({length: 10}, () => b.next());
	for (const [i, d] of delays.entries()) {
		t.true(d >= 500 && d <= Math.min(60000, 1000 * 2 ** i), `delay ${i} = ${d}`);
	}
	t.true(new Set(delays).size > 5, "jittered delays differ");
	// Averages over many runs: later attempts wait longer.
	const mean = (attempt: number) => {
		const r = seededRandom(attempt + 7);
		let sum = 0;
		for (let i = 0; i < 500; i++) sum += backoffDelay(attempt, b.settings, r);
		return sum / 500;
	};
	t.true(mean(0) < mean(2) && mean(2) < mean(4) && mean(4) < mean(8));
});

test("reset() starts again from the initial delay; long() waits between max/2 and max and saturates", t => {
	const b = new Backoff({initialMs: 1000, maxMs: 8000}, () => 0.999999);
	t.is(b.next(), 1000);
	t.is(b.next(), 2000);
	t.is(b.next(), 4000);
	b.reset();
	t.is(b.next(), 1000);
	const low = new Backoff({initialMs: 1000, maxMs: 8000}, () => 0);
	t.is(low.long(), 4000);
	t.is(low.next(), 500, "the floor still applies after long()");
	t.true(low.attempt > 3);
	const high = new Backoff({initialMs: 1000, maxMs: 8000}, () => 0.999999);
	high.long();
	t.is(high.next(), 8000, "after long() the cap stays at max");
});

test("invalid settings are refused", t => {
	t.throws(() => backoffSettings({initialMs: 0}));
	t.throws(() => backoffSettings({initialMs: 1000, maxMs: 10}));
});
