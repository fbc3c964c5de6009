/*
 * The SDK's `timer` module on Node, for applications run on the Node host (tools/node-app.ts maps
 * `timer` here through tsconfig.json's paths): Timer.set, Timer.repeat, Timer.clear, Timer.delay
 * (typings/timer.d.ts), over Node's timers.
 */
type Callback = (timer: Timer) => void;

interface Handle {
	timeout?: NodeJS.Timeout;
	interval?: NodeJS.Timeout;
}

// A class and a type of the same name, as the SDK's typings have it.
class Timer {
	static set(callback: Callback, delay = 0, repeat?: number): Timer {
		const timer = new Timer();
		const handle: Handle = {};
		timers.set(timer, handle);
		handle.timeout = setTimeout(() => {
			if (repeat === undefined) timers.delete(timer);
			else handle.interval = setInterval(() => callback(timer), repeat);
			callback(timer);
		}, delay);
		return timer;
	}

	static repeat(callback: Callback, interval: number): Timer {
		return Timer.set(callback, interval, interval);
	}

	static clear(timer: Timer | undefined): void {
		if (!timer) return;
		const handle = timers.get(timer);
		if (!handle) return;
		clearTimeout(handle.timeout);
		clearInterval(handle.interval);
		timers.delete(timer);
	}

	static delay(ms: number): void {
		Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
	}
}

const timers = new Map<Timer, Handle>();

export default Timer;
