/*
 * The reference: Microsoft's Node SDK (azure-iot-provisioning-device-mqtt + azure-iot-device-mqtt)
 * doing the same work as bench/fixtures/scenario.ts: register with DPS, connect to the hub, read
 * the twin and listen for desired properties, send QoS 1 telemetry, reconnect after drops. It is
 * pointed at the emulator as test/interop-microsoft.test.ts does: the emulator's root as `ca`,
 * the DPS host:port as the provisioning host, and GatewayHostName for the hub's host:port.
 *
 * Loaded with import() so that the benchmark still runs (and says why) where it is not installed.
 */
import {performance} from "node:perf_hooks";
import {telemetryBody} from "./fixtures/scenario.js";
import type {Reconnect, RunResult} from "./driver.js";
import {bounded, newRegistrationId, sleep, type EmulatorProcess} from "./lib.js";
import type {X509Fleet} from "./x509.js";

/* eslint-disable @typescript-eslint/no-explicit-any */
interface Sdk {
	ProvisioningDeviceClient: any;
	ProvisioningMqtt: any;
	MqttBase: any;
	SymmetricKeySecurityClient: any;
	X509Security: any;
	X509AuthenticationProvider: any;
	Client: any;
	Message: any;
	DeviceMqtt: any;
	versions: Record<string, string>;
}

let loaded: Promise<Sdk | string> | undefined;

/** The SDK's classes, or why they cannot be loaded. */
export function loadMicrosoftSdk(): Promise<Sdk | string> {
	loaded ??= (async () => {
		try {
			const [provisioning, provisioningMqtt, symmetricKey, device, deviceMqtt, x509] = await Promise.all([
				import("azure-iot-provisioning-device"), import("azure-iot-provisioning-device-mqtt"),
				import("azure-iot-security-symmetric-key"), import("azure-iot-device"), import("azure-iot-device-mqtt"),
				import("azure-iot-security-x509"),
			]) as any[];
			const {createRequire} = await import("node:module");
			const require = createRequire(import.meta.url);
			// The MqttBase the provisioning transport itself depends on (npm may nest its own version), as test/interop-microsoft.test.ts does.
			const mqttBase = createRequire(require.resolve("azure-iot-provisioning-device-mqtt"))("azure-iot-mqtt-base");
			const versions: Record<string, string> = {};
			for (const name of ["azure-iot-provisioning-device-mqtt", "azure-iot-device-mqtt", "azure-iot-device", "mqtt"]) {
				try {
					versions[name] = require(`${name}/package.json`).version;
				}
				catch {
					// not resolvable from here
				}
			}
			return {
				ProvisioningDeviceClient: (provisioning.default ?? provisioning).ProvisioningDeviceClient,
				ProvisioningMqtt: (provisioningMqtt.default ?? provisioningMqtt).Mqtt,
				MqttBase: (mqttBase.default ?? mqttBase).MqttBase,
				SymmetricKeySecurityClient: (symmetricKey.default ?? symmetricKey).SymmetricKeySecurityClient,
				X509Security: (x509.default ?? x509).X509Security,
				X509AuthenticationProvider: (device.default ?? device).X509AuthenticationProvider,
				Client: (device.default ?? device).Client,
				Message: (device.default ?? device).Message,
				DeviceMqtt: (deviceMqtt.default ?? deviceMqtt).Mqtt,
				versions,
			};
		}
		catch (e) {
			return `Microsoft's Node SDK is not installed (${(e as Error).message.split("\n")[0]}); run npm install (it is a dev dependency)`;
		}
	})();
	return loaded;
}

export interface MicrosoftRunOptions {
	sdk: Sdk;
	emu: EmulatorProcess;
	messages: number;
	window: number;
	reconnects: number;
	timeoutMs: number;
	/** X.509 from this fleet (X509Security; `x509=true` with setOptions({cert, key})) instead of a symmetric key. */
	x509?: X509Fleet;
}

export async function runMicrosoftOnce(o: MicrosoftRunOptions): Promise<RunResult> {
	return bounded("the Microsoft SDK run", o.timeoutMs, run(o));
}

async function run(o: MicrosoftRunOptions): Promise<RunResult> {
	const {sdk, emu} = o;
	let registrationId: string, symmetricKey = "", certificate: {cert: string; key: string} | undefined;
	if (o.x509) {
		const issued = o.x509.issue("bench-ms-x509");
		registrationId = issued.registrationId;
		certificate = {cert: issued.identity.fullChainPem, key: issued.identity.keyPem};
	}
	else {
		registrationId = newRegistrationId("bench-ms");
		symmetricKey = await emu.addEnrollment(registrationId);
	}
	const result: RunResult = {reconnects: [], memory: []};
	const t0 = performance.now();
	const since = () => Math.round((performance.now() - t0) * 10) / 10;

	const base = new sdk.MqttBase();
	base.setOptions({ca: emu.caPem});
	const transport = new sdk.ProvisioningMqtt(base);
	const security = certificate ? new sdk.X509Security(registrationId, certificate) : new sdk.SymmetricKeySecurityClient(registrationId, symmetricKey);
	const provisioning = sdk.ProvisioningDeviceClient.create(`${emu.host}:${emu.port}`, emu.idScope, transport, security);
	const registration = await provisioning.register();
	result.assignedMs = since();

	// X.509: what `HostName=..;DeviceId=..;x509=true` gives, with the gateway (the SDK reads GatewayHostName only from SAS strings; test/interop-microsoft-x509.test.ts).
	const client = certificate
		? sdk.Client.fromAuthenticationProvider(new sdk.X509AuthenticationProvider({host: registration.assignedHub, deviceId: registration.deviceId, gatewayHostName: `${emu.hubName}:${emu.port}`}), sdk.DeviceMqtt)
		: sdk.Client.fromConnectionString(`HostName=${registration.assignedHub};DeviceId=${registration.deviceId};SharedAccessKey=${symmetricKey};GatewayHostName=${emu.hubName}:${emu.port}`, sdk.DeviceMqtt);
	try {
		await client.setOptions(certificate ? {ca: emu.caPem, ...certificate} : {ca: emu.caPem});
		await client.open();
		result.hubConnackMs = since();
		const twin = await client.getTwin();
		twin.on("properties.desired", () => {});
		result.readyMs = since();

		if (o.messages > 0) {
			const start = performance.now();
			await new Promise<void>((resolve, reject) => {
				let sent = 0, acked = 0;
				const pump = () => {
					while (sent < o.messages && sent - acked < o.window) {
						const seq = ++sent;
						const message = new sdk.Message(telemetryBody(seq));
						message.properties.add("seq", String(seq));
						message.contentType = "application/json";
						message.contentEncoding = "utf-8";
						message.messageId = `${registrationId}-${seq}`;
						client.sendEvent(message).then(() => {
							if (++acked === o.messages) resolve();
							else pump();
						}, reject);
					}
				};
				pump();
			});
			result.perSecond = Math.round(o.messages / (performance.now() - start) * 1000 * 10) / 10;
		}

		for (let i = 0; i < o.reconnects; i++) {
			await sleep(300);
			const back = new Promise<number>(resolve => client.once("connect", () => resolve(Date.now())));
			const dropAt = Date.now();
			await emu.drop();
			const at = await back;
			// The SDK says nothing when its subscriptions are back: the CONNACK is what can be compared.
			const reconnect: Reconnect = {toConnackMs: at - dropAt, toReadyMs: NaN};
			result.reconnects.push(reconnect);
		}
	}
	finally {
		await client.close().catch(() => {});
	}
	return result;
}
