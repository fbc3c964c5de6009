/*
 * The emulator's page: the fleet, each device live, and the service's controls. Bundled by
 * emulator/web/assets.ts; talks to the API it is served by.
 */
import {render} from "preact";
import "uplot/dist/uPlot.min.css";
import "./style.css";
import {App} from "./app.js";

const root = document.getElementById("app");
if (root) {
	root.textContent = "";
	render(<App />, root);
}
