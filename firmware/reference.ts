/*
 * The reference firmware's application: the original example's flow (Wi-Fi, clock, DPS, the
 * assigned hub) on the library, with its telemetry, methods and properties. It is an application
 * like any other (firmware/main.ts starts it): the README's own device and the examples are built
 * the same way.
 *
 * - telemetry every intervalMs: {seq, uptimeMs, bootCount, firmwareVersion}, property seq;
 * - reported on every connect: firmwareVersion, bootCount, and the writable telemetryIntervalMs
 *   (IoT Plug and Play: ac 203, av 0 until a desired value is applied);
 * - desired telemetryIntervalMs applied and acknowledged (ac 200, or 400 with the value in use);
 * - methods reboot, reprovision, setTelemetryInterval {"intervalMs": n}.
 */
import Timer from "timer";
import {Device, type Platform} from "azure-iot/device";

const MIN_MS = 1000, MAX_MS = 24 * 3600 * 1000;

/** Runs the reference device on a platform (the firmware's, or the Node host's in the tests). */
export function startReference(platform: Platform): Device {
	const emit = platform.emit;
	const startedAt = Date.now();
	let intervalMs = 0;
	let timer: Timer | undefined;
	let seq = 0;
	/** Set once a desired interval has been applied: the default is not reported any more. */
	let desiredApplied = false;

	const validInterval = (value: unknown): value is number =>
		typeof value === "number" && Number.isFinite(value) && value >= MIN_MS && value <= MAX_MS;

	const sendReading = () => {
		const n = ++seq;
		const body = {seq: n, uptimeMs: Date.now() - startedAt, bootCount: device.bootCount, firmwareVersion: device.settings.firmwareVersion};
		device.send(body, {properties: {seq: String(n)}, contentType: "application/json", contentEncoding: "utf-8"}, (error, result) => {
			if (!error) emit({event: "telemetry.acked", seq: n, messageId: result?.messageId});
			else if (error.code !== "queue.full" && error.code !== "device.closed") emit({event: "error", code: error.code, message: `telemetry ${n}: ${error.message}`});
		});
		emit({event: "telemetry.sent", seq: n});
	};

	const schedule = (ms: number) => {
		intervalMs = ms;
		if (timer !== undefined) Timer.clear(timer);
		timer = Timer.repeat(sendReading, ms);
	};

	const device = new Device({
		platform,
		onStateChange(state) {
			// Readings start with the hub connection, not after it is up: taken while it is being made
			// (or has dropped), they are queued and sent once it is up, or refused, and said so.
			if (state === "connecting" && timer === undefined) schedule(this.settings.intervalMs ?? 10_000);
			if (state === "connected") {
				this.report({
					firmwareVersion: this.settings.firmwareVersion,
					bootCount: this.bootCount,
					...(desiredApplied ? {} : {telemetryIntervalMs: {value: intervalMs, ac: 203, av: 0, ad: "default"}}),
				});
			}
			if (state === "closed" && timer !== undefined) Timer.clear(timer);
		},
		onWritable(property) {
			if (property.component !== undefined || property.name !== "telemetryIntervalMs") return undefined;
			desiredApplied = true;
			if (!validInterval(property.value))
				return {status: 400, value: intervalMs, description: `rejected: must be a number of ms from ${MIN_MS} to ${MAX_MS}`};
			schedule(property.value);
			return {status: 200, description: "applied"};
		},
		onCommand(command) {
			switch (command.method) {
			case "reboot":
				if (!platform.reboot) return {status: 501, payload: {error: "this platform cannot reboot"}};
				Timer.set(() => platform.reboot!(), 500); // after the response has gone out
				return {status: 200, payload: {rebooting: true}};
			case "reprovision":
				Timer.set(() => this.reprovision(), 100);
				return {status: 200, payload: {reprovisioning: true}};
			case "setTelemetryInterval": {
				const payload = command.payload;
				const ms = payload && typeof payload === "object" ? (payload as Record<string, unknown>).intervalMs : payload;
				if (!validInterval(ms)) return {status: 400, payload: {error: `intervalMs must be a number from ${MIN_MS} to ${MAX_MS}`}};
				schedule(ms);
				return {status: 200, payload: {intervalMs: ms}};
			}
			default:
				return {status: 404, payload: {error: `no method ${command.method}; this device has reboot, reprovision and setTelemetryInterval`}};
			}
		},
	});
	return device;
}
