// Per-tool health and metrics, polled, with a small chart of calls per second drawn as inline SVG.

import { request } from "./api.js";
import { el } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const WINDOW_MS = 5 * 60 * 1000;
const WIDTH = 300;
const HEIGHT = 80;

export class HealthPanel {
  constructor({ tbody, chart, now, max }) {
    this.tbody = tbody;
    this.chart = chart;
    this.now = now;
    this.max = max;
    this.samples = []; // {at, calls}
  }

  async refresh() {
    const [plugins, metrics] = await Promise.all([request("GET", "v1/plugins"), request("GET", "v1/metrics")]);
    const pluginOf = new Map();
    for (const plugin of plugins.plugins) {
      for (const tool of plugin.tools) pluginOf.set(tool, plugin);
    }
    this.tbody.replaceChildren(...metrics.tools.map((m) => this.row(m, pluginOf.get(m.tool))));
    this.sample(metrics.tools.reduce((sum, m) => sum + m.calls, 0));
  }

  row(m, plugin) {
    const failed = m.calls - m.successes - m.cancellations;
    const rate = m.calls ? `${((100 * failed) / m.calls).toFixed(1)} %` : "–";
    const circuit = m.circuit?.state ?? "closed";
    return el(
      "tr",
      { "data-tool": m.tool },
      el("td", { text: m.tool }),
      el("td", {}, el("span", { class: `plugin ${plugin?.state ?? ""}`, text: plugin ? `${plugin.name} (${plugin.state})` : "" })),
      el("td", { class: "calls", text: m.calls }),
      el("td", { text: rate }),
      el("td", { text: m.p95_ms ?? "–" }),
      el("td", { class: "in-flight", text: m.in_flight }),
      el("td", {}, el("span", { class: `circuit ${circuit}`, text: circuit })),
    );
  }

  sample(calls) {
    const at = Date.now();
    this.samples.push({ at, calls });
    this.samples = this.samples.filter((s) => at - s.at <= WINDOW_MS);
    this.draw();
  }

  rates() {
    const points = [];
    for (let i = 1; i < this.samples.length; i += 1) {
      const [a, b] = [this.samples[i - 1], this.samples[i]];
      points.push({ at: b.at, rate: Math.max(0, b.calls - a.calls) / Math.max(0.001, (b.at - a.at) / 1000) });
    }
    return points;
  }

  draw() {
    const points = this.rates();
    const top = Math.max(1, ...points.map((p) => p.rate));
    const end = Date.now();
    const coords = points.map((p) => {
      const x = WIDTH - ((end - p.at) / WINDOW_MS) * WIDTH;
      const y = HEIGHT - (p.rate / top) * (HEIGHT - 4);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", coords.join(" "));
    line.setAttribute("class", "rate");
    const axis = document.createElementNS(SVG, "line");
    for (const [k, v] of Object.entries({ x1: 0, y1: HEIGHT - 0.5, x2: WIDTH, y2: HEIGHT - 0.5 })) axis.setAttribute(k, v);
    axis.setAttribute("class", "axis");
    this.chart.replaceChildren(axis, line);
    if (coords.length) {
      const [x, y] = coords[coords.length - 1].split(",");
      const dot = document.createElementNS(SVG, "circle");
      for (const [k, v] of Object.entries({ cx: x, cy: y, r: 2, class: "now" })) dot.setAttribute(k, v);
      this.chart.append(dot);
    }
    this.max.textContent = top.toFixed(1);
    this.now.textContent = points.length ? points[points.length - 1].rate.toFixed(1) : "0";
  }
}
