/*
 * One device: its stream (/ui/events/device/{id}: a snapshot, then updates at most four times a
 * second), its telemetry (a chart per numeric field and the recent messages), its twin, direct
 * methods (a Plug and Play model's commands where the emulator has the model) and cloud-to-device
 * messages.
 */
import {useEffect, useMemo, useRef, useState} from "preact/hooks";
import type {DeviceMessage, DeviceSummary, TwinView, WebRecord} from "../protocol.js";
import {ago, call, clock, enc, parseJson, pretty} from "./api.js";
import {Chart} from "./chart.js";

/** Messages kept by the page for the selected device (as many as the server's window). */
export const WINDOW = 200;
const TABLE_ROWS = 50;
const MAX_CHARTS = 12;

interface ModelCommand {method: string; name: string; component?: string; displayName?: string; description?: string; example?: unknown}
interface Model {id: string; displayName?: string; commands: ModelCommand[]; writableProperties: {name: string; component?: string; example?: unknown}[]; telemetry: {name: string}[]; file: string}

interface DeviceState {
	status: "loading" | "present" | "missing";
	summary?: DeviceSummary;
	telemetry: WebRecord[];
	twin?: TwinView;
	dropped: number;
}

function useDevice(deviceId: string): DeviceState {
	const [state, setState] = useState<DeviceState>({status: "loading", telemetry: [], dropped: 0});
	useEffect(() => {
		const source = new EventSource(`/ui/events/device/${enc(deviceId)}`);
		source.onmessage = (event: MessageEvent<string>) => {
			const m = JSON.parse(event.data) as DeviceMessage;
			if (m.type === "missing") setState({status: "missing", telemetry: [], dropped: 0});
			else if (m.type === "snapshot") setState({status: "present", summary: m.summary, telemetry: m.telemetry.slice(-WINDOW), twin: m.twin, dropped: 0});
			else {
				setState(s => ({
					status: "present",
					summary: m.summary,
					telemetry: m.telemetry ? [...s.telemetry, ...m.telemetry].slice(-WINDOW) : s.telemetry,
					twin: m.twin ?? s.twin,
					dropped: s.dropped + (m.dropped ?? 0),
				}));
			}
		};
		return () => source.close();
	}, [deviceId]);
	return state;
}

function useModel(modelId: string | undefined): {model?: Model; problem?: string} {
	const [result, setResult] = useState<{model?: Model; problem?: string}>({});
	useEffect(() => {
		setResult({});
		if (!modelId) return;
		let alive = true;
		call<Model>("GET", `/ui/api/model?id=${enc(modelId)}`).then(r => {
			if (alive) setResult(r.ok ? {model: r.body} : {problem: r.error});
		});
		return () => { alive = false; };
	}, [modelId]);
	return result;
}

type Pane = "telemetry" | "twin" | "methods" | "c2d";

export function DeviceDetail(props: {deviceId: string}) {
	const {deviceId} = props;
	const state = useDevice(deviceId);
	const {model, problem} = useModel(state.summary?.modelId);
	const [pane, setPane] = useState<Pane>("telemetry");
	if (state.status === "loading") return <section class="detail"><p class="muted">Loading {deviceId}…</p></section>;
	if (state.status === "missing" || !state.summary) return <section class="detail"><p>No device <b>{deviceId}</b> in the hub (not registered yet, or deleted).</p></section>;
	const d = state.summary;
	const paneButton = (p: Pane, label: string) => <button class={`tab small ${pane === p ? "active" : ""}`} data-testid={`pane-${p}`} onClick={() => setPane(p)}>{label}</button>;
	return (
		<section class="detail" data-testid="device-detail" data-device-id={deviceId}>
			<div class="detail-head">
				<h2><span class={`dot ${d.connected ? "on" : "off"}`} /> <span data-testid="detail-id">{d.deviceId}</span>
					<span class={`badge ${d.connected ? "ok" : ""}`} data-testid="detail-connected">{d.connected ? "connected" : "not connected"}</span></h2>
				<dl class="facts">
					<div class="wide"><dt>model</dt><dd data-testid="detail-model" title={model ? `from ${model.file}` : ""}>{d.modelId ?? "—"}{model?.displayName ? ` · ${model.displayName}` : ""}</dd></div>
					<div><dt>enrollment</dt><dd>{d.enrollment.kind === "group" ? `group ${d.enrollment.groupId}` : d.enrollment.kind === "individual" ? `individual (${d.registrationId})` : "hub identity (no DPS)"}</dd></div>
					<div><dt>authentication</dt><dd>{d.authentication}</dd></div>
					<div><dt>last activity</dt><dd>{ago(d.lastActivity, Date.now())}</dd></div>
					<div><dt>connects</dt><dd>{d.connectCount}</dd></div>
					<div><dt>telemetry</dt><dd data-testid="detail-telemetry-count">{d.counts.telemetry}</dd></div>
					<div><dt>twin gets / patches</dt><dd>{d.counts.twinGets} / {d.counts.twinPatches}</dd></div>
					<div><dt>c2d delivered / completed / queued</dt><dd>{d.counts.c2dDelivered} / {d.counts.c2dCompleted} / {d.c2dQueue}</dd></div>
					<div><dt>method calls</dt><dd>{d.counts.methodCalls}</dd></div>
				</dl>
			</div>
			<div class="panes">
				{paneButton("telemetry", "Telemetry")}
				{paneButton("twin", "Twin")}
				{paneButton("methods", model?.commands.length ? `Commands (${model.commands.length})` : "Methods")}
				{paneButton("c2d", "Cloud-to-device")}
			</div>
			{pane === "telemetry" && <Telemetry records={state.telemetry} dropped={state.dropped} />}
			{pane === "twin" && <Twin deviceId={deviceId} twin={state.twin} model={model} />}
			{pane === "methods" && <Methods deviceId={deviceId} connected={d.connected} model={model} modelProblem={d.modelId ? problem : undefined} />}
			{pane === "c2d" && <CloudToDevice deviceId={deviceId} summary={d} />}
		</section>
	);
}

function Telemetry(props: {records: WebRecord[]; dropped: number}) {
	const {records} = props;
	const series = useMemo(() => {
		const names: string[] = [];
		for (const r of records) for (const k of Object.keys(r.fields)) if (!names.includes(k) && names.length < MAX_CHARTS) names.push(k);
		const times = records.map(r => Date.parse(r.time) / 1000);
		return names.map(name => ({name, times, values: records.map(r => r.fields[name] ?? null)}));
	}, [records]);
	const recent = records.slice(-TABLE_ROWS).reverse();
	return (
		<div class="pane" data-testid="telemetry-pane" data-window={records.length}>
			{series.length > 0 && <div class="charts">{series.map((s, i) => <Chart key={s.name} name={s.name} times={s.times} values={s.values} index={i} />)}</div>}
			<p class="muted">{records.length ? `The last ${records.length} messages (the page keeps ${WINDOW}); newest first.` : "No telemetry yet."}
				{props.dropped > 0 ? ` ${props.dropped} came faster than the page is updated and were skipped here (the API has them all).` : ""}</p>
			{recent.length > 0 && (
				<table class="grid telemetry" data-testid="telemetry-table">
					<thead><tr><th>time</th><th>body</th><th>properties</th></tr></thead>
					<tbody>
						{recent.map((r, i) => (
							<tr key={`${r.time}-${r.systemProperties["$.mid"] ?? i}`} data-testid="telemetry-row">
								<td class="nowrap">{clock(r.time)}</td>
								<td><code class="body">{r.body}{r.bodyLength ? `… (${r.bodyLength} characters)` : ""}</code></td>
								<td class="props" title={Object.entries(r.systemProperties).map(([k, v]) => `${k}=${v}`).join("\n")}>
									{Object.entries(r.properties).map(([k, v]) => <span key={k} class="prop">{k}={v}</span>)}
								</td>
							</tr>
						))}
					</tbody>
				</table>
			)}
		</div>
	);
}

function Twin(props: {deviceId: string; twin?: TwinView; model?: Model}) {
	const {twin, model} = props;
	// Starts from the model's root writable properties, at their current desired values or an example of their schema.
	const template = useMemo(() => {
		const root = model?.writableProperties.filter(p => !p.component) ?? [];
		if (!root.length) return "{\n  \n}";
		return pretty(Object.fromEntries(root.map(p => [p.name, twin?.desired[p.name] ?? p.example ?? null])));
	}, [model]);
	const [text, setText] = useState(template);
	const [edited, setEdited] = useState(false);
	useEffect(() => {
		if (!edited) setText(template);
	}, [template]);
	const [result, setResult] = useState<{ok: boolean; text: string}>();
	const [busy, setBusy] = useState(false);
	const parsed = parseJson(text, {objectOnly: true});
	const apply = async () => {
		if (!parsed.ok) return;
		setBusy(true);
		const r = await call<{version: number}>("PATCH", `/devices/${enc(props.deviceId)}/twin/desired`, parsed.value);
		setBusy(false);
		setResult(r.ok ? {ok: true, text: `Sent as desired $version ${r.body.version}.`} : {ok: false, text: r.error ?? "failed"});
	};
	return (
		<div class="pane twin" data-testid="twin-pane">
			<div class="col">
				<h3>Desired patch</h3>
				<p class="muted">A JSON object merged into the desired properties (null deletes a key) and sent to the device.
					{model?.writableProperties.length ? ` The model's writable properties: ${model.writableProperties.map(p => p.component ? `${p.component}.${p.name}` : p.name).join(", ")}.` : ""}</p>
				<textarea class={`editor ${parsed.ok ? "" : "invalid"}`} rows={8} spellcheck={false} value={text} onInput={e => { setEdited(true); setText(e.currentTarget.value); }} data-testid="desired-editor" />
				<div class="actions">
					<button onClick={apply} disabled={!parsed.ok || busy} data-testid="desired-apply">Update desired</button>
					<span class={parsed.ok ? "muted" : "error"} data-testid="desired-check">{parsed.ok ? "valid JSON object" : parsed.problem}</span>
				</div>
				{result && <p class={result.ok ? "ok" : "error"} data-testid="desired-result">{result.text}</p>}
				<h3>Desired <span class="muted" data-testid="desired-version">$version {twin?.desired.$version ?? "?"}</span></h3>
				<pre class="json" data-testid="twin-desired">{pretty(withoutVersion(twin?.desired))}</pre>
			</div>
			<div class="col">
				<h3>Reported <span class="muted" data-testid="reported-version">$version {twin?.reported.$version ?? "?"}</span></h3>
				<pre class="json" data-testid="twin-reported">{pretty(withoutVersion(twin?.reported))}</pre>
			</div>
		</div>
	);
}

function withoutVersion(section: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
	if (!section) return undefined;
	const {$version: _, ...rest} = section;
	return rest;
}

interface MethodCall {name: string; at: string; ms: number; status?: number; payload?: unknown; error?: string}

function Methods(props: {deviceId: string; connected: boolean; model?: Model; modelProblem?: string}) {
	const {model} = props;
	const [name, setName] = useState("");
	const [payload, setPayload] = useState("");
	const [timeout, setTimeoutSeconds] = useState("30");
	const [busy, setBusy] = useState(false);
	const [calls, setCalls] = useState<MethodCall[]>([]);
	const parsed = parseJson(payload, {empty: null});
	const seconds = Number(timeout);
	const validTimeout = timeout.trim() !== "" && Number.isFinite(seconds) && seconds >= 0 && seconds <= 300;
	const validName = /^[^/#+\s]+$/.test(name);
	const pick = (c: ModelCommand) => {
		setName(c.method);
		setPayload(c.example === undefined ? "" : JSON.stringify(c.example, null, 2));
	};
	const invoke = async () => {
		if (!parsed.ok || !validName || !validTimeout) return;
		setBusy(true);
		const started = performance.now();
		const r = await call<{status: number; payload: unknown}>("POST", `/devices/${enc(props.deviceId)}/methods/${enc(name)}`, {payload: parsed.value, timeoutSeconds: seconds});
		const ms = Math.round(performance.now() - started);
		setBusy(false);
		const entry: MethodCall = r.ok ? {name, at: new Date().toISOString(), ms, status: r.body.status, payload: r.body.payload} : {name, at: new Date().toISOString(), ms, error: `${r.status ? `HTTP ${r.status}: ` : ""}${r.error}`};
		setCalls(c => [entry, ...c].slice(0, 10));
	};
	const latest = calls[0];
	return (
		<div class="pane methods" data-testid="methods-pane">
			{model && model.commands.length > 0 && (
				<div class="commands">
					<h3>Commands of {model.displayName ?? model.id}</h3>
					<div class="command-list">
						{model.commands.map(c => (
							<button key={c.method} class="command" title={c.description ?? ""} onClick={() => pick(c)} data-testid="model-command" data-method={c.method}>
								{c.displayName ?? c.name}{c.component ? <span class="muted"> ({c.component})</span> : null}
							</button>
						))}
					</div>
				</div>
			)}
			{props.modelProblem && <p class="muted">Model: {props.modelProblem}</p>}
			<div class="form">
				<label>Method name<input value={name} onInput={e => setName(e.currentTarget.value)} placeholder="e.g. reboot, or component*command" data-testid="method-name" /></label>
				<label>Payload (JSON; empty sends null)
					<textarea class={`editor ${parsed.ok ? "" : "invalid"}`} rows={5} spellcheck={false} value={payload} onInput={e => setPayload(e.currentTarget.value)} data-testid="method-payload" />
				</label>
				{!parsed.ok && <span class="error">{parsed.problem}</span>}
				<label>Timeout (seconds)<input type="number" min={0} max={300} value={timeout} onInput={e => setTimeoutSeconds(e.currentTarget.value)} data-testid="method-timeout" /></label>
				<div class="actions">
					<button onClick={invoke} disabled={busy || !parsed.ok || !validName || !validTimeout} data-testid="method-invoke">{busy ? "Waiting for the device…" : "Invoke"}</button>
					{!props.connected && <span class="muted">The device is not connected: the call will get 404.</span>}
				</div>
			</div>
			{latest && (
				<div class="response" data-testid="method-response">
					<h3>Response to {latest.name} <span class="muted">after {latest.ms} ms</span></h3>
					{latest.error
						? <p class="error" data-testid="method-error">{latest.error}</p>
						: <><p>status <b data-testid="method-status">{latest.status}</b></p><pre class="json" data-testid="method-response-payload">{pretty(latest.payload)}</pre></>}
				</div>
			)}
			{calls.length > 1 && (
				<table class="grid"><thead><tr><th>time</th><th>method</th><th>answer</th></tr></thead>
					<tbody>{calls.slice(1).map((c, i) => <tr key={i}><td>{clock(c.at)}</td><td>{c.name}</td><td>{c.error ?? `${c.status} ${JSON.stringify(c.payload)}`}</td></tr>)}</tbody>
				</table>
			)}
		</div>
	);
}

function CloudToDevice(props: {deviceId: string; summary: DeviceSummary}) {
	const [body, setBody] = useState("");
	const [properties, setProperties] = useState("");
	const [result, setResult] = useState<{ok: boolean; text: string}>();
	const parsed = parseJson(properties, {objectOnly: true, empty: {}});
	const propsProblem = !parsed.ok ? parsed.problem
		: Object.values(parsed.value as Record<string, unknown>).some(v => typeof v !== "string") ? "property values must be strings" : undefined;
	const sent = useRef(0);
	const send = async () => {
		if (propsProblem) return;
		const r = await call<{messageId: string}>("POST", `/devices/${enc(props.deviceId)}/c2d`, {body, properties: parsed.ok ? parsed.value : {}});
		sent.current++;
		setResult(r.ok ? {ok: true, text: `Queued as message ${r.body.messageId}.`} : {ok: false, text: r.error ?? "failed"});
	};
	const d = props.summary;
	return (
		<div class="pane c2d" data-testid="c2d-pane">
			<div class="form">
				<label>Body<textarea class="editor" rows={4} value={body} onInput={e => setBody(e.currentTarget.value)} data-testid="c2d-body" /></label>
				<label>Application properties (JSON object of strings, optional)
					<textarea class={`editor ${propsProblem ? "invalid" : ""}`} rows={2} spellcheck={false} value={properties} onInput={e => setProperties(e.currentTarget.value)} placeholder='{"colour": "blue"}' data-testid="c2d-properties" />
				</label>
				{propsProblem && <span class="error">{propsProblem}</span>}
				<div class="actions"><button onClick={send} disabled={!!propsProblem} data-testid="c2d-send">Send</button></div>
				{result && <p class={result.ok ? "ok" : "error"} data-testid="c2d-result">{result.text}</p>}
			</div>
			<p class="muted">Queued {d.c2dQueue} (at most 50, kept while a persistent-session device is offline) · delivered {d.counts.c2dDelivered} · completed {d.counts.c2dCompleted}</p>
		</div>
	);
}
