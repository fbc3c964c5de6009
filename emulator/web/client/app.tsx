/*
 * The page's frame: the fleet stream (/ui/events), the header figures and the tabs.
 */
import {useEffect, useMemo, useRef, useState} from "preact/hooks";
import type {DeviceSummary, FleetFigures, FleetMessage} from "../protocol.js";
import {Enrollments, Faults, Updates, type Sections} from "./admin.js";
import {DeviceDetail} from "./device.js";
import {DeviceList} from "./devices.js";

type Tab = "devices" | "enrollments" | "faults" | "updates";

export interface Fleet {
	devices: Map<string, DeviceSummary>;
	/** Bumped on every change; `setVersion` only when devices come or go (the sorted list is rebuilt then). */
	version: number;
	setVersion: number;
	figures: FleetFigures;
	sections: Sections;
	live: boolean;
}

function useFleet(): Fleet {
	const devices = useRef(new Map<string, DeviceSummary>());
	const sections = useRef<Sections>({});
	const [state, setState] = useState({version: 0, setVersion: 0, figures: {devices: 0, connected: 0, telemetryPerSecond: 0} as FleetFigures, live: false});
	useEffect(() => {
		const source = new EventSource("/ui/events");
		source.onopen = () => setState(s => ({...s, live: true}));
		source.onerror = () => setState(s => ({...s, live: false}));
		source.onmessage = (event: MessageEvent<string>) => {
			const message = JSON.parse(event.data) as FleetMessage;
			let added = false;
			if (message.type === "hello") {
				devices.current = new Map(message.devices.map(d => [d.deviceId, d]));
				sections.current = message.sections as Sections;
				added = true;
			}
			else {
				for (const d of message.changed) {
					if (!devices.current.has(d.deviceId)) added = true;
					devices.current.set(d.deviceId, d);
				}
				for (const id of message.removed) {
					devices.current.delete(id);
					added = true;
				}
				if (message.sections) sections.current = {...sections.current, ...(message.sections as Sections)};
			}
			setState(s => ({version: s.version + 1, setVersion: s.setVersion + (added ? 1 : 0), figures: message.fleet, live: true}));
		};
		return () => source.close();
	}, []);
	return {devices: devices.current, sections: sections.current, ...state};
}

/** The selected device and tab live in the address (#devices/dev-1), so a reload keeps them. */
function readHash(): {tab: Tab; deviceId?: string} {
	const [tab, ...rest] = decodeURIComponent(location.hash.slice(1)).split("/");
	const known: Tab[] = ["devices", "enrollments", "faults", "updates"];
	return {tab: known.includes(tab as Tab) ? tab as Tab : "devices", deviceId: rest.length ? rest.join("/") : undefined};
}

export function App() {
	const fleet = useFleet();
	const [{tab, deviceId}, setNav] = useState(readHash);
	useEffect(() => {
		const on = () => setNav(readHash());
		addEventListener("hashchange", on);
		return () => removeEventListener("hashchange", on);
	}, []);
	const go = (t: Tab, id?: string) => {
		const hash = `#${t}${id !== undefined ? `/${encodeURIComponent(id)}` : ""}`;
		if (location.hash !== hash) history.replaceState(null, "", hash);
		setNav({tab: t, deviceId: id});
	};
	const selected = deviceId;
	const info = fleet.sections.info;
	const ids = useMemo(() => [...fleet.devices.keys()].sort((a, b) => a.localeCompare(b, undefined, {numeric: true})), [fleet.setVersion]);
	const tabButton = (t: Tab, label: string) => (
		<button class={`tab ${tab === t ? "active" : ""}`} data-testid={`tab-${t}`} onClick={() => go(t, t === "devices" ? deviceId : undefined)}>{label}</button>
	);
	return (
		<div class="app">
			<header>
				<div class="brand">Azure IoT emulator</div>
				<div class="figures" data-testid="fleet-figures">
					<span><b>{fleet.figures.devices}</b> devices</span>
					<span><b>{fleet.figures.connected}</b> connected</span>
					<span><b>{fleet.figures.telemetryPerSecond}</b> msg/s</span>
					{info && <span class="muted">scope {info.idScope} · hub {info.hubName} · MQTT :{info.mqttPort}</span>}
					<span class={`live ${fleet.live ? "on" : "off"}`} data-testid="live">{fleet.live ? "live" : "reconnecting…"}</span>
				</div>
				<nav>
					{tabButton("devices", "Devices")}
					{tabButton("enrollments", "Enrollments")}
					{tabButton("faults", "Faults")}
					{tabButton("updates", "Updates")}
				</nav>
			</header>
			<main>
				{tab === "devices" && (
					<div class="devices-tab">
						<DeviceList ids={ids} devices={fleet.devices} version={fleet.version} selected={selected} onSelect={id => go("devices", id)} />
						{selected !== undefined
							? <DeviceDetail key={selected} deviceId={selected} />
							: <section class="detail empty"><p>{ids.length ? "Select a device." : "No device yet: enroll one (Enrollments) and start it; it appears here when DPS registers it."}</p></section>}
					</div>
				)}
				{tab === "enrollments" && <Enrollments sections={fleet.sections} />}
				{tab === "faults" && <Faults sections={fleet.sections} ids={ids} devices={fleet.devices} />}
				{tab === "updates" && <Updates sections={fleet.sections} ids={ids} />}
			</main>
		</div>
	);
}
