/*
 * Local Azure IoT Hub Device Provisioning Service + IoT Hub emulator. Microsoft ships none; this one
 * answers like Azure, strictly, because it examines the device core. One TLS listener serves both
 * services; the CONNECT username tells them apart, as DPS and the hub each have their own form.
 */
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as tls from "node:tls";
import {Aedes, type AedesPublishPacket, type Client} from "aedes";
import memoryPersistence from "aedes-persistence";
import {type ApiServer, startApi} from "./api.js";
import type {DeploymentView, DeviceDeploymentState, DeviceDeploymentView, DeviceReport} from "./adu/deployments.js";
import type {FileUrlScheme} from "./adu/files.js";
import {type AduPublicKey, loadAduKeys} from "./adu/keys.js";
import {AduService, type DeployRequest, type ImportedUpdate} from "./adu/service.js";
import type {ImportRequest, UpdateId} from "./adu/update.js";
import type {Context, Settings} from "./context.js";
import {DpsService, checkDpsConnect, dpsSubscriptionAllowed, isDpsUsername, parseDpsRequest} from "./dps.js";
import {type AnyFault, type Fault, type FaultEntry, FaultSet, isHostile, validateFault} from "./faults.js";
import {HostileHub, type HostileFault, type SentView} from "./hostile.js";
import {HubService, MAX_SUBSCRIPTIONS, checkHubConnect, faultTarget, hubSubscriptionAllowed, parseHubRequest, twinView} from "./hub.js";
import {SERVER_CIPHERS, type TlsProfile, TLS_PROFILES, leafHosts, loadPki} from "./pki.js";
import {type ConnectionRecord, type DeviceView, EmulatorHttpError, type Stats, type TelemetryRecord, Registry, deviceStats, isRegistrationId, newStats, registrationKey} from "./registry.js";
import {isBase64Key, newSymmetricKey} from "./sas.js";
import {noteSecret} from "./secret-log.js";
import {type ServiceKind, Session} from "./session.js";
import {parsePropertyBag} from "./wire.js";
import {type CertificateInput, type CertificateTarget, type DeviceAuthenticationView, type DeviceInput, X509Admin, type X509EnrollmentGroupInput, type X509EnrollmentInput} from "./x509-admin.js";
import {type CertificateView, presentedChain} from "./x509.js";
import {Live} from "./web/live.js";
import {ModelStore} from "./web/models.js";
import {Monitor} from "./web/monitor.js";
import {checkApiExposure} from "./web/security.js";
import {webRoutes} from "./web/server.js";

export {EmulatorHttpError, validateFault};
export type {AnyFault, CertificateInput, CertificateTarget, CertificateView, ConnectionRecord, DeviceAuthenticationView, DeviceInput, DeviceView, Fault, FaultEntry, HostileFault, SentView, Stats, TelemetryRecord, TlsProfile, X509EnrollmentGroupInput, X509EnrollmentInput};
export type {AduPublicKey, DeployRequest, DeploymentView, DeviceDeploymentState, DeviceDeploymentView, DeviceReport, FileUrlScheme, ImportRequest, ImportedUpdate, UpdateId};

export interface EmulatorOptions {
	/** MQTT/TLS port for both DPS and hub; default 0 (ephemeral). */
	port?: number;
	/** HTTP service API and the page; default 0. */
	apiPort?: number;
	/** Where the API and the page listen; default "127.0.0.1". Anything but loopback needs apiToken. */
	apiHost?: string;
	/** A secret every API request must carry (Authorization: Bearer, or the page's cookie after /?token=). */
	apiToken?: string;
	/** DTDL models (IoT Plug and Play) the page reads a device's commands from. */
	modelsDir?: string;
	/** Default "127.0.0.1". */
	bindHost?: string;
	idScope?: string;
	/** The assignedHub DPS returns and the host name devices put in username and token; default "localhost". */
	hubName?: string;
	/** retry-after on 202 replies; default 1 (Azure: 3). */
	retryAfterSeconds?: number;
	/** Operation-status polls answered "assigning" before the 200; default 1. */
	pollsBeforeAssigned?: number;
	tls?: TlsProfile;
	/** Where the root CA files (and the PKI cache) are written; default a directory in the OS temp dir. */
	dataDir?: string;
	/** Device Update file server ports (plain HTTP and HTTPS, on bindHost); default 0. */
	aduHttpPort?: number;
	aduHttpsPort?: number;
	log?: (line: string) => void;
}

export interface SasEnrollmentInput {registrationId: string; symmetricKey?: string; deviceId?: string; enabled?: boolean; initialTwin?: object}
export interface SasGroupInput {groupId: string; symmetricKey?: string; enabled?: boolean}

/** An individual enrollment as listed: never its key (enrollmentAttestation gives that). */
export interface EnrollmentView {
	registrationId: string;
	attestation: "symmetricKey" | "x509";
	deviceId?: string;
	enabled: boolean;
	/** The hub device it registered as, if it has. */
	registeredDeviceId?: string;
}

export interface EnrollmentGroupView {
	groupId: string;
	attestation: "symmetricKey" | "x509";
	/** The CA of an X.509 group: a certificate uploaded to DPS by name, or one held by the group. */
	caName?: string;
	enabled: boolean;
	/** Devices registered through it. */
	registrations: number;
}

/** As DPS's attestation mechanism: the keys, or for X.509 the thumbprints or CA. */
export type AttestationView =
	| {type: "symmetricKey"; symmetricKey: {primaryKey: string}}
	| {type: "x509"; x509: Record<string, unknown>};

export interface Emulator {
	host: string;
	port: number;
	apiUrl: string;
	/** The emulator's page (the same server as the API). */
	pageUrl: string;
	idScope: string;
	hubName: string;
	/** The root devices must pin (for "untrustedRoot" still the valid root, while the server chains to another). */
	caPem: string;
	caDer: Uint8Array;
	caPemPath: string;
	caDerPath: string;
	addEnrollment(e: SasEnrollmentInput): {registrationId: string; symmetricKey: string};
	/** An X.509 individual enrollment: the device certificate (its CN is the registration id) or its thumbprints. */
	addEnrollment(e: X509EnrollmentInput): ReturnType<X509Admin["addEnrollment"]>;
	addEnrollmentGroup(g: SasGroupInput): {groupId: string; symmetricKey: string};
	/** An X.509 enrollment group: a CA uploaded to DPS (`caName`) or a CA certificate held by the group. */
	addEnrollmentGroup(g: X509EnrollmentGroupInput): ReturnType<X509Admin["addEnrollmentGroup"]>;
	/** A CA certificate uploaded to DPS, the hub or both (az iot dps|hub certificate create). */
	addCertificate(c: CertificateInput): CertificateView[];
	/** A proof-of-possession challenge for `name` in `target`, or in every service holding it. */
	certificateVerificationCode(name: string, target?: CertificateTarget): {verificationCode: string};
	/** Proof of possession: `pem` is a certificate with CN = the code, signed by the CA's key. */
	verifyCertificate(name: string, pem: string, target?: CertificateTarget): CertificateView[];
	certificates(): CertificateView[];
	deleteCertificate(name: string, target?: CertificateTarget): void;
	/** A hub device identity without DPS (az iot hub device-identity create --am ...). */
	addDevice(d: DeviceInput): {deviceId: string; authentication: DeviceAuthenticationView};
	/** An individual enrollment by registration id, or else an enrollment group by group id. */
	setEnrollmentEnabled(registrationId: string, enabled: boolean): void;
	/** The enrollments and groups, without keys. */
	enrollments(): EnrollmentView[];
	enrollmentGroups(): EnrollmentGroupView[];
	/** An enrollment's or group's key (or X.509 attestation), asked for explicitly. */
	enrollmentAttestation(registrationId: string): AttestationView;
	enrollmentGroupAttestation(groupId: string): AttestationView;
	deleteDevice(deviceId: string): void;
	devices(): DeviceView[];
	telemetry(deviceId: string): TelemetryRecord[];
	sendC2d(deviceId: string, m: {body: string; properties?: Record<string, string>; messageId?: string}): {messageId: string};
	c2dQueue(deviceId: string): number;
	/** Drops a device's queued cloud-to-device messages (az iot device c2d-message purge); returns how many. */
	purgeC2d(deviceId: string): {totalMessagesPurged: number};
	twin(deviceId: string): {desired: object; reported: object};
	patchDesired(deviceId: string, patch: object): {version: number};
	invokeMethod(deviceId: string, name: string, payload: unknown, timeoutSeconds?: number): Promise<{status: number; payload: unknown}>;
	/** Switches a fault on; returns the id that switches it off (0 for "down"). */
	addFault(f: Fault): number;
	/** Makes a hostile send (`send.*`, also POST /faults) at once; returns its record. */
	send(f: HostileFault): SentView;
	/** What the hostile sends did (also GET /faults/sent), for one device or all. */
	sent(deviceId?: string): SentView[];
	/** A device's hub connections, oldest first, with who ended each (also GET /devices/{id}/connections). */
	connections(deviceId: string): ConnectionRecord[];
	clearFaults(): void;
	/** The active faults (beyond the contract; also GET /faults). */
	faults(): Fault[];
	/** The active faults with their ids and the firings left. */
	faultEntries(): FaultEntry[];
	/** Switches one fault off (404 when it is no longer on). */
	removeFault(id: number): void;
	dropAll(): void;
	stats(): Stats;
	/** Device Update: the emulator's root key (build it into a device's root-key table) and where it is as JSON. */
	aduRootKey: AduPublicKey;
	aduRootKeyPath: string;
	/** Base URLs of the update file server. */
	aduFileServer: {http: string; https: string};
	/** Imports a file as an update with a signed manifest (input checked as ADU's import schema does). */
	importUpdate(request: ImportRequest): ImportedUpdate;
	updates(): ImportedUpdate[];
	/** Sends the update to the devices through their twins' `deviceUpdate` component. */
	deploy(request: DeployRequest): {deploymentId: string};
	deployment(deploymentId: string): DeploymentView;
	deployments(): DeploymentView[];
	/** Sends the cancel request (action 255, "nodeployment") to the devices still on it. */
	cancelDeployment(deploymentId: string): DeploymentView;
	close(): Promise<void>;
}

const DEFAULT_ID_SCOPE = "0ne0000EMU1";
const CLIENT_PREFIX_LENGTH = 4; // "dps/" or "hub/"
const ID_RULE = "1-128 characters of A-Z, a-z, 0-9, - . _ : ending in a letter, digit or -";

function connackError(returnCode: number, message: string): Error & {returnCode: number} {
	return Object.assign(new Error(message), {returnCode});
}

export async function startEmulator(options: EmulatorOptions = {}): Promise<Emulator> {
	const log = options.log ?? (() => {});
	const profile = options.tls ?? "valid";
	if (!TLS_PROFILES.includes(profile)) throw new Error(`Unknown tls profile "${profile}": use one of ${TLS_PROFILES.join(", ")}.`);
	const settings: Settings = {
		idScope: options.idScope ?? DEFAULT_ID_SCOPE,
		hubName: options.hubName ?? "localhost",
		retryAfterSeconds: options.retryAfterSeconds ?? 1,
		pollsBeforeAssigned: options.pollsBeforeAssigned ?? 1,
	};
	const bindHost = options.bindHost ?? "127.0.0.1";
	const apiHost = options.apiHost ?? "127.0.0.1";
	// Before anything is bound: the API hands out keys and drives devices.
	checkApiExposure(apiHost, options.apiToken);
	const dataDir = path.resolve(options.dataDir ?? path.join(os.tmpdir(), "moddable-azure-iot-emulator"));
	const pki = loadPki(dataDir, leafHosts(settings.hubName));
	const identity = pki.identity(profile);
	const aduKeys = await loadAduKeys(dataDir);

	const registry = new Registry();
	const stats = newStats();
	const heldPubacks: {session: Session; messageId: number}[] = [];
	const releaseHeldPubacks = () => {
		for (const {session, messageId} of heldPubacks.splice(0)) session.write({cmd: "puback", messageId});
	};
	const faults = new FaultSet();
	const ctx: Context = {settings, registry, faults, stats, log};
	const dps = new DpsService(ctx);
	const hub = new HubService(ctx);
	const monitor = new Monitor(registry, stats);
	hub.onEvent(event => monitor.observe(event));
	const hostile = new HostileHub(ctx, hub);
	const adu = await AduService.start({
		keys: aduKeys, registry, hub, faults, identity, bindHost, log,
		// Devices reach the file server under the host name they reach the hub by.
		urlHost: settings.hubName.replace(/:\d+$/, "").toLowerCase() || "localhost",
		httpPort: options.aduHttpPort ?? 0, httpsPort: options.aduHttpsPort ?? 0,
	});
	hub.onReported((deviceId, patch, reported) => adu.observe(deviceId, patch, reported));
	const x509 = new X509Admin(ctx);
	const sessions = new WeakMap<Client, Session>();
	const live = new Set<Session>();
	const sockets = new Set<net.Socket>();
	let downUntil = 0;
	let closed = false;

	const disconnect = (session: Session, why: string): Error => {
		log(`${session.kind} ${session.id}: ${why}: closing the connection`);
		stats.serverDisconnects++;
		session.closeReason ??= why;
		return new Error(why);
	};

	const persistence = memoryPersistence();
	// PUBACKs for the PUBLISH packets the services write themselves reach us through here.
	const clearMessageId = persistence.outgoingClearMessageId.bind(persistence);
	persistence.outgoingClearMessageId = ((client: Client, packet: {messageId?: number}, cb?: unknown) => {
		sessions.get(client)?.acked(packet?.messageId);
		return (clearMessageId as (...args: unknown[]) => unknown)(client, packet, cb);
	}) as typeof persistence.outgoingClearMessageId;

	const broker = await Aedes.createBroker({
		persistence,
		// Registration ids run to 128 characters; the hub's own limit is the device id's.
		maxClientsIdLength: 256,
		preConnect(client, packet, callback) {
			// IoT Hub and DPS grant at most QoS 1. aedes fixes the granted QoS from the SUBSCRIBE
			// packet before asking authorizeSubscribe, so lower it as the packet is parsed.
			const parser = (client as Client & {_parser?: NodeJS.EventEmitter})._parser;
			parser?.prependListener("packet", (p: {cmd: string; subscriptions?: {qos: number}[]}) => {
				if (p.cmd === "subscribe") for (const s of p.subscriptions ?? []) s.qos = Math.min(s.qos, 1);
			});
			// IoT Hub and DPS speak MQTT 3.1.1 only: anything else gets CONNACK 1.
			if (packet.protocolVersion !== 4) packet.protocolVersion = 0 as 4;
			// DPS and hub are separate services: the same id on both must not count as a takeover.
			const kind: ServiceKind = isDpsUsername(packet.username) ? "dps" : "hub";
			packet.clientId = `${kind}/${packet.clientId ?? ""}`;
			callback(null, true);
		},
		authenticate(client, username, password, done) {
			const kind = client.id.slice(0, 3) as ServiceKind;
			const clientId = client.id.slice(CLIENT_PREFIX_LENGTH);
			const refuse = (returnCode: number, reason: string) => {
				log(`${kind} ${clientId || "(no client id)"}: CONNACK ${returnCode}: ${reason}`);
				stats.refusedConnects++;
				done(connackError(returnCode, reason) as never, false);
			};
			const fault = faults.take("connack", kind === "hub" ? faultTarget(ctx, clientId) : {registrationId: clientId, deviceId: clientId}, f => f.target === kind);
			if (fault) return refuse(fault.returnCode, "injected connack fault");
			const secret = password ? password.toString("utf8") : undefined;
			// The client certificate counts only without a password (X.509 devices send none, or an empty one).
			const certificates = secret ? undefined : presentedChain(client.conn as tls.TLSSocket);
			const check = kind === "dps"
				? checkDpsConnect(ctx, clientId, username ?? "", secret, certificates)
				: checkHubConnect(ctx, clientId, username, secret, certificates);
			if (!check.ok) return refuse(check.returnCode, check.reason);
			const session = new Session({kind, id: check.id, client, clean: client.clean, sas: check.sas, certificates: check.certificates, modelId: check.modelId});
			sessions.set(client, session);
			live.add(session);
			client.conn.once("close", () => {
				session.ended();
				live.delete(session);
			});
			if (kind === "hub") hub.accepted(session);
			done(null, true);
		},
		authorizeSubscribe(client, sub, callback) {
			const session = sessions.get(client);
			if (!session || session.closed) return callback(new Error("no session"));
			const allowed = session.kind === "dps" ? dpsSubscriptionAllowed(sub.topic) : hubSubscriptionAllowed(session.id, sub.topic);
			if (!allowed) return callback(disconnect(session, `SUBSCRIBE to "${sub.topic}" is not allowed`));
			// Subscriptions restored from a persistent session arrive before CONNACK and are not new requests.
			if ((client as Client & {connackSent?: boolean}).connackSent) {
				session.subscribeCount++;
				if (session.subscribeCount > MAX_SUBSCRIPTIONS) return callback(disconnect(session, `more than ${MAX_SUBSCRIPTIONS} subscriptions`));
			}
			// IoT Hub and DPS grant at most QoS 1.
			const qos = Math.min(sub.qos, 1) as 0 | 1;
			session.subscriptions.set(sub.topic, qos);
			callback(null, {...sub, qos});
		},
		authorizePublish(client, packet, callback) {
			const session = client ? sessions.get(client) : undefined;
			if (!session || session.closed) return callback(new Error("no session"));
			if (packet.qos === 2) return callback(disconnect(session, "QoS 2 PUBLISH (only QoS 0 and 1 are supported)"));
			// Retained messages are not stored by IoT Hub.
			packet.retain = false;
			const aedesPacket = packet as AedesPublishPacket;
			if (session.kind === "dps") {
				const request = parseDpsRequest(packet.topic);
				if (!request) return callback(disconnect(session, `PUBLISH to "${packet.topic}" is not allowed`));
				callback(null);
				dps.handle(session, request, aedesPacket);
				return;
			}
			if (faults.take("throttle", faultTarget(ctx, session.id))) return callback(disconnect(session, "throttle fault"));
			const request = parseHubRequest(session.id, packet.topic);
			if (!request) return callback(disconnect(session, `PUBLISH to "${packet.topic}" is not allowed`));
			const qos = packet.qos;
			if (request.op === "telemetry") {
				if (hub.telemetryTooLarge(aedesPacket)) return callback(disconnect(session, "telemetry larger than 256 KB"));
				try {
					parsePropertyBag(request.bag);
				}
				catch (error) {
					return callback(disconnect(session, `bad property bag: ${(error as Error).message}`));
				}
				const hold = qos === 1 && packet.messageId !== undefined ? faults.take("noPuback", faultTarget(ctx, session.id)) : undefined;
				if (hold) {
					// aedes acknowledges QoS 1 itself: hand it QoS 0 and acknowledge later ourselves.
					const messageId = packet.messageId as number;
					packet.qos = 0;
					if (hold.ms !== undefined) session.timer(hold.ms, () => session.write({cmd: "puback", messageId}));
					else heldPubacks.push({session, messageId});
				}
			}
			callback(null);
			hub.handle(session, request, aedesPacket, qos);
		},
		// The services answer each device on its own connection; nothing is routed between clients.
		authorizeForward() {
			return null;
		},
	});

	broker.on("clientReady", client => {
		const session = sessions.get(client);
		if (!session) return;
		session.ready = true;
		stats.connects++;
		if (session.kind === "dps") {
			stats.dpsConnects++;
			deviceStats(stats, session.id).dpsConnects++;
			log(`dps ${session.id}: connected`);
		}
		else {
			stats.hubConnects++;
			deviceStats(stats, session.id).hubConnects++;
			log(`hub ${session.id}: connected (clean=${session.clean}${session.modelId ? `, model ${session.modelId}` : ""})`);
			hub.connected(session);
		}
	});
	broker.on("subscribe", (_subs, client) => {
		const session = sessions.get(client);
		if (session?.kind === "hub") hub.subscribed(session);
	});
	broker.on("unsubscribe", (topics, client) => {
		const session = sessions.get(client);
		if (!session || session.closed) return;
		for (const topic of topics) {
			if (session.subscriptions.delete(topic)) session.subscribeCount = Math.max(0, session.subscribeCount - 1);
		}
	});
	broker.on("clientDisconnect", client => {
		const session = sessions.get(client);
		if (session) log(`${session.kind} ${session.id}: disconnected`);
	});
	broker.on("clientError", (client, error) => {
		const session = sessions.get(client);
		log(`${session ? `${session.kind} ${session.id}` : client.id}: ${error.message}`);
	});

	const server = tls.createServer({
		key: identity.key,
		cert: identity.certChain,
		minVersion: "TLSv1.2",
		// X.509 devices authenticate with a client certificate. Self-signed (thumbprint) devices fail
		// any CA check, so the handshake accepts every certificate, or none (SAS devices), and the
		// services decide per device at CONNECT and register.
		requestCert: true,
		rejectUnauthorized: false,
		ciphers: SERVER_CIPHERS,
	}, socket => {
		broker.handle(socket);
	});
	server.on("connection", (socket: net.Socket) => {
		if (Date.now() < downUntil) {
			socket.destroy();
			return;
		}
		sockets.add(socket);
		socket.once("close", () => sockets.delete(socket));
	});
	server.on("tlsClientError", (error, socket) => {
		log(`tls: handshake failed from ${socket.remoteAddress ?? "?"}: ${error.message}`);
	});
	await new Promise<void>((resolve, reject) => {
		server.once("error", reject);
		server.listen(options.port ?? 0, bindHost, () => {
			server.off("error", reject);
			resolve();
		});
	}).catch(async (error: unknown) => {
		await adu.close();
		throw error;
	});
	const port = (server.address() as net.AddressInfo).port;

	const dropAll = () => {
		for (const session of live) {
			stats.serverDisconnects++;
			session.close("dropped (POST /faults/drop, a down fault or the emulator closing)");
		}
		for (const socket of sockets) socket.destroy();
	};

	const enrollmentViews = (): EnrollmentView[] => [...registry.enrollments.values()].map(e => {
		const record = registry.registrations.get(registrationKey(e.registrationId));
		return {
			registrationId: e.registrationId, attestation: e.x509 ? "x509" : "symmetricKey",
			...(e.deviceId !== undefined ? {deviceId: e.deviceId} : {}), enabled: e.enabled,
			...(record?.enrollment.kind === "individual" ? {registeredDeviceId: record.deviceId} : {}),
		};
	});
	const groupViews = (): EnrollmentGroupView[] => {
		const counts = new Map<string, number>();
		for (const r of registry.registrations.values()) if (r.enrollment.kind === "group") counts.set(r.enrollment.groupId, (counts.get(r.enrollment.groupId) ?? 0) + 1);
		return [...registry.groups.values()].map(g => ({
			groupId: g.groupId, attestation: g.x509 ? "x509" : "symmetricKey",
			...(g.x509 && "caName" in g.x509 ? {caName: g.x509.caName} : {}),
			enabled: g.enabled, registrations: counts.get(g.groupId) ?? 0,
		}));
	};
	const SECTION_ROWS = 2000;
	const rows = <T>(items: T[]) => ({items: items.slice(0, SECTION_ROWS), total: items.length});
	const liveStreams = new Live({
		monitor, registry,
		twin: deviceId => {
			const device = registry.devices.get(deviceId);
			return device ? twinView(device) : undefined;
		},
		sections: () => ({
			info: {idScope: settings.idScope, hubName: settings.hubName, mqttPort: port, tls: profile},
			enrollments: rows(enrollmentViews()),
			groups: rows(groupViews()),
			faults: emulator.faultEntries(),
			updates: adu.updates().map(u => ({updateId: u.updateId, fileUrls: u.fileUrls})),
			deployments: adu.deployments(),
		}),
	});
	const models = new ModelStore(options.modelsDir);

	let api: ApiServer | undefined;
	const emulator: Emulator = {
		host: "localhost",
		port,
		apiUrl: "",
		pageUrl: "",
		idScope: settings.idScope,
		hubName: settings.hubName,
		caPem: pki.rootPem,
		caDer: pki.rootDer,
		caPemPath: pki.rootPemPath,
		caDerPath: pki.rootDerPath,
		addEnrollment: ((e: SasEnrollmentInput | X509EnrollmentInput) => {
			if (e && "attestation" in e) {
				if ((e.attestation as {type?: unknown})?.type !== "x509") throw new EmulatorHttpError(400, "\"attestation.type\" must be \"x509\" (leave \"attestation\" out for a symmetric key).");
				return x509.addEnrollment(e);
			}
			if (!e || !isRegistrationId(e.registrationId)) throw new EmulatorHttpError(400, `"registrationId" must be ${ID_RULE}`);
			if (e.symmetricKey !== undefined && !isBase64Key(e.symmetricKey)) throw new EmulatorHttpError(400, "\"symmetricKey\" must be base64.");
			if (e.deviceId !== undefined && (typeof e.deviceId !== "string" || !/^[A-Za-z0-9\-.+%_#*?!(),:=@$']{1,128}$/.test(e.deviceId)))
				throw new EmulatorHttpError(400, "\"deviceId\" is not a valid IoT Hub device id.");
			const symmetricKey = e.symmetricKey ?? newSymmetricKey();
			noteSecret("key", symmetricKey);
			registry.enrollments.set(registrationKey(e.registrationId), {
				registrationId: e.registrationId, symmetricKey, deviceId: e.deviceId, enabled: e.enabled ?? true, initialTwin: e.initialTwin,
			});
			log(`service: enrollment ${e.registrationId} added`);
			return {registrationId: e.registrationId, symmetricKey};
		}) as Emulator["addEnrollment"],
		addEnrollmentGroup: ((g: SasGroupInput | X509EnrollmentGroupInput) => {
			if (g && "attestation" in g) {
				if ((g.attestation as {type?: unknown})?.type !== "x509") throw new EmulatorHttpError(400, "\"attestation.type\" must be \"x509\" (leave \"attestation\" out for a symmetric key).");
				return x509.addEnrollmentGroup(g);
			}
			if (!g || !isRegistrationId(g.groupId)) throw new EmulatorHttpError(400, `"groupId" must be ${ID_RULE}`);
			if (g.symmetricKey !== undefined && !isBase64Key(g.symmetricKey)) throw new EmulatorHttpError(400, "\"symmetricKey\" must be base64.");
			const symmetricKey = g.symmetricKey ?? newSymmetricKey();
			noteSecret("groupKey", symmetricKey);
			registry.groups.set(g.groupId, {groupId: g.groupId, symmetricKey, enabled: g.enabled ?? true});
			log(`service: enrollment group ${g.groupId} added`);
			return {groupId: g.groupId, symmetricKey};
		}) as Emulator["addEnrollmentGroup"],
		addCertificate(c) {
			return x509.addCertificate(c);
		},
		certificateVerificationCode(name, target) {
			return x509.verificationCode(name, target);
		},
		verifyCertificate(name, pem, target) {
			return x509.verify(name, pem, target);
		},
		certificates() {
			return x509.certificates();
		},
		deleteCertificate(name, target) {
			x509.deleteCertificate(name, target);
		},
		addDevice(d) {
			return x509.addDevice(d);
		},
		setEnrollmentEnabled(id, enabled) {
			const enrollment = registry.enrollments.get(registrationKey(id));
			const group = registry.groups.get(id);
			if (!enrollment && !group) throw new EmulatorHttpError(404, `No enrollment or enrollment group "${id}".`);
			if (enrollment) enrollment.enabled = !!enabled;
			else if (group) group.enabled = !!enabled;
		},
		enrollments: enrollmentViews,
		enrollmentGroups: groupViews,
		enrollmentAttestation(id) {
			const e = registry.enrollments.get(registrationKey(id));
			if (!e) throw new EmulatorHttpError(404, `No enrollment "${id}".`);
			if (e.x509) return {type: "x509", x509: {thumbprints: {...e.x509}}};
			return {type: "symmetricKey", symmetricKey: {primaryKey: e.symmetricKey!}};
		},
		enrollmentGroupAttestation(id) {
			const g = registry.groups.get(id);
			if (!g) throw new EmulatorHttpError(404, `No enrollment group "${id}".`);
			if (g.x509) return {type: "x509", x509: "caName" in g.x509 ? {caName: g.x509.caName} : {certificatePem: g.x509.certificatePem}};
			return {type: "symmetricKey", symmetricKey: {primaryKey: g.symmetricKey!}};
		},
		deleteDevice(deviceId) {
			const device = registry.device(deviceId);
			registry.devices.delete(deviceId);
			hub.abandonMethods(device, 404, `Device "${deviceId}" was deleted.`);
			if (device.session && !device.session.closed) {
				stats.serverDisconnects++;
				device.session.close("device deleted");
			}
			log(`service: device ${deviceId} deleted`);
		},
		devices() {
			return [...registry.devices.values()].map(d => registry.view(d));
		},
		telemetry(deviceId) {
			return structuredClone(registry.devices.get(deviceId)?.telemetry ?? []);
		},
		sendC2d(deviceId, m) {
			return hub.sendC2d(deviceId, m);
		},
		c2dQueue(deviceId) {
			return registry.device(deviceId).c2d.length;
		},
		purgeC2d(deviceId) {
			const device = registry.device(deviceId);
			const totalMessagesPurged = device.c2d.length;
			device.c2d = [];
			log(`service: ${totalMessagesPurged} cloud-to-device message(s) of ${deviceId} purged`);
			return {totalMessagesPurged};
		},
		twin(deviceId) {
			return twinView(registry.device(deviceId));
		},
		patchDesired(deviceId, patch) {
			return hub.patchDesired(deviceId, patch);
		},
		invokeMethod(deviceId, name, payload, timeoutSeconds) {
			return hub.invokeMethod(deviceId, name, payload, timeoutSeconds);
		},
		addFault(f) {
			const checked = validateFault(f);
			if (isHostile(checked)) throw new EmulatorHttpError(400, `"${checked.kind}" is a send, not a fault: make it with send().`);
			const fault: Fault = checked;
			if (fault.kind === "down") {
				// Not a per-request fault: the whole service is unreachable for a while.
				downUntil = Date.now() + fault.ms;
				log(`service: down for ${fault.ms} ms`);
				dropAll();
				return 0;
			}
			return faults.add(fault);
		},
		send(f) {
			const checked = validateFault(f);
			if (!isHostile(checked)) throw new EmulatorHttpError(400, `"${checked.kind}" is a fault, not a send: switch it on with addFault.`);
			return hostile.send(checked);
		},
		sent(deviceId) {
			return hostile.sent(deviceId);
		},
		connections(deviceId) {
			return structuredClone(registry.device(deviceId).connections);
		},
		clearFaults() {
			faults.clear();
			downUntil = 0;
			releaseHeldPubacks();
		},
		faults() {
			const remaining = downUntil - Date.now();
			return remaining > 0 ? [...faults.list(), {kind: "down", ms: remaining}] : faults.list();
		},
		faultEntries() {
			const remaining = downUntil - Date.now();
			const down: FaultEntry[] = remaining > 0 ? [{id: 0, fault: {kind: "down", ms: Math.ceil(remaining / 1000) * 1000}, remaining: null, addedAt: ""}] : [];
			return [...faults.entries(), ...down];
		},
		removeFault(id) {
			if (id === 0 && downUntil > Date.now()) {
				downUntil = 0;
				return;
			}
			if (!faults.removeId(id)) throw new EmulatorHttpError(404, `No active fault ${id} (it may have fired its count, or been cleared).`);
			// A noPuback fault switched off lets the held acknowledgements go, as clearFaults does.
			if (!faults.peek("noPuback")) releaseHeldPubacks();
		},
		dropAll,
		stats() {
			return structuredClone(stats);
		},
		aduRootKey: adu.rootKey,
		aduRootKeyPath: adu.rootKeyPath,
		aduFileServer: adu.fileServer,
		importUpdate: request => adu.importUpdate(request),
		updates: () => adu.updates(),
		deploy: request => adu.deploy(request),
		deployment: deploymentId => adu.deployment(deploymentId),
		deployments: () => adu.deployments(),
		cancelDeployment: deploymentId => adu.cancel(deploymentId),
		async close() {
			if (closed) return;
			closed = true;
			for (const device of registry.devices.values()) hub.abandonMethods(device, 503, "The emulator is closing.");
			heldPubacks.length = 0;
			dropAll();
			await new Promise<void>(resolve => broker.close(() => resolve()));
			await new Promise<void>(resolve => server.close(() => resolve()));
			await adu.close();
			liveStreams.close();
			await api?.close();
		},
	};
	try {
		api = await startApi(emulator, {port: options.apiPort ?? 0, host: apiHost, token: options.apiToken, log, web: webRoutes(liveStreams, models, log)});
	}
	catch (error) {
		await emulator.close();
		throw error;
	}
	emulator.apiUrl = api.url;
	emulator.pageUrl = `${api.url}/`;
	log(`emulator: mqtts://localhost:${port} (idScope ${settings.idScope}, hub ${settings.hubName}, tls ${profile}); API ${api.url}`);
	return emulator;
}
