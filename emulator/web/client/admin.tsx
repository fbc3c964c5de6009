/*
 * The service's controls: enrollments (a key only when asked for), faults (each switched on and
 * off), and Device Update's updates and deployments. Their lists come with the fleet stream.
 */
import {useMemo, useState} from "preact/hooks";
import type {DeviceSummary} from "../protocol.js";
import {call, enc, parseJson, pretty} from "./api.js";

interface Rows<T> {items: T[]; total: number}
interface Enrollment {registrationId: string; attestation: string; deviceId?: string; enabled: boolean; registeredDeviceId?: string}
interface Group {groupId: string; attestation: string; caName?: string; enabled: boolean; registrations: number}
interface FaultEntry {id: number; fault: {kind: string; [k: string]: unknown}; remaining: number | null; addedAt: string}
interface UpdateId {provider: string; name: string; version: string}
interface Update {updateId: UpdateId; fileUrls: Record<string, string>}
interface DeviceDeployment {deviceId: string; state: string; reason?: string; download: {requests: number; bytes: number}; updatedDateTime: string}
interface Deployment {deploymentId: string; updateId: UpdateId; createdDateTime: string; canceled: boolean; state: string; devices: DeviceDeployment[]; fileUrlScheme: string}

export interface Sections {
	info?: {idScope: string; hubName: string; mqttPort: number; tls: string};
	enrollments?: Rows<Enrollment>;
	groups?: Rows<Group>;
	faults?: FaultEntry[];
	updates?: Update[];
	deployments?: Deployment[];
}

const SHOWN = 200;

function Outcome(props: {result?: {ok: boolean; text: string}; testid?: string}) {
	if (!props.result) return null;
	return <p class={props.result.ok ? "ok" : "error"} data-testid={props.testid}>{props.result.text}</p>;
}

/** A key appears only after "Show key" (an explicit POST …/attestationmechanism), and goes on "Hide". */
function KeyCell(props: {path: string; attestation: string; testid: string}) {
	const [key, setKey] = useState<string>();
	const [problem, setProblem] = useState<string>();
	if (key !== undefined) return <td><code class="key" data-testid={`key-${props.testid}`}>{key}</code> <button class="link" onClick={() => setKey(undefined)}>Hide</button></td>;
	const show = async () => {
		const r = await call<{type: string; symmetricKey?: {primaryKey: string}; x509?: unknown}>("POST", props.path);
		if (!r.ok) return setProblem(r.error);
		setKey(r.body.symmetricKey?.primaryKey ?? JSON.stringify(r.body.x509));
	};
	return <td><button class="link" onClick={show} data-testid={`show-key-${props.testid}`}>{props.attestation === "x509" ? "Show attestation" : "Show key"}</button>{problem && <span class="error"> {problem}</span>}</td>;
}

export function Enrollments(props: {sections: Sections}) {
	const {enrollments, groups} = props.sections;
	const [filter, setFilter] = useState("");
	const [newId, setNewId] = useState("");
	const [newGroup, setNewGroup] = useState("");
	const [result, setResult] = useState<{ok: boolean; text: string}>();
	const needle = filter.trim().toLowerCase();
	const individual = (enrollments?.items ?? []).filter(e => !needle || e.registrationId.toLowerCase().includes(needle));
	const grouped = (groups?.items ?? []).filter(g => !needle || g.groupId.toLowerCase().includes(needle));
	const toggle = async (path: string, enabled: boolean) => {
		const r = await call("PATCH", path, {enabled});
		if (!r.ok) setResult({ok: false, text: r.error ?? "failed"});
	};
	const add = async (kind: "enrollment" | "group") => {
		const r = kind === "enrollment"
			? await call("POST", "/enrollments", {registrationId: newId.trim()})
			: await call("POST", "/enrollment-groups", {groupId: newGroup.trim()});
		// The answer holds the new key: it is not shown here (Show key does that on request).
		setResult(r.ok ? {ok: true, text: `Added ${kind === "enrollment" ? newId.trim() : newGroup.trim()} with a new symmetric key (Show key to see it).`} : {ok: false, text: r.error ?? "failed"});
		if (r.ok) kind === "enrollment" ? setNewId("") : setNewGroup("");
	};
	return (
		<section class="admin" data-testid="enrollments">
			<div class="toolbar">
				<input type="search" placeholder="Filter" value={filter} onInput={e => setFilter(e.currentTarget.value)} />
				<input placeholder="registration id" value={newId} onInput={e => setNewId(e.currentTarget.value)} data-testid="new-enrollment-id" />
				<button disabled={!newId.trim()} onClick={() => add("enrollment")} data-testid="add-enrollment">Add individual enrollment</button>
				<input placeholder="group id" value={newGroup} onInput={e => setNewGroup(e.currentTarget.value)} />
				<button disabled={!newGroup.trim()} onClick={() => add("group")}>Add enrollment group</button>
			</div>
			<Outcome result={result} testid="enrollment-result" />
			<h3>Individual enrollments <span class="muted">{enrollments?.total ?? 0}</span></h3>
			<table class="grid">
				<thead><tr><th>registration id</th><th>attestation</th><th>device id</th><th>registered as</th><th>enabled</th><th>key</th></tr></thead>
				<tbody>
					{individual.slice(0, SHOWN).map(e => (
						<tr key={e.registrationId} data-testid="enrollment-row" data-id={e.registrationId}>
							<td>{e.registrationId}</td><td>{e.attestation}</td><td>{e.deviceId ?? "(the registration id)"}</td><td>{e.registeredDeviceId ?? "—"}</td>
							<td><input type="checkbox" checked={e.enabled} onChange={ev => toggle(`/enrollments/${enc(e.registrationId)}`, ev.currentTarget.checked)} /></td>
							<KeyCell path={`/enrollments/${enc(e.registrationId)}/attestationmechanism`} attestation={e.attestation} testid={e.registrationId} />
						</tr>
					))}
				</tbody>
			</table>
			{individual.length > SHOWN && <p class="muted">The first {SHOWN} of {individual.length}: filter to see others.</p>}
			<h3>Enrollment groups <span class="muted">{groups?.total ?? 0}</span></h3>
			<table class="grid">
				<thead><tr><th>group id</th><th>attestation</th><th>CA</th><th>registrations</th><th>enabled</th><th>key</th></tr></thead>
				<tbody>
					{grouped.slice(0, SHOWN).map(g => (
						<tr key={g.groupId} data-testid="group-row" data-id={g.groupId}>
							<td>{g.groupId}</td><td>{g.attestation}</td><td>{g.caName ?? "—"}</td><td>{g.registrations}</td>
							<td><input type="checkbox" checked={g.enabled} onChange={ev => toggle(`/enrollment-groups/${enc(g.groupId)}`, ev.currentTarget.checked)} /></td>
							<KeyCell path={`/enrollment-groups/${enc(g.groupId)}/attestationmechanism`} attestation={g.attestation} testid={g.groupId} />
						</tr>
					))}
				</tbody>
			</table>
		</section>
	);
}

/** Each kind with the parameters it starts from and what it does. */
const FAULTS: {kind: string; params: Record<string, unknown>; does: string}[] = [
	{kind: "throttle", params: {}, does: "the hub closes the connection on the device's next publish (over quota)"},
	{kind: "dropEvery", params: {ms: 10000}, does: "hub connections made from now on are closed after ms"},
	{kind: "tokenLifetime", params: {seconds: 30}, does: "hub connections made from now on are closed after seconds (token expiry)"},
	{kind: "connack", params: {target: "hub", returnCode: 5}, does: "CONNECT refused with return code 3, 4 or 5 on hub or dps"},
	{kind: "twin.status", params: {status: 500}, does: "twin GET and reported patches answered with this status"},
	{kind: "twin.malformed", params: {}, does: "twin replies the device cannot use"},
	{kind: "noPuback", params: {}, does: "telemetry not acknowledged (until switched off, or after ms)"},
	{kind: "down", params: {ms: 5000}, does: "every connection dropped and refused for ms"},
	{kind: "dps.status", params: {on: "register", status: 429, retryAfter: 2}, does: "DPS answers register or poll with this status"},
	{kind: "dps.throttle", params: {perSecond: 10, retryAfter: 3}, does: "DPS answers 429 above perSecond registrations"},
	{kind: "dps.delay", params: {on: "register", ms: 3000}, does: "DPS answers late"},
	{kind: "dps.drop", params: {on: "register"}, does: "DPS closes the connection instead of answering"},
	{kind: "dps.malformed", params: {on: "register"}, does: "DPS answers with JSON cut short"},
	{kind: "dps.failed", params: {}, does: "registration ends with status failed"},
	{kind: "download.drop", params: {afterBytes: 1024}, does: "update downloads cut after afterBytes"},
	{kind: "download.corrupt", params: {offset: 0}, does: "update downloads with the byte at offset inverted"},
	{kind: "download.slow", params: {bytesPerSecond: 4096}, does: "update downloads at bytesPerSecond"},
];

export function Faults(props: {sections: Sections; ids: string[]; devices: Map<string, DeviceSummary>}) {
	const active = props.sections.faults ?? [];
	const [kind, setKind] = useState(FAULTS[0].kind);
	const spec = FAULTS.find(f => f.kind === kind)!;
	const [params, setParams] = useState(pretty(spec.params));
	const [target, setTarget] = useState("");
	const [count, setCount] = useState("");
	const [result, setResult] = useState<{ok: boolean; text: string}>();
	const parsed = parseJson(params, {objectOnly: true, empty: {}});
	const choose = (k: string) => {
		setKind(k);
		setParams(pretty(FAULTS.find(f => f.kind === k)!.params));
	};
	const countValue = count.trim() === "" ? undefined : Number(count);
	const validCount = countValue === undefined || (Number.isInteger(countValue) && countValue > 0);
	const on = async () => {
		if (!parsed.ok || !validCount) return;
		const id = target.trim();
		// DPS faults match the registration id, hub faults the device id.
		const filter = !id ? {} : kind.startsWith("dps.") || (kind === "connack" && (parsed.value as {target?: string}).target === "dps")
			? {registrationId: props.devices.get(id)?.registrationId ?? id} : {deviceId: id};
		const r = await call<{id: number}>("POST", "/faults", {kind, ...(parsed.value as object), ...filter, ...(countValue ? {count: countValue} : {})});
		setResult(r.ok ? {ok: true, text: `${kind} is on${id ? ` for ${id}` : " for every device"} (fault ${r.body.id}).`} : {ok: false, text: r.error ?? "failed"});
	};
	const off = async (entry: FaultEntry) => {
		const r = await call("DELETE", `/faults/${entry.id}`);
		setResult(r.ok ? {ok: true, text: `${entry.fault.kind} (fault ${entry.id}) is off.`} : {ok: false, text: r.error ?? "failed"});
	};
	const allOff = async () => {
		const r = await call("DELETE", "/faults");
		setResult(r.ok ? {ok: true, text: "Every fault is off."} : {ok: false, text: r.error ?? "failed"});
	};
	const dropAll = async () => {
		const r = await call("POST", "/faults/drop");
		setResult(r.ok ? {ok: true, text: "Every connection was dropped."} : {ok: false, text: r.error ?? "failed"});
	};
	const datalist = useMemo(() => props.ids.slice(0, 2000), [props.ids]);
	return (
		<section class="admin" data-testid="faults">
			<h3>Switch a fault on</h3>
			<div class="form wide">
				<label>Kind
					<select value={kind} onChange={e => choose(e.currentTarget.value)} data-testid="fault-kind">
						{FAULTS.map(f => <option key={f.kind} value={f.kind}>{f.kind}</option>)}
					</select>
				</label>
				<p class="muted">{spec.does}</p>
				<label>Parameters (JSON)<textarea class={`editor ${parsed.ok ? "" : "invalid"}`} rows={3} spellcheck={false} value={params} onInput={e => setParams(e.currentTarget.value)} data-testid="fault-params" /></label>
				{!parsed.ok && <span class="error">{parsed.problem}</span>}
				<label>Device (empty: every device)<input list="fault-devices" value={target} onInput={e => setTarget(e.currentTarget.value)} data-testid="fault-device" /></label>
				<datalist id="fault-devices">{datalist.map(id => <option key={id} value={id} />)}</datalist>
				<label>Times it fires (empty: until switched off)<input type="number" min={1} value={count} onInput={e => setCount(e.currentTarget.value)} /></label>
				<div class="actions">
					<button onClick={on} disabled={!parsed.ok || !validCount} data-testid="fault-on">Switch on</button>
					<button class="secondary" onClick={allOff} data-testid="faults-all-off">Switch all off</button>
					<button class="secondary" onClick={dropAll}>Drop every connection now</button>
				</div>
			</div>
			<Outcome result={result} testid="fault-result" />
			<h3>Active faults <span class="muted">{active.length}</span></h3>
			{active.length === 0 ? <p class="muted">None: the emulator answers as Azure does.</p> : (
				<table class="grid" data-testid="active-faults">
					<thead><tr><th>id</th><th>kind</th><th>parameters</th><th>device</th><th>fires left</th><th /></tr></thead>
					<tbody>
						{active.map(entry => {
							const {kind: k, deviceId, registrationId, count: _c, ...rest} = entry.fault;
							return (
								<tr key={entry.id} data-testid="active-fault" data-kind={k}>
									<td>{entry.id}</td><td>{k}</td><td><code>{JSON.stringify(rest)}</code></td>
									<td>{String(deviceId ?? registrationId ?? "every device")}</td><td>{entry.remaining ?? "∞"}</td>
									<td><button onClick={() => off(entry)} data-testid="fault-off">Switch off</button></td>
								</tr>
							);
						})}
					</tbody>
				</table>
			)}
		</section>
	);
}

const idText = (u: UpdateId) => `${u.provider}/${u.name}/${u.version}`;

export function Updates(props: {sections: Sections; ids: string[]}) {
	const updates = props.sections.updates ?? [];
	const deployments = props.sections.deployments ?? [];
	const [form, setForm] = useState({provider: "", name: "", version: "", file: "", manufacturer: "", model: ""});
	const [chosen, setChosen] = useState("");
	const [devices, setDevices] = useState("");
	const [scheme, setScheme] = useState("http");
	const [result, setResult] = useState<{ok: boolean; text: string}>();
	const field = (k: keyof typeof form, label: string) => (
		<label>{label}<input value={form[k]} onInput={e => setForm({...form, [k]: e.currentTarget.value})} /></label>
	);
	const importUpdate = async () => {
		const r = await call("POST", "/updates", {provider: form.provider, name: form.name, version: form.version, file: form.file, compatibility: {manufacturer: form.manufacturer, model: form.model}});
		setResult(r.ok ? {ok: true, text: `Imported ${form.provider}/${form.name}/${form.version}.`} : {ok: false, text: r.error ?? "failed"});
	};
	const deploy = async () => {
		const update = updates.find(u => idText(u.updateId) === chosen);
		if (!update) return;
		const deviceIds = devices.split(/[\s,]+/).filter(Boolean);
		const r = await call<{deploymentId: string}>("POST", "/deployments", {updateId: update.updateId, deviceIds, fileUrlScheme: scheme});
		setResult(r.ok ? {ok: true, text: `Deployment ${r.body.deploymentId} started.`} : {ok: false, text: r.error ?? "failed"});
	};
	const cancel = async (id: string) => {
		const r = await call("DELETE", `/deployments/${enc(id)}`);
		setResult(r.ok ? {ok: true, text: `Deployment ${id} canceled.`} : {ok: false, text: r.error ?? "failed"});
	};
	return (
		<section class="admin" data-testid="updates">
			<Outcome result={result} testid="updates-result" />
			<h3>Updates <span class="muted">{updates.length}</span></h3>
			{updates.length > 0 && (
				<table class="grid"><thead><tr><th>update</th><th>files</th></tr></thead>
					<tbody>{updates.map(u => <tr key={idText(u.updateId)} data-testid="update-row"><td>{idText(u.updateId)}</td><td>{Object.entries(u.fileUrls).map(([id, url]) => <div key={id}><code>{url}</code></div>)}</td></tr>)}</tbody>
				</table>
			)}
			<details>
				<summary>Import a file as an update</summary>
				<div class="form wide">
					{field("provider", "Provider")}{field("name", "Name")}{field("version", "Version")}
					{field("file", "File (a path on the emulator's machine)")}{field("manufacturer", "Compatibility: manufacturer")}{field("model", "Compatibility: model")}
					<div class="actions"><button onClick={importUpdate}>Import</button></div>
				</div>
			</details>
			{updates.length > 0 && (
				<div class="form wide">
					<h3>Deploy</h3>
					<label>Update<select value={chosen} onChange={e => setChosen(e.currentTarget.value)} data-testid="deploy-update">
						<option value="">(choose)</option>
						{updates.map(u => <option key={idText(u.updateId)} value={idText(u.updateId)}>{idText(u.updateId)}</option>)}
					</select></label>
					<label>Devices (ids, separated by spaces or commas)<input value={devices} onInput={e => setDevices(e.currentTarget.value)} list="deploy-devices" data-testid="deploy-devices" /></label>
					<datalist id="deploy-devices">{props.ids.slice(0, 2000).map(id => <option key={id} value={id} />)}</datalist>
					<label>File URLs<select value={scheme} onChange={e => setScheme(e.currentTarget.value)}><option value="http">http (as ADU)</option><option value="https">https</option></select></label>
					<div class="actions"><button onClick={deploy} disabled={!chosen || !devices.trim()} data-testid="deploy">Deploy</button></div>
				</div>
			)}
			<h3>Deployments <span class="muted">{deployments.length}</span></h3>
			{deployments.length === 0 ? <p class="muted">None yet.</p> : deployments.map(d => (
				<div class="deployment" key={d.deploymentId} data-testid="deployment" data-state={d.state}>
					<div class="deployment-head">
						<b>{d.deploymentId}</b> <span>{idText(d.updateId)}</span> <span class={`badge state-${d.state}`}>{d.state}</span>
						<span class="muted">{d.createdDateTime} · {d.fileUrlScheme}</span>
						{!d.canceled && d.state === "inProgress" && <button class="secondary" onClick={() => cancel(d.deploymentId)} data-testid="deployment-cancel">Cancel</button>}
					</div>
					<table class="grid"><thead><tr><th>device</th><th>state</th><th>why</th><th>downloaded</th><th>updated</th></tr></thead>
						<tbody>{d.devices.slice(0, SHOWN).map(x => (
							<tr key={x.deviceId} data-testid="deployment-device" data-state={x.state}><td>{x.deviceId}</td><td><span class={`badge state-${x.state}`}>{x.state}</span></td><td>{x.reason ?? ""}</td><td>{x.download.bytes} B in {x.download.requests}</td><td>{x.updatedDateTime}</td></tr>
						))}</tbody>
					</table>
				</div>
			))}
		</section>
	);
}
