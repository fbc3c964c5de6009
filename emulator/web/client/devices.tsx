/*
 * The device list: filtered by id or model, and virtualized (only the rows in view are rendered),
 * so a fleet of thousands costs what a screenful does.
 */
import {useEffect, useMemo, useRef, useState} from "preact/hooks";
import type {DeviceSummary} from "../protocol.js";
import {ago} from "./api.js";

const ROW = 44;
const OVERSCAN = 6;

function enrollmentLabel(d: DeviceSummary): string {
	return d.enrollment.kind === "group" ? `group ${d.enrollment.groupId}` : d.enrollment.kind === "individual" ? "individual" : "hub identity";
}

export function DeviceList(props: {ids: string[]; devices: Map<string, DeviceSummary>; version: number; selected?: string; onSelect(id: string): void}) {
	const {ids, devices, selected, onSelect} = props;
	const [filter, setFilter] = useState("");
	const [onlyConnected, setOnlyConnected] = useState(false);
	const [scroll, setScroll] = useState(0);
	const [height, setHeight] = useState(600);
	const box = useRef<HTMLDivElement>(null);
	useEffect(() => {
		const el = box.current;
		if (!el) return;
		const observer = new ResizeObserver(() => setHeight(el.clientHeight));
		observer.observe(el);
		return () => observer.disconnect();
	}, []);
	const needle = filter.trim().toLowerCase();
	// Filtering by connection state follows the rows as they change; by text only as the set does.
	const shown = useMemo(() => ids.filter(id => {
		const d = devices.get(id);
		if (!d) return false;
		if (onlyConnected && !d.connected) return false;
		return !needle || id.toLowerCase().includes(needle) || (d.modelId ?? "").toLowerCase().includes(needle);
	}), [ids, needle, onlyConnected, onlyConnected ? props.version : 0]);
	const now = Date.now();
	const first = Math.max(0, Math.floor(scroll / ROW) - OVERSCAN);
	const last = Math.min(shown.length, Math.ceil((scroll + height) / ROW) + OVERSCAN);
	const rows = [];
	for (let i = first; i < last; i++) {
		const d = devices.get(shown[i]);
		if (!d) continue;
		rows.push(
			<div key={d.deviceId} class={`row ${d.deviceId === selected ? "selected" : ""}`} style={{top: `${i * ROW}px`}}
				data-testid="device-row" data-device-id={d.deviceId} data-connected={String(d.connected)} onClick={() => onSelect(d.deviceId)}>
				<div class="line1">
					<span class={`dot ${d.connected ? "on" : "off"}`} title={d.connected ? "connected" : "not connected"} />
					<span class="id">{d.deviceId}</span>
					<span class="count" title="telemetry messages">{d.counts.telemetry}</span>
				</div>
				<div class="line2">
					<span>{ago(d.lastActivity, now)}</span>
					<span title={d.modelId ?? ""}>{d.modelId ?? enrollmentLabel(d)}</span>
				</div>
			</div>,
		);
	}
	return (
		<aside class="list">
			<div class="list-tools">
				<input type="search" placeholder="Filter by id or model" value={filter} onInput={e => setFilter(e.currentTarget.value)} data-testid="device-filter" />
				<label><input type="checkbox" checked={onlyConnected} onChange={e => setOnlyConnected(e.currentTarget.checked)} /> connected</label>
				<span class="muted">{shown.length === ids.length ? `${ids.length}` : `${shown.length} of ${ids.length}`}</span>
			</div>
			<div class="scroller" ref={box} onScroll={e => setScroll(e.currentTarget.scrollTop)} data-testid="device-list">
				<div class="spacer" style={{height: `${shown.length * ROW}px`}}>{rows}</div>
			</div>
		</aside>
	);
}
