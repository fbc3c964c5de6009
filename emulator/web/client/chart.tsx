/*
 * One numeric telemetry field over time, drawn by uPlot (canvas: a window of points redraws in
 * well under a millisecond).
 */
import {useEffect, useRef} from "preact/hooks";
import uPlot from "uplot";

const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d"];

export function Chart(props: {name: string; times: number[]; values: (number | null)[]; index: number}) {
	const box = useRef<HTMLDivElement>(null);
	const plot = useRef<uPlot | null>(null);
	useEffect(() => {
		const el = box.current!;
		const p = new uPlot({
			width: Math.max(200, el.clientWidth),
			height: 120,
			legend: {show: false},
			cursor: {drag: {x: false, y: false}},
			scales: {x: {time: true}},
			axes: [{size: 28, font: "11px system-ui"}, {size: 64, font: "11px system-ui"}],
			series: [{}, {label: props.name, stroke: COLORS[props.index % COLORS.length], width: 1.5, points: {show: false}}],
		}, [props.times, props.values], el);
		plot.current = p;
		const observer = new ResizeObserver(() => p.setSize({width: Math.max(200, el.clientWidth), height: 120}));
		observer.observe(el);
		return () => {
			observer.disconnect();
			p.destroy();
			plot.current = null;
		};
	}, []);
	useEffect(() => {
		plot.current?.setData([props.times, props.values]);
	}, [props.times, props.values]);
	const last = props.values.at(-1);
	return (
		<div class="chart" data-testid="chart" data-field={props.name}>
			<div class="chart-title"><span>{props.name}</span><b data-testid="chart-last">{last ?? ""}</b></div>
			<div ref={box} />
		</div>
	);
}
