// rlhf-studio's runs page: a list of stages (and eval reports) under the runs directory, each
// stage's metrics as small SVG line charts, refreshed while it trains. Names go in as text only.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
let current = null;  // {index, kind: "metrics" | "report"}

function status(text) { $("status").textContent = text; }

async function json(path) {
  const response = await fetch(path);
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function svg(tag, attributes) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  return node;
}

function short(value) {
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude >= 1e5 || magnitude < 1e-3)) return value.toExponential(2);
  return Number(value.toPrecision(4)).toString();
}

// One metric's points [[step, value], ...] as a 300×150 chart.
function chart(name, points) {
  const box = document.createElement("div");
  box.className = "chart";
  const title = document.createElement("h3");
  title.textContent = name + " (" + points.length + ")";
  box.append(title);
  const [width, height, left, bottom] = [300, 150, 46, 18];
  const plot = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}` });
  const steps = points.map((p) => p[0]);
  const values = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  let [y0, y1] = [Math.min(...values), Math.max(...values)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const x = (step) => left + (x1 === x0 ? 0.5 : (step - x0) / (x1 - x0)) * (width - left - 6);
  const y = (value) => 6 + (1 - (value - y0) / (y1 - y0)) * (height - bottom - 12);
  plot.append(svg("line", { class: "axis", x1: left, y1: height - bottom, x2: width - 6, y2: height - bottom }));
  plot.append(svg("line", { class: "axis", x1: left, y1: 6, x2: left, y2: height - bottom }));
  const path = points.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1)).join(" ");
  plot.append(svg("path", { class: "line", d: path }));
  if (points.length === 1) plot.append(svg("circle", { cx: x(points[0][0]), cy: y(points[0][1]), r: 3, fill: "#0969da" }));
  const label = (text, attributes) => { const t = svg("text", attributes); t.textContent = text; plot.append(t); };
  label(short(y1), { x: 2, y: 12 });
  label(short(y0), { x: 2, y: height - bottom });
  label("step " + x0, { x: left, y: height - 4 });
  label(String(x1), { x: width - 40, y: height - 4 });
  box.append(plot);
  return box;
}

async function showMetrics(index) {
  const data = await json(`/api/runs/${index}/metrics`);
  $("title").textContent = data.name;
  $("report").hidden = true;
  const charts = Object.entries(data.series).map(([name, points]) => chart(name, points));
  $("charts").replaceChildren(...charts);
  if (charts.length === 0) $("charts").textContent = "(no metrics yet)";
}

function showReport(index, name) {
  $("title").textContent = name;
  $("charts").replaceChildren();
  $("report").src = `/api/runs/${index}/report`;
  $("report").hidden = false;
}

async function refresh() {
  try {
    const data = await json("/api/runs");
    const items = [];
    for (const entry of data.runs) {
      for (const kind of ["metrics", "report"].filter((k) => entry[k])) {
        const li = document.createElement("li");
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = entry.name + (kind === "report" ? " (report)" : "");
        button.dataset.index = String(entry.index);
        button.dataset.kind = kind;
        if (current && current.index === entry.index && current.kind === kind) button.classList.add("current");
        button.addEventListener("click", () => {
          current = { index: entry.index, kind, name: entry.name };
          refresh();
        });
        li.append(button);
        items.push(li);
      }
    }
    $("entries").replaceChildren(...items);
    if (current && current.kind === "metrics") await showMetrics(current.index);
    if (current && current.kind === "report" && $("report").hidden) showReport(current.index, current.name);
    status("");
  } catch (error) {
    status("Could not load: " + error.message);
  }
}

refresh();
setInterval(() => { if (!current || current.kind === "metrics") refresh(); }, 5000);
