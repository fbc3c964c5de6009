/*
 * Direct methods (IoT Plug and Play commands): each request is answered exactly once, on the
 * connection it came on, with the handler's status and JSON payload; a request the device cannot
 * take gets the answer that says why (400 not JSON, 413 over the limit, 501 no handler, 500 the
 * handler failed), so that the caller never waits for its timeout.
 */
import {utf8Encode} from "../encoding.js";
import type {MqttMessage} from "../mqtt/types.js";
import type {HubConnection} from "./connection.js";
import {methodResponseTopic} from "./topics.js";
import {clip} from "./telemetry.js";
import {isRecord, takeText} from "./twin.js";

export interface MethodRequest {
	/** The method name as called: `reboot`, or `thermostat1*getMaxMinReport` for a component's command. */
	name: string;
	/** IoT Plug and Play: the component of a `component*command` name; undefined for the root. */
	component?: string;
	/** The command without its component. */
	command: string;
	/** The JSON payload parsed; null when the caller sent none. */
	payload: unknown;
	rid: string;
}

export interface MethodResponse {
	status: number;
	payload?: unknown;
}

export interface MethodHooks {
	/** Whether there is a handler; without one, every request gets 501. */
	readonly handles: boolean;
	handle(request: MethodRequest): MethodResponse | Promise<MethodResponse>;
	/** A request refused before the handler saw it (too large, not JSON), for the application to hear of. */
	methodRefused(info: {name: string; status: number; size: number; reason: string}): void;
	scrub(text: string): string;
	readonly maxMethodBytes: number;
}

export class Methods {
	private _connection: HubConnection;
	private _hooks: MethodHooks;

	constructor(connection: HubConnection, hooks: MethodHooks) {
		this._connection = connection;
		this._hooks = hooks;
	}

	onRequest(gen: number, topic: {name: string; rid: string; component?: string; command: string}, message: MqttMessage): void {
		const {name, rid} = topic;
		const respond = (status: number, payload: unknown) => this._respond(gen, name, rid, status, payload);
		if (message.dropped) {
			const reason = `the payload of method ${clip(name, 64)} (${message.size} bytes) is larger than this device takes (${this._hooks.maxMethodBytes} bytes)`;
			respond(413, {message: reason});
			this._hooks.methodRefused({name, status: 413, size: message.size ?? 0, reason});
			return;
		}
		let payload: unknown = null;
		const size = message.payload.length;
		const text = takeText(message);
		if (text.trim()) {
			try {
				payload = JSON.parse(text);
			}
			catch {
				const reason = `the payload of method ${clip(name, 64)} is not valid JSON`;
				respond(400, {message: reason});
				this._hooks.methodRefused({name, status: 400, size, reason});
				return;
			}
		}
		const hooks = this._hooks;
		if (!hooks.handles) {
			respond(501, {message: `This device does not implement direct methods (${clip(name, 64)} was called)`});
			return;
		}
		const request: MethodRequest = {name, command: topic.command, payload, rid};
		if (topic.component !== undefined) request.component = topic.component;
		Promise.resolve()
			.then(() => hooks.handle(request))
			.then(result => {
				if (!isRecord(result) || typeof result.status !== "number" || !Number.isInteger(result.status) || result.status < 100 || result.status > 999)
					respond(500, {message: `The handler of method ${clip(name, 64)} returned no valid status`});
				else respond(result.status, result.payload);
			}, (error: unknown) => {
				// The message only, never the stack: it goes to whoever called the method.
				const detail = error instanceof Error ? error.message : String(error);
				respond(500, {message: `Method ${clip(name, 64)} failed: ${clip(this._hooks.scrub(detail))}`});
			});
	}

	private _respond(gen: number, name: string, rid: string, status: number, payload: unknown): void {
		let body: string;
		try {
			body = JSON.stringify(payload === undefined ? null : payload);
		}
		catch {
			status = 500;
			body = JSON.stringify({message: `The response of method ${clip(name, 64)} cannot be serialized as JSON`});
		}
		// The connection it came on may be gone: then the caller times out, as with the hub itself.
		this._connection.send(gen, methodResponseTopic(status, rid), utf8Encode(body), 0, ignore);
	}
}

Object.freeze(Methods.prototype);
Object.freeze(Methods);

/** A lost method response is the hub's to time out: nothing to do here. */
function ignore(): void {}
