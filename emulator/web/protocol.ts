/*
 * What the live streams send the page (./live.ts → ./client): types only, shared by the server and
 * the browser code, so this file imports nothing.
 */

/** A telemetry message as the page gets it. */
export interface WebRecord {
	time: string;
	body: string;
	/** The body's length in characters when it was cut to BODY_SHOWN. */
	bodyLength?: number;
	properties: Record<string, string>;
	systemProperties: Record<string, string>;
	/** The numbers in a JSON body, by dotted path (`a.b`), for the charts. */
	fields: Record<string, number>;
}

export type EnrollmentKind = {kind: "individual"} | {kind: "group"; groupId: string} | {kind: "hub"};

/** One row of the page's device list. */
export interface DeviceSummary {
	deviceId: string;
	registrationId: string;
	connected: boolean;
	modelId?: string;
	authentication: string;
	enrollment: EnrollmentKind;
	registeredAt: string;
	/** The last time the device itself sent something (connect, telemetry, twin, method answer, PUBACK). */
	lastActivity?: string;
	connectCount: number;
	c2dQueue: number;
	counts: {telemetry: number; twinGets: number; twinPatches: number; c2dDelivered: number; c2dCompleted: number; methodCalls: number};
}

export interface FleetFigures {
	devices: number;
	connected: number;
	telemetryPerSecond: number;
}

export interface TwinView {
	desired: Record<string, unknown> & {$version: number};
	reported: Record<string, unknown> & {$version: number};
}

/** On /ui/events: the fleet. `sections` holds the admin views by name (enrollments, groups, faults, updates, deployments, info). */
export type FleetMessage =
	| {type: "hello"; fleet: FleetFigures; devices: DeviceSummary[]; sections: Record<string, unknown>}
	| {type: "devices"; fleet: FleetFigures; changed: DeviceSummary[]; removed: string[]; sections?: Record<string, unknown>};

/** On /ui/events/device/{id}: one device. `dropped`: messages that came faster than the window between two updates. */
export type DeviceMessage =
	| {type: "missing"; deviceId: string}
	| {type: "snapshot"; summary: DeviceSummary; telemetry: WebRecord[]; twin: TwinView}
	| {type: "update"; summary: DeviceSummary; telemetry?: WebRecord[]; dropped?: number; twin?: TwinView};
