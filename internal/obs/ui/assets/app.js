// weir status page: polls the REST status once a second and draws it.
// Plain browser JavaScript, no libraries; every element it draws has a
// stable id or class (see package ui's doc comment).
"use strict";

const POLL_MS = 1000;       // time between the end of one poll and the next
const FETCH_TIMEOUT_MS = 3000;
const CHECKPOINT_ROWS = 10; // newest checkpoints shown
const SVG = "http://www.w3.org/2000/svg";

const $ = (sel) => document.querySelector(sel);

// el creates an element; svg=true for SVG. attrs are attributes, text its text.
function el(tag, attrs, text, svg) {
  const e = svg ? document.createElementNS(SVG, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
const s = (tag, attrs, text) => el(tag, attrs, text, true);

// --- formatting -----------------------------------------------------------

function fmtNum(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  const a = Math.abs(n);
  if (a >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (a >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (a >= 1e4) return (n / 1e3).toFixed(1) + "k";
  if (a >= 100 || Number.isInteger(n)) return String(Math.round(n));
  return n.toFixed(1);
}
function fmtBytes(b) {
  if (!(b >= 0)) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i === 0 ? b : b.toFixed(1)) + " " + u[i];
}
function fmtDuration(sec) {
  if (!(sec >= 0)) return "–";
  sec = Math.floor(sec);
  const h = Math.floor(sec / 3600), m = Math.floor(sec / 60) % 60, x = sec % 60;
  if (h > 0) return h + "h" + String(m).padStart(2, "0") + "m";
  if (m > 0) return m + "m" + String(x).padStart(2, "0") + "s";
  return x + "s";
}
function fmtMs(ms) { return ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : ms + " ms"; }
function fmtTime(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? "–" : d.toLocaleTimeString([], { hour12: false });
}
function bpClass(bp) { return bp >= 0.5 ? "bp-high" : bp >= 0.1 ? "bp-mid" : "bp-low"; }

// --- header ---------------------------------------------------------------

function drawJob(job) {
  $("#job-name").textContent = job.name || "";
  $("#job-state").textContent = job.state || "–";
  $("#job-uptime").textContent = fmtDuration(job.uptime_seconds);
  $("#job-restarts").textContent = String(job.restarts ?? "–");
  $("#job-progress").textContent = job.progress >= 0 ? Math.round(job.progress * 100) + " %" : "unbounded";
  const f = $("#job-failure");
  f.hidden = !job.last_failure;
  f.textContent = job.last_failure ? "last failure: " + job.last_failure : "";
  document.title = "weir " + (job.name || "") + " – " + (job.state || "");
}

// --- job graph ------------------------------------------------------------

const BOX_W = 190, BOX_H = 78, GAP_X = 80, GAP_Y = 26, PAD = 12;

// depths returns operator id -> topological depth (longest path from a
// source); operators on a cycle (none expected) keep the depth reached.
function depths(ops, edges) {
  const depth = new Map(ops.map((o) => [o.id, 0]));
  const indeg = new Map(ops.map((o) => [o.id, 0]));
  const out = new Map(ops.map((o) => [o.id, []]));
  for (const e of edges) {
    if (!depth.has(e.from) || !depth.has(e.to)) continue;
    out.get(e.from).push(e.to);
    indeg.set(e.to, indeg.get(e.to) + 1);
  }
  const queue = ops.filter((o) => indeg.get(o.id) === 0).map((o) => o.id);
  while (queue.length) {
    const id = queue.shift();
    for (const to of out.get(id)) {
      depth.set(to, Math.max(depth.get(to), depth.get(id) + 1));
      indeg.set(to, indeg.get(to) - 1);
      if (indeg.get(to) === 0) queue.push(to);
    }
  }
  return depth;
}

function drawGraph(ops, edges) {
  const svg = $("#graph svg");
  svg.replaceChildren();
  if (!ops.length) {
    svg.setAttribute("width", 400); svg.setAttribute("height", 40);
    svg.append(s("text", { x: PAD, y: 24, class: "nodata" }, "no operators yet"));
    return;
  }
  const depth = depths(ops, edges);
  const columns = [];
  for (const o of ops) {
    const d = depth.get(o.id);
    (columns[d] = columns[d] || []).push(o);
  }
  const rows = Math.max(...columns.map((c) => (c ? c.length : 0)));
  const height = PAD * 2 + rows * BOX_H + (rows - 1) * GAP_Y;
  const width = PAD * 2 + columns.length * BOX_W + (columns.length - 1) * GAP_X;
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);

  const defs = s("defs");
  const marker = s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" });
  marker.append(s("path", { d: "M0,0 L10,5 L0,10 z" }));
  defs.append(marker);
  svg.append(defs);

  // Boxes are centred vertically within their column.
  const pos = new Map();
  columns.forEach((col, d) => {
    if (!col) return;
    const top = PAD + (height - 2 * PAD - (col.length * BOX_H + (col.length - 1) * GAP_Y)) / 2;
    col.forEach((o, i) => pos.set(o.id, { x: PAD + d * (BOX_W + GAP_X), y: top + i * (BOX_H + GAP_Y) }));
  });

  for (const e of edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const x1 = a.x + BOX_W, y1 = a.y + BOX_H / 2, x2 = b.x, y2 = b.y + BOX_H / 2;
    const mx = (x1 + x2) / 2;
    const g = s("g", { class: "edge", "data-from": e.from, "data-to": e.to, "data-ship": e.ship || "" });
    g.append(s("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
    g.append(s("text", { x: mx, y: (y1 + y2) / 2 - 6, "text-anchor": "middle" }, e.ship || ""));
    svg.append(g);
  }

  for (const o of ops) {
    const p = pos.get(o.id);
    const g = s("g", { class: "operator " + bpClass(o.backpressure), "data-id": o.id, transform: `translate(${p.x},${p.y})` });
    g.append(s("title", {}, `${o.name} (${o.id})\nrecords in ${o.records_in}, out ${o.records_out}`));
    g.append(s("rect", { width: BOX_W, height: BOX_H, rx: 6 }));
    const name = o.name.length > 22 ? o.name.slice(0, 21) + "…" : o.name;
    g.append(s("text", { class: "name", x: 10, y: 18 }, name));
    g.append(s("text", { class: "detail parallelism", x: 10, y: 35 }, `${o.kind || "operator"} · parallelism ${o.parallelism}`));
    g.append(s("text", { class: "rates", x: 10, y: 52 }, `in ${fmtNum(o.rate_in)}/s · out ${fmtNum(o.rate_out)}/s`));
    g.append(s("text", { class: "detail backpressure", x: 10, y: 69 }, `backpressure ${Math.round((o.backpressure || 0) * 100)} %`));
    svg.append(g);
  }
}

// --- lag table ------------------------------------------------------------

function drawLag(parts) {
  const tb = $("#lag tbody");
  tb.replaceChildren();
  if (!parts.length) {
    const tr = el("tr", { class: "none" });
    tr.append(el("td", { colspan: 6, class: "empty" }, "no source partitions yet"));
    tb.append(tr);
    return;
  }
  for (const p of parts) {
    const tr = el("tr", { class: p.lag > 0 ? "lagging" : "", "data-partition": `${p.topic}/${p.partition}` });
    tr.append(el("td", {}, p.source), el("td", {}, p.topic), el("td", { class: "num" }, p.partition),
      el("td", { class: "num" }, p.offset < 0 ? "–" : p.offset), el("td", { class: "num" }, p.end < 0 ? "–" : p.end),
      el("td", { class: "num lag" }, p.lag < 0 ? "–" : p.lag));
    tb.append(tr);
  }
}

// --- throughput chart -----------------------------------------------------

const CH_W = 720, CH_H = 240, M = { left: 58, right: 14, top: 12, bottom: 34 };

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function drawChart(samples) {
  const svg = $("#chart svg");
  svg.replaceChildren();
  const w = CH_W - M.left - M.right, h = CH_H - M.top - M.bottom;
  const t = samples.map((x) => new Date(x.time).getTime());
  const tEnd = t.length ? t[t.length - 1] : Date.now();
  const span = Math.max(60, t.length ? (tEnd - t[0]) / 1000 : 60); // seconds shown, at least a minute
  const yMax = niceMax(Math.max(0, ...samples.map((x) => Math.max(x.records_in_per_s, x.records_out_per_s))) * 1.05);
  const X = (ms) => M.left + w - ((tEnd - ms) / 1000 / span) * w;
  const Y = (v) => M.top + h - (v / yMax) * h;

  const grid = s("g", { class: "grid" }), yAxis = s("g", { class: "axis y" }), xAxis = s("g", { class: "axis x" });
  for (let i = 0; i <= 4; i++) {
    const v = (yMax * i) / 4, y = Y(v);
    grid.append(s("line", { x1: M.left, x2: M.left + w, y1: y, y2: y }));
    yAxis.append(s("text", { x: M.left - 6, y: y + 4, "text-anchor": "end" }, fmtNum(v)));
  }
  yAxis.append(s("line", { x1: M.left, x2: M.left, y1: M.top, y2: M.top + h }));
  yAxis.append(s("text", { x: 12, y: M.top + h / 2, transform: `rotate(-90 12 ${M.top + h / 2})`, "text-anchor": "middle" }, "records/s"));
  xAxis.append(s("line", { x1: M.left, x2: M.left + w, y1: M.top + h, y2: M.top + h }));
  for (let i = 0; i <= 4; i++) {
    const ago = Math.round((span * (4 - i)) / 4), x = M.left + (w * i) / 4;
    xAxis.append(s("line", { x1: x, x2: x, y1: M.top + h, y2: M.top + h + 4 }));
    xAxis.append(s("text", { x, y: M.top + h + 17, "text-anchor": "middle" }, ago === 0 ? "now" : "−" + fmtDuration(ago)));
  }
  xAxis.append(s("text", { x: M.left + w / 2, y: CH_H - 2, "text-anchor": "middle" }, "time"));
  svg.append(grid, yAxis, xAxis);

  const line = (cls, key) => s("polyline", {
    class: cls,
    points: samples.map((x, i) => `${X(t[i]).toFixed(1)},${Y(x[key]).toFixed(1)}`).join(" "),
  });
  svg.append(line("in", "records_in_per_s"), line("out", "records_out_per_s"));
  if (!samples.length) svg.append(s("text", { class: "nodata", x: M.left + w / 2, y: M.top + h / 2, "text-anchor": "middle" }, "no samples yet"));
}

// --- checkpoint table -----------------------------------------------------

function drawCheckpoints(cps) {
  const tb = $("#checkpoints tbody");
  tb.replaceChildren();
  if (!cps.length) {
    const tr = el("tr", { class: "none" });
    tr.append(el("td", { colspan: 6, class: "empty" }, "no checkpoints yet"));
    tb.append(tr);
    return;
  }
  for (const c of cps.slice(-CHECKPOINT_ROWS).reverse()) {
    const tr = el("tr", { class: "state-" + c.state, "data-id": c.id });
    if (c.error) tr.title = c.error;
    tr.append(el("td", { class: "num" }, c.id), el("td", {}, fmtTime(c.time)),
      el("td", { class: "num" }, c.state === "in_progress" ? "–" : fmtMs(c.duration_ms)),
      el("td", { class: "num" }, c.state === "completed" ? fmtBytes(c.size_bytes) : "–"),
      el("td", { class: "state" }, c.state.replace("_", " ") + (c.error ? " (" + c.error + ")" : "")),
      el("td", {}, c.savepoint ? "savepoint" : ""));
    tb.append(tr);
  }
}

// --- polling --------------------------------------------------------------

async function getJSON(path) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const r = await fetch(path, { cache: "no-store", signal: ctl.signal });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return await r.json();
  } catch (e) {
    throw new Error(`${path}: ${e.name === "AbortError" ? "no answer within " + FETCH_TIMEOUT_MS / 1000 + " s" : e.message}`);
  } finally {
    clearTimeout(timer);
  }
}

async function poll() {
  try {
    const [job, cps, tp] = await Promise.all([getJSON("api/job"), getJSON("api/checkpoints"), getJSON("api/throughput")]);
    drawJob(job);
    drawGraph(job.operators || [], job.edges || []);
    drawLag(job.partitions || []);
    drawChart(tp || []);
    drawCheckpoints(cps || []);
    $("#error").hidden = true;
    document.body.classList.remove("offline");
    $("#updated").textContent = new Date().toLocaleTimeString([], { hour12: false });
  } catch (e) {
    const err = $("#error");
    err.textContent = `Cannot reach the engine's status API at ${location.origin}/ (${e.message}). ` +
      "Is the engine still running with --http? Retrying every second; the figures below are the last ones received.";
    err.hidden = false;
    document.body.classList.add("offline");
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
