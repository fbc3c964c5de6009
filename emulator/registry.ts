/*
 * What the emulated services remember: DPS enrollments and registration records, and the hub's
 * device registry with twins, cloud-to-device queues and received telemetry.
 */
import type {Session} from "./session.js";
import {CertificateStore} from "./x509.js";

export class EmulatorHttpError extends Error {
	readonly status: number;
	constructor(status: number, message: string) {
		super(message);
		this.name = "EmulatorHttpError";
		this.status = status;
	}
}

/** X.509 attestation of an individual enrollment: the device certificate's thumbprints (upper-case hex, SHA-1 or SHA-256). */
export interface X509Thumbprints {
	primary: string;
	secondary?: string;
}

/** X.509 attestation of an enrollment group: a CA in DPS's certificates, or a CA certificate held by the group. */
export type X509GroupCa = {caName: string} | {certificatePem: string};

/** How the hub authenticates a device (az CLI's shared_private_key, x509_thumbprint, x509_ca). */
export type DeviceAuthentication =
	| {type: "sas"; key: string}
	| {type: "selfSigned"; primary: string; secondary?: string}
	| {type: "certificateAuthority"};

export interface Enrollment {
	registrationId: string;
	/** Exactly one of symmetricKey and x509. */
	symmetricKey?: string;
	x509?: X509Thumbprints;
	deviceId?: string;
	enabled: boolean;
	initialTwin?: object;
}

export interface EnrollmentGroup {
	groupId: string;
	/** Exactly one of symmetricKey and x509. */
	symmetricKey?: string;
	x509?: X509GroupCa;
	enabled: boolean;
}

/** DPS's record of a registration (what `az iot dps enrollment registration show` prints). */
export interface RegistrationRecord {
	registrationId: string;
	deviceId: string;
	assignedHub: string;
	createdDateTimeUtc: string;
	lastUpdatedDateTimeUtc: string;
	etag: string;
	enrollment: {kind: "individual"; registrationId: string} | {kind: "group"; groupId: string};
}

export interface TelemetryRecord {
	body: string;
	bodyBase64: string;
	properties: Record<string, string>;
	systemProperties: Record<string, string>;
	time: string;
	qos: number;
	topic: string;
}

export interface C2dMessage {
	messageId: string;
	body: Buffer;
	properties: Record<string, string>;
	systemProperties: Record<string, string>;
	enqueuedAt: string;
	deliveryCount: number;
	/** The connection the message is in flight on, awaiting PUBACK. */
	inflight?: Session;
}

export interface Twin {
	desired: Record<string, unknown>;
	reported: Record<string, unknown>;
	desiredVersion: number;
	reportedVersion: number;
}

/** One hub connection of a device: how tests tell a reconnect loop from a connection that held. */
export interface ConnectionRecord {
	connectedAt: string;
	endedAt?: string;
	/** "service": the hub closed it (a protocol violation, token expiry, a fault); "device": the device or its network did. */
	endedBy?: "service" | "device";
	reason?: string;
}

/** Connections kept per device (the most recent). */
export const CONNECTIONS_KEPT = 100;

export interface HubDevice {
	deviceId: string;
	registrationId: string;
	authentication: DeviceAuthentication;
	hubName: string;
	registeredAt: string;
	modelId?: string;
	connectCount: number;
	connections: ConnectionRecord[];
	session?: Session;
	twin: Twin;
	c2d: C2dMessage[];
	telemetry: TelemetryRecord[];
	pendingMethods: Map<string, {resolve: (r: {status: number; payload: unknown}) => void; reject: (e: Error) => void; timer: NodeJS.Timeout}>;
}

export interface DeviceView {
	deviceId: string;
	registrationId: string;
	connected: boolean;
	authentication: DeviceAuthentication["type"];
	modelId?: string;
	hubName: string;
	registeredAt: string;
	connectCount: number;
	enrollmentGroupId?: string;
	c2dQueue: number;
	/** Topic filters the current connection holds (empty when offline). */
	subscriptions: string[];
}

export interface DeviceStats {
	dpsConnects: number;
	dpsRegisterRequests: number;
	dpsPollRequests: number;
	hubConnects: number;
	telemetry: number;
	twinGets: number;
	twinPatches: number;
	c2dDelivered: number;
	c2dCompleted: number;
	methodCalls: number;
}

export interface Stats {
	dpsRegisterRequests: number;
	dpsPollRequests: number;
	/** Accepted connections (CONNACK 0), DPS and hub together. */
	connects: number;
	dpsConnects: number;
	hubConnects: number;
	/** Connections refused with a non-zero CONNACK. */
	refusedConnects: number;
	/** Connections the emulator closed: protocol violations, token expiry, faults, takeovers. */
	serverDisconnects: number;
	telemetry: number;
	twinGets: number;
	twinPatches: number;
	c2dSent: number;
	c2dCompleted: number;
	methodCalls: number;
	/** Per registration id (DPS counters) and per device id (hub counters); usually the same id. */
	devices: Record<string, DeviceStats>;
}

export const C2D_QUEUE_LIMIT = 50;
export const C2D_MAX_BYTES = 64 * 1024;
/** IoT Hub's largest direct-method payload. */
export const METHOD_MAX_BYTES = 128 * 1024;

export function newStats(): Stats {
	return {
		dpsRegisterRequests: 0, dpsPollRequests: 0, connects: 0, dpsConnects: 0, hubConnects: 0, refusedConnects: 0,
		serverDisconnects: 0, telemetry: 0, twinGets: 0, twinPatches: 0, c2dSent: 0, c2dCompleted: 0, methodCalls: 0, devices: {},
	};
}

export function deviceStats(stats: Stats, id: string): DeviceStats {
	let entry = stats.devices[id];
	if (!entry) {
		entry = {dpsConnects: 0, dpsRegisterRequests: 0, dpsPollRequests: 0, hubConnects: 0, telemetry: 0, twinGets: 0, twinPatches: 0, c2dDelivered: 0, c2dCompleted: 0, methodCalls: 0};
		stats.devices[id] = entry;
	}
	return entry;
}

/** Registration ids are case-insensitive in DPS. */
export function registrationKey(registrationId: string): string {
	return registrationId.toLowerCase();
}

/**
 * DPS's registration ids and enrollment group names: "case-insensitive strings of alphanumeric
 * characters plus the special characters '-', '.', '_', ':'. The last character must be
 * alphanumeric or dash", up to 128 characters (concepts-service.md).
 */
export function isRegistrationId(value: unknown): value is string {
	return typeof value === "string" && value.length <= 128 && /^[A-Za-z0-9\-._:]*[A-Za-z0-9-]$/.test(value);
}

/** A hub device identity with an empty twin and queues. */
export function newHubDevice(deviceId: string, registrationId: string, authentication: DeviceAuthentication, hubName: string): HubDevice {
	return {
		deviceId, registrationId, authentication, hubName,
		registeredAt: new Date().toISOString(),
		connectCount: 0,
		connections: [],
		twin: {desired: {}, reported: {}, desiredVersion: 1, reportedVersion: 1},
		c2d: [],
		telemetry: [],
		pendingMethods: new Map(),
	};
}

export class Registry {
	readonly enrollments = new Map<string, Enrollment>();
	readonly groups = new Map<string, EnrollmentGroup>();
	readonly registrations = new Map<string, RegistrationRecord>();
	/** The CA certificates uploaded to DPS and to the hub: each service keeps its own, as in Azure. */
	readonly dpsCertificates = new CertificateStore("dps");
	readonly hubCertificates = new CertificateStore("hub");
	/** Device ids are case-sensitive in IoT Hub. */
	readonly devices = new Map<string, HubDevice>();

	device(deviceId: string): HubDevice {
		const device = this.devices.get(deviceId);
		if (!device) throw new EmulatorHttpError(404, `Device "${deviceId}" is not registered in the hub: provision it through DPS first.`);
		return device;
	}

	view(device: HubDevice): DeviceView {
		const record = this.registrations.get(registrationKey(device.registrationId));
		return {
			deviceId: device.deviceId,
			registrationId: device.registrationId,
			connected: !!device.session && !device.session.closed,
			authentication: device.authentication.type,
			...(device.modelId !== undefined ? {modelId: device.modelId} : {}),
			hubName: device.hubName,
			registeredAt: device.registeredAt,
			connectCount: device.connectCount,
			...(record?.enrollment.kind === "group" ? {enrollmentGroupId: record.enrollment.groupId} : {}),
			c2dQueue: device.c2d.length,
			subscriptions: device.session && !device.session.closed ? [...device.session.subscriptions.keys()] : [],
		};
	}
}
