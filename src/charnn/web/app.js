// charnn serve: the page. Plain JavaScript, no framework, nothing fetched from elsewhere.
"use strict";

const params = new URLSearchParams(location.search);
// A server reachable from other machines prints its address with ?token=...; the answer to
// that address set a cookie that the page's requests carry, so the token leaves the address
// bar (and what is copied or bookmarked from it).
if (params.has("token")) {
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", `${location.pathname}${rest ? "?" + rest : ""}${location.hash}`);
}
const POLL_MS = Math.max(200, Number(params.get("poll")) || 3000);
const state = { run: null, view: "runs", analysis: null, controller: null };
const $ = (id) => document.getElementById(id);

// -- errors: every failed request shows its message at the top of the page -----------------

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}
function clearError() { $("error").hidden = true; $("error").textContent = ""; }

async function api(path, options) {
  const response = await fetch(path, options);
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  }
  return body;
}
// Model requests are POSTs of JSON: a page on another site cannot send those unasked.
const JSON_TYPE = { "Content-Type": "application/json" };
const runPath = (what) => `/api/runs/${encodeURIComponent(state.run)}/${what}`;
const fmt = (x, digits) => (x === null || x === undefined) ? "–" : Number(x).toFixed(digits);

// -- views ---------------------------------------------------------------------------------

function show(view) {
  state.view = view;
  for (const b of document.querySelectorAll("#tabs button")) {
    b.classList.toggle("active", b.dataset.view === view);
  }
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${view}`;
  writeHash();
  if (view === "inside" && state.run && !state.analysis) loadDefaultText();
}
function writeHash() {
  const h = new URLSearchParams();
  if (state.run) h.set("run", state.run);
  h.set("view", state.view);
  history.replaceState(null, "", `${location.pathname}${location.search}#${h}`);
}
function selectRun(name) {
  if (state.run !== name) { state.analysis = null; $("inside-text").value = ""; }
  state.run = name;
  $("current-run").textContent = name;
  for (const tr of document.querySelectorAll("#runs-table tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.run === name);
  }
  writeHash();
  refreshCurve();
  if (state.view === "inside") loadDefaultText();
}

// -- runs and the loss curve ---------------------------------------------------------------

async function refreshRuns() {
  let doc;
  try { doc = await api("/api/runs"); } catch (e) { showError(e.message); return; }
  const body = $("runs-table").querySelector("tbody");
  body.textContent = "";
  for (const r of doc.runs) {
    const tr = document.createElement("tr");
    tr.dataset.run = r.name;
    const total = r.total_updates ? ` / ${r.total_updates.toLocaleString()}` : "";
    const cells = [r.name, r.network, r.corpus || "", `${r.iteration.toLocaleString()}${total}`,
                   fmt(r.latest_loss, 2), fmt(r.best_loss, 2),
                   r.val_bpc === null ? "–" : `${fmt(r.val_bpc, 3)} (best ${fmt(r.best_val_bpc, 3)})`];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
    const td = document.createElement("td");
    if (r.training) { td.innerHTML = '<span class="badge">training</span>'; }
    if (r.log_error) { td.textContent = "log unreadable"; td.title = r.log_error; }
    tr.appendChild(td);
    tr.classList.toggle("selected", r.name === state.run);
    tr.addEventListener("click", () => selectRun(r.name));
    body.appendChild(tr);
  }
  $("runs-empty").hidden = doc.runs.length > 0;
  if (!state.run && doc.runs.length) selectRun(doc.runs[0].name);
}

async function refreshCurve() {
  if (!state.run) return;
  const name = state.run;
  let doc;
  try { doc = await api(runPath("log")); } catch (e) { showError(e.message); return; }
  if (name !== state.run) return;
  $("curve-box").hidden = false;
  $("curve-title").textContent = `${doc.name}: ${doc.summary.network}`;
  $("curve-status").textContent = doc.summary.training ? " · training: updating live" : "";
  $("settings").textContent = Object.entries(doc.summary.settings)
    .map(([k, v]) => `${k} ${v}`).join(" · ");
  drawCurve(doc);
}

const SVG = "http://www.w3.org/2000/svg";
function el(tag, attrs, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function drawCurve(doc) {
  const svg = $("curve");
  svg.textContent = "";
  const W = 800, H = 320, L = 60, R = 60, T = 15, B = 35;
  const train = doc.train.filter((p) => p[1] !== null);
  const val = doc.val.filter((p) => p[2] !== null);
  svg.dataset.points = String(train.length);
  svg.dataset.lastIteration = String(train.length ? train[train.length - 1][0] : 0);
  if (!train.length) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = "no log rows yet";
    return;
  }
  const xMax = Math.max(1, ...train.map((p) => p[0]), ...val.map((p) => p[0]));
  const ys = train.map((p) => p[1]);
  let yMin = Math.min(...ys), yMax = Math.max(...ys);
  if (yMax === yMin) { yMax += 1; yMin -= 1; }
  const x = (i) => L + (W - L - R) * i / xMax;
  const y = (v) => T + (H - T - B) * (1 - (v - yMin) / (yMax - yMin));
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }, svg);
  el("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }, svg);
  for (let k = 0; k <= 4; k++) {
    const v = yMin + (yMax - yMin) * k / 4;
    el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, svg).textContent = v.toFixed(1);
    const it = xMax * k / 4;
    el("text", { x: x(it), y: H - B + 16, "text-anchor": "middle" }, svg).textContent =
      Math.round(it).toLocaleString();
  }
  el("text", { x: (W - R + L) / 2, y: H - 4, "text-anchor": "middle" }, svg).textContent = "update";
  el("polyline", { id: "train-line", fill: "none", stroke: "#1565c0", "stroke-width": 1.5,
                   points: train.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ") }, svg);
  if (val.length) {
    const bs = val.map((p) => p[2]);
    let bMin = Math.min(...bs), bMax = Math.max(...bs);
    if (bMax === bMin) { bMax += 0.5; bMin -= 0.5; }
    const yb = (v) => T + (H - T - B) * (1 - (v - bMin) / (bMax - bMin));
    el("line", { x1: W - R, y1: T, x2: W - R, y2: H - B, stroke: "#999" }, svg);
    for (let k = 0; k <= 4; k++) {
      const v = bMin + (bMax - bMin) * k / 4;
      el("text", { x: W - R + 6, y: yb(v) + 4 }, svg).textContent = v.toFixed(2);
    }
    el("polyline", { fill: "none", stroke: "#e65100", "stroke-width": 1.5,
                     points: val.map((p) => `${x(p[0]).toFixed(1)},${yb(p[2]).toFixed(1)}`).join(" ") }, svg);
    for (const p of val) el("circle", { cx: x(p[0]), cy: yb(p[2]), r: 3, fill: "#e65100" }, svg);
  }
}

// -- generate (server-sent events over fetch, so that errors and stop are ours) ------------

async function generate(event) {
  event.preventDefault();
  if (!state.run) { showError("choose a run first"); return; }
  clearError();
  const fields = {};
  for (const [k, v] of new FormData($("gen-form")).entries()) if (k !== "greedy" && v !== "") fields[k] = v;
  fields.greedy = $("greedy").checked;
  const out = $("gen-output");
  out.textContent = $("prime").value;
  $("gen-status").textContent = "drawing…";
  const controller = new AbortController();
  state.controller = controller;
  $("stop").disabled = false; $("generate").disabled = true;
  try {
    const response = await fetch(runPath("generate"), { method: "POST", headers: JSON_TYPE,
                                                        body: JSON.stringify(fields),
                                                        signal: controller.signal });
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).error || message; } catch (e) { /* keep */ }
      throw new Error(message);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", finished = false;
    while (!finished) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
        const kind = (block.match(/^event: (.*)$/m) || [])[1];
        const data = JSON.parse((block.match(/^data: (.*)$/m) || [, "null"])[1]);
        if (kind === "text") out.textContent += data;
        else if (kind === "error") throw new Error(data);
        else if (kind === "done") finished = true;
      }
    }
    $("gen-status").textContent = "done";
  } catch (e) {
    if (e.name === "AbortError") $("gen-status").textContent = "stopped";
    else { $("gen-status").textContent = ""; showError(e.message); }
  } finally {
    $("stop").disabled = true; $("generate").disabled = false;
    state.controller = null;
  }
}

async function beam(event) {
  event.preventDefault();
  if (!state.run) { showError("choose a run first"); return; }
  clearError();
  const fields = { prime: $("prime").value, beams: $("beams").value,
                  length: $("beam-length").value };
  const list = $("beam-output");
  list.textContent = "";
  try {
    const doc = await api(runPath("beam"), { method: "POST", headers: JSON_TYPE,
                                             body: JSON.stringify(fields) });
    for (const b of doc.beams) {
      const li = document.createElement("li");
      li.textContent = `total log-probability ${b.logprob.toFixed(3)} nats` +
        (b.finished ? " (end of record)" : "");
      const pre = document.createElement("pre");
      pre.textContent = doc.prime + b.text;
      li.appendChild(pre);
      list.appendChild(li);
    }
  } catch (e) { showError(e.message); }
}

// -- look inside ---------------------------------------------------------------------------

async function loadDefaultText() {
  if (!state.run) return;
  try {
    const doc = await api(runPath("text"));
    $("inside-text").value = doc.text;
    $("inside-source").textContent = `text: ${doc.source}`;
    await analyse();
  } catch (e) { showError(e.message); }
}

async function analyse() {
  if (!state.run) { showError("choose a run first"); return; }
  clearError();
  try {
    const doc = await api(runPath("analyse"), {
      method: "POST", headers: JSON_TYPE,
      body: JSON.stringify({ text: $("inside-text").value }) });
    state.analysis = doc;
    const layer = $("layer");
    layer.textContent = "";
    doc.layers.forEach((l, i) => {
      const o = document.createElement("option");
      o.value = i; o.textContent = `${i} (${l.units} units)`; layer.appendChild(o);
    });
    $("unit").max = doc.layers[0].units - 1;
    if (Number($("unit").value) >= doc.layers[0].units) $("unit").value = 0;
    const found = $("units-found");
    found.textContent = doc.units.length ? "units that track: " : "";
    for (const u of doc.units) {
      const b = document.createElement("button");
      b.textContent = `${u.label}: unit ${u.unit} (r = ${u.r.toFixed(2)})`;
      b.dataset.unit = u.unit; b.dataset.layer = u.layer;
      b.addEventListener("click", () => {
        $("layer").value = u.layer; $("unit").value = u.unit;
        document.querySelector('input[name=colour][value=unit]').checked = true;
        paint();
      });
      found.appendChild(b);
    }
    renderText();
  } catch (e) { showError(e.message); }
}

function renderText() {
  const doc = state.analysis, view = $("inside-view");
  view.textContent = "";
  doc.chars.forEach((ch, i) => {
    const s = document.createElement("span");
    s.dataset.i = i;
    if (ch === "\n") { s.className = "nl"; s.textContent = "\n"; } else s.textContent = ch;
    view.appendChild(s);
  });
  paint();
}

function colour(value, surprise) {
  if (value === null || value === undefined) return "transparent";
  if (surprise) {                                   // loss in nats: white to red
    const a = Math.min(1, value / 6);
    return `rgba(211, 47, 47, ${a.toFixed(3)})`;
  }
  const a = Math.min(1, Math.abs(value));           // tanh unit: blue (-1) .. red (+1)
  return value >= 0 ? `rgba(229, 57, 53, ${a.toFixed(3)})` : `rgba(30, 136, 229, ${a.toFixed(3)})`;
}

function paint() {
  const doc = state.analysis;
  if (!doc) return;
  const surprise = document.querySelector("input[name=colour]:checked").value === "surprise";
  const layer = doc.layers[Number($("layer").value) || 0];
  const unit = Math.min(Math.max(0, Number($("unit").value) || 0), layer.units - 1);
  const values = surprise ? doc.loss : layer.states[unit];
  const spans = $("inside-view").children;
  for (let i = 0; i < spans.length; i++) spans[i].style.backgroundColor = colour(values[i], surprise);
  $("inside-view").dataset.unit = String(unit);
  $("inside-legend").textContent = surprise
    ? `each character's loss, white 0 to red 6 nats; mean ${fmt(doc.bits, 3)} bits per character`
    : `unit ${unit}'s activation after each character: blue −1, white 0, red +1`;
}

function showTip(event) {
  const span = event.target.closest("#inside-view span");
  const doc = state.analysis;
  if (!span || !doc) return;
  const i = Number(span.dataset.i);
  const tip = $("tip");
  const shown = (c) => c === "\n" ? "\\n" : c === " " ? "␣" : c;
  const loss = doc.loss[i];
  const rows = doc.top[i].map(([c, p]) => `<tr><td>${escapeHtml(shown(c))}</td><td>${(100 * p).toFixed(1)}%</td></tr>`).join("");
  const layer = doc.layers[Number($("layer").value) || 0];
  const unit = Number($("unit").value) || 0;
  tip.innerHTML = `<div>${escapeHtml(shown(doc.chars[i]))}: loss ${loss === null ? "– (first)" : loss.toFixed(3) + " nats"}` +
    `, unit ${unit} = ${fmt(layer.states[unit] && layer.states[unit][i], 3)}</div><div>next:</div><table class="top5">${rows}</table>`;
  tip.hidden = false;
  tip.style.left = `${event.clientX + 12}px`;
  tip.style.top = `${event.clientY + 14}px`;
}
function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// -- start ---------------------------------------------------------------------------------

for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.view));
$("gen-form").addEventListener("submit", generate);
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
$("beam-form").addEventListener("submit", beam);
$("analyse").addEventListener("click", analyse);
$("unit").addEventListener("input", paint);
$("layer").addEventListener("change", paint);
for (const r of document.querySelectorAll("input[name=colour]")) r.addEventListener("change", paint);
$("inside-view").addEventListener("mousemove", showTip);
$("inside-view").addEventListener("mouseleave", () => { $("tip").hidden = true; });

(async function start() {
  const h = new URLSearchParams(location.hash.slice(1));
  if (h.get("run")) state.run = h.get("run");
  await refreshRuns();
  if (state.run) selectRun(state.run);
  show(h.get("view") || "runs");
  setInterval(() => { refreshRuns(); refreshCurve(); }, POLL_MS);
})();
