// The page: view state <-> URL, fetches, and wiring of the graph, table, sandwich, diff and wall views.

import { parseState, formatState, dataParams, endpoint, apiQuery } from "./state.js";
import { decode, findPath, pathOf, search, topFunctions, sortRows, nameMatcher } from "./layout.js";
import { sandwich } from "./sandwich.js";
import { diffStats, classify, diffColor, summarize } from "./diff.js";
import { FlameGraph } from "./render.js";
import { Timeline, niceStep } from "./timeline.js";
import { fetchJSON, getSession, login, ApiError } from "./api.js";
import { formatPct, toUnixSeconds, timeError } from "./format.js";
import * as V from "./views.js";
import { suggest, clearCache } from "./autocomplete.js";
import { cachedCalibration, NODE_CHOICES } from "./calibrate.js";

const $ = (id) => document.getElementById(id);
const NODES_CEIL = 200000; // the server's MAX_NODES_CAP default
let calibration = { cap: 16384 }; // measured in boot()
const nodeCap = () => Number(state.nodes) || calibration.cap;
let state = parseState(location.search);
let model = null; // decoded data of the main view
let loadedKey = "";
let stats = null; // diff stats
let rows = null; // table rows (cached per model)
let selectedRow = "";
let top = null; // {key, resp, error}: the server's exact per-function numbers (/api/v1/top)
let topLoading = "";
const TOP_LIMIT = 100000; // the endpoint's own cap: in practice every function of the selection
let inflight = null;

const graph = new FlameGraph($("graph"), {
  onHover: (h, e) => V.showTooltip($("tooltip"), V.tooltipLines(model, h, currentZoom(), stats), e.clientX, e.clientY),
  onLeave: () => { $("tooltip").hidden = true; },
  onClick: (h, e) => clickFrame(h, e),
});
const swCallers = new FlameGraph($("sw-callers"), swHandlers(() => swData && swData.callers));
const swCallees = new FlameGraph($("sw-callees"), swHandlers(() => swData && swData.callees));
let swData = null;
const timeline = new Timeline($("timeline"), {
  onSelect: (a, b) => setState({ from: isoTime(a), until: isoTime(b), zoom: [], prefix: [] }),
});

/** A readable time the server parses back exactly (RFC 3339, whole seconds, UTC). */
function isoTime(t) {
  return new Date(Math.round(t) * 1000).toISOString().replace(".000Z", "Z");
}

// Fields whose errors are shown next to them (id of the input -> state key).
const FIELDS = ["query", "from", "until", "rquery", "rfrom", "runtil"];

/** Field -> message for the time fields of a state that the server would refuse. */
function validate(s) {
  const errs = {};
  for (const k of ["from", "until"]) { const e = timeError(s[k]); if (e) errs[k] = e; }
  if (s.view === "diff") {
    for (const k of ["rfrom", "runtil"]) { if (s[k]) { const e = timeError(s[k]); if (e) errs[k] = e; } }
  }
  if (!errs.from && !errs.until && toUnixSeconds(s.from) >= toUnixSeconds(s.until)) errs.until = "until must be after from";
  return errs;
}

function setFieldErrors(errs) {
  for (const k of FIELDS) {
    const box = $(`err-${k}`);
    const msg = errs[k] || "";
    box.textContent = msg;
    box.hidden = !msg;
    if (msg) $(k).setAttribute("aria-invalid", "true");
    else $(k).removeAttribute("aria-invalid");
  }
}

/** The field a server 400 message is about (its messages name the parameter), or "". */
function fieldOfError(msg) {
  if (/^bad selector in `(query|left)`/.test(msg)) return "query";
  if (/^bad selector in `right`/.test(msg)) return "rquery";
  if (/^(from\/until|left_from\/left_until):/.test(msg)) return "from";
  if (/^right_from\/right_until:/.test(msg)) return "rfrom";
  return "";
}

/** Keep the last good graph on screen but mark it as not matching the controls any more. */
function markStale(stale) {
  $("graph").classList.toggle("stale", stale && !!model);
  $("table-view").classList.toggle("stale", stale && !!model);
}

function swHandlers(getModel) {
  return {
    onHover: (h, e) => V.showTooltip($("tooltip"), V.tooltipLines(getModel(), h, 0, null, model ? model.numTicks : 0),
      e.clientX, e.clientY),
    onLeave: () => { $("tooltip").hidden = true; },
    onClick: (h) => {
      const m = getModel();
      if (m && !h.group) setState({ fn: String(m.names[m.nameIdx[h.node]]) });
    },
  };
}

/** Update state; push a history entry (or replace it) and apply. */
function setState(patch, { replace = false } = {}) {
  state = { ...state, ...patch };
  $("tooltip").hidden = true; // whatever it described may be gone after this change
  const url = `${location.pathname}${formatState(state)}`;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  apply();
}

function currentZoom() {
  if (!model || model.n === 0) return 0;
  const path = state.zoom.length ? state.zoom : state.prefix;
  return path.length ? findPath(model, path) : 0;
}

function isDark() {
  if (state.theme) return state.theme === "dark";
  return typeof matchMedia !== "undefined" && matchMedia("(prefers-color-scheme: dark)").matches;
}

function setStatus(text, cls = "") {
  const s = $("status");
  s.textContent = text;
  s.className = `status ${cls}`.trim();
}

/** Sync form controls with the state (after load or back/forward). */
function syncControls() {
  $("type").value = state.type;
  $("query").value = state.query === "{}" ? "" : state.query;
  $("from").value = state.from;
  $("until").value = state.until;
  const presets = [...$("preset").options].map((o) => o.value);
  $("preset").value = state.until === "now" && presets.includes(state.from) ? state.from : "custom";
  if (document.activeElement !== $("search")) $("search").value = state.search;
  $("rquery").value = state.rquery;
  $("rfrom").value = state.rfrom;
  $("runtil").value = state.runtil;
  $("noise").value = state.noise;
  syncNodes();
  if (state.groupby && ![...$("groupby").options].some((o) => o.value === state.groupby)) {
    const o = document.createElement("option");
    o.textContent = state.groupby;
    $("groupby").appendChild(o);
  }
  $("groupby").value = state.groupby;
  $("orient").textContent = state.orient;
  for (const b of $("views").querySelectorAll("button[data-view]")) {
    b.setAttribute("aria-pressed", String(b.dataset.view === state.view));
  }
  $("diff-controls").hidden = state.view !== "diff";
  $("table-view").hidden = state.view !== "table";
  $("sandwich-view").hidden = state.view !== "sandwich";
  $("graph").hidden = state.view === "sandwich";
  for (const b of $("top-table").querySelectorAll("th button")) {
    b.dataset.active = String(b.dataset.sort === state.sort);
    b.dataset.dir = state.dir;
  }
  const dl = new URLSearchParams({ query: apiQuery(state.type, state.query), from: state.from, until: state.until });
  $("dl-pprof").href = `/api/v1/pprof?${dl}`;
  $("dl-pprof").setAttribute("download", `hotpath-${state.type}.pb.gz`);
  $("dl-folded").href = `/api/v1/folded?${dl}`;
  $("dl-folded").setAttribute("download", `hotpath-${state.type}.folded.txt`);
  document.documentElement.dataset.theme = isDark() ? "dark" : "light";
}

/** Apply the state: fetch what changed, then redraw the active view. Never throws: whatever goes
 * wrong is shown, and the next apply starts from scratch (no state only a reload would fix). */
async function apply() {
  try {
    await applyUnsafe();
  } catch (e) {
    handleError(e);
  }
}

async function applyUnsafe() {
  syncControls();
  const errs = validate(state);
  setFieldErrors(errs);
  if (Object.keys(errs).length) {
    if (inflight) inflight.abort();
    loadedKey = "";
    markStale(true);
    setStatus(model ? "Fix the marked field: the graph below is from the last good query (stale)."
      : "Fix the marked field to run the query.", "error");
    return;
  }
  graph.setTheme(isDark());
  swCallers.setTheme(isDark());
  swCallees.setTheme(isDark());
  timeline.setTheme(isDark());
  loadTimeline();
  const view = state.view === "table" || state.view === "sandwich" ? "flame" : state.view;
  const params = dataParams({ ...state, view }, nodeCap());
  const key = `${endpoint(view)}?${params}`;
  if (key !== loadedKey) {
    if (inflight) inflight.abort();
    inflight = new AbortController();
    setStatus("loading…");
    try {
      const wire = await fetchJSON(key, { signal: inflight.signal });
      model = decode(wire);
      loadedKey = key;
      markStale(false);
      rows = null;
      swData = null;
      stats = model.isDiff ? diffStats(model) : null;
      const hasData = model.n > 0 && model.numTicks > 0;
      graph.setModel(model, { split: model.format === "wall", zoom: 0 });
      setStatus(hasData ? "" : "No data in this range — widen the time range or loosen the selector.", hasData ? "" : "empty");
    } catch (e) {
      if (e && e.name === "AbortError") return;
      handleError(e);
      return;
    }
  }
  markStale(false);
  render();
}

/** A failed load: the error next to its field (or in the status line); the last good graph stays
 * visible, marked stale, so a hiccup of the server never blanks what the user was reading. */
function handleError(e) {
  loadedKey = "";
  if (e instanceof ApiError && e.status === 401) { showLogin(""); return; }
  const msg = e instanceof ApiError ? e.message : String(e && e.message ? e.message : e);
  const field = e instanceof ApiError && e.status === 400 ? fieldOfError(msg) : "";
  if (field) setFieldErrors({ [field]: msg });
  markStale(true);
  const what = e instanceof ApiError && e.status === 0 ? `Server unreachable: ${msg}` : `Error: ${msg}`;
  setStatus(model ? `${what} · showing the last good graph (stale)` : what, "error");
}

/** Redraw the current view from the loaded model (no fetch). */
function render() {
  if (!model) return;
  const dark = isDark();
  V.renderQuality($("quality"), model, state.query);
  const zoom = currentZoom();
  graph.setOrient(state.orient);
  if (graph.zoom !== zoom) graph.setZoom(zoom);
  if (state.view === "diff" && stats) {
    const thr = Number(state.noise);
    const colors = new Array(model.n);
    for (let i = 0; i < model.n; i++) colors[i] = diffColor(classify(stats, i, thr), dark);
    graph.setNodeColors((i) => colors[i]);
    V.renderDiffLegend($("legend"), summarize(stats, thr), thr, dark);
  } else if (state.view === "wall") {
    graph.setNodeColors(null);
    V.renderWallLegend($("legend"), graph.splitColors);
  } else {
    graph.setNodeColors(null);
    V.renderLegend($("legend"), model, dark);
  }
  V.renderBreadcrumb($("breadcrumb"), zoom > 0 ? pathOf(model, zoom) : [], state.prefix, {
    onZoom: (depth) => setState({ zoom: pathOf(model, zoom).slice(0, depth) }),
    onClearPrefix: () => setState({ prefix: [], zoom: [] }),
  });
  applySearch(zoom);
  if (state.view === "table") renderTableView();
  if (state.view === "sandwich") renderSandwich();
  else graph.setMarked(state.view === "table" && selectedRow ? markedNames(selectedRow) : null);
}

function applySearch(zoom) {
  const r = search(model, state.search, 0);
  graph.setMatched(state.search ? r.matched : null);
  if (!state.search) { $("matched").textContent = ""; return; }
  let text = `${formatPct(r.ratio)} matched (${r.count} frames)`;
  if (zoom > 0) text += ` · ${formatPct(search(model, state.search, zoom).ratio)} of zoomed frame`;
  if (r.invalid) text += " · invalid regex, matched as text";
  $("matched").textContent = text;
}

function markedNames(name) {
  const set = new Set();
  model.names.forEach((n, j) => { if (String(n) === name) set.add(j); });
  return set;
}

function topKey() {
  return new URLSearchParams({ query: apiQuery(state.type, state.query), from: state.from, until: state.until,
    limit: String(TOP_LIMIT) }).toString();
}

/** Table rows and how far to trust them: the server's exact numbers for the whole selection, or
 * (when that request failed) the drawn graph's, marked approximate since hatched boxes hide frames. */
function tableRows() {
  const key = topKey();
  if (!top || top.key !== key) {
    if (topLoading !== key) {
      topLoading = key;
      fetchJSON(`/api/v1/top?${key}`)
        .then((resp) => { top = { key, resp, error: null }; })
        .catch((e) => { top = { key, resp: null, error: e }; })
        .finally(() => { if (topLoading === key) topLoading = ""; if (state.view === "table") render(); });
    }
    return null;
  }
  if (top.resp) {
    const r = top.resp;
    const fns = Array.isArray(r.functions) ? r.functions : [];
    const count = Number(r.count) || fns.length;
    let note = `Exact self and total of all ${count.toLocaleString("en-US")} functions in the selection, computed by the server`;
    if (count > fns.length) note += ` (the ${fns.length.toLocaleString("en-US")} with the most self time shown)`;
    if (state.prefix.length) note += "; the whole selection, not only the drilled-in part";
    return { rows: fns, total: Number(r.total) || 0, unit: r.unit || model.unit, note: `${note}.`, approx: false };
  }
  if (!rows) rows = topFunctions(model).filter((r) => r.kind !== "other");
  let hidden = 0;
  for (const o of model.others) hidden += Number(o.hidden_total) || 0;
  const msg = top.error && top.error.message ? top.error.message : String(top.error);
  return { rows, total: model.numTicks, unit: model.unit, approx: true,
    note: `Approximate (exact numbers failed: ${msg}): taken from the drawn graph, which leaves out the `
      + `${formatPct(model.numTicks ? hidden / model.numTicks : 0)} in hatched boxes.` };
}

function renderTableView() {
  const t = tableRows();
  const note = $("table-note");
  if (!t) { note.textContent = "loading exact per-function numbers…"; note.className = "table-note"; return; }
  let shown = t.rows;
  if (state.search) { const { test } = nameMatcher(state.search); shown = shown.filter((r) => test(String(r.name))); }
  note.textContent = state.search ? `${t.note} Search "${state.search}": ${shown.length} of ${t.rows.length} rows.` : t.note;
  note.className = t.approx ? "table-note approx" : "table-note";
  const sorted = sortRows(shown, state.sort, Number(state.dir));
  V.renderTable($("top-table").querySelector("tbody"), sorted, {
    unit: t.unit, total: t.total, selected: selectedRow,
    onSelect: (row) => { selectedRow = selectedRow === row.name ? "" : row.name; render(); },
    onSandwich: (row) => setState({ view: "sandwich", fn: row.name }),
  });
}

function renderSandwich() {
  const title = $("sw-title");
  if (!state.fn) {
    title.textContent = "Pick a function: the sandwich button in the table, or shift+click a frame.";
    swCallers.m = null; swCallees.m = null;
    return;
  }
  if (!swData || swData.fn !== state.fn) {
    swData = { fn: state.fn, ...sandwich(model, state.fn) };
    swCallers.orient = "flame";
    swCallers.setModel(swData.callers);
    swCallees.setModel(swData.callees);
  }
  title.textContent = swData.found
    ? `${state.fn} — total ${formatPct(model.numTicks ? swData.total / model.numTicks : 0)}, self ${formatPct(model.numTicks ? swData.self / model.numTicks : 0)} of all`
    : `${state.fn} — not in this graph`;
}

/** The detail picker: "auto" (the measured default) and the fixed choices, plus a custom value. */
function syncNodes() {
  const sel = $("nodes");
  const want = [["", `auto (${calibration.cap.toLocaleString("en-US")})`],
    ...NODE_CHOICES.map((c) => [String(c), c.toLocaleString("en-US")])];
  if (state.nodes && !NODE_CHOICES.includes(Number(state.nodes))) want.push([state.nodes, Number(state.nodes).toLocaleString("en-US")]);
  if (sel.options.length !== want.length || [...sel.options].some((o, k) => o.value !== want[k][0] || o.textContent !== want[k][1])) {
    sel.replaceChildren(...want.map(([v, t]) => { const o = document.createElement("option"); o.value = v; o.textContent = t; return o; }));
  }
  sel.value = state.nodes;
}

/** The widest node of a client-side group (tiny adjacent siblings merged by the layout). */
function widestInGroup(h) {
  const r = graph.r;
  const p = model.parent[h.node];
  let best = h.node;
  for (let i = h.node, seen = 0; i < model.n && seen < h.count; i++) {
    if (model.parent[i] !== p || model.level[i] !== model.level[h.node]) continue;
    seen++;
    if (model.w[i] > model.w[best]) best = i;
  }
  return r ? best : h.node;
}

/**
 * Click on a frame: zoom. Collapsed boxes are never a dead end: below the root they drill in by
 * re-querying their parent's prefix; directly under the root (no narrower prefix exists) a server
 * "other" box expands by raising the detail cap by the frames it hides (at least doubling it), and
 * a client-side group (frames under half a pixel at this width) zooms into its widest member.
 */
function clickFrame(h, e) {
  if (!model) return;
  if (h.group || model.isOther[h.node]) {
    const p = model.parent[h.node];
    const prefix = pathOf(model, p >= 0 ? p : 0);
    if (prefix.length) { setState({ prefix, zoom: [] }); return; }
    if (h.group) { setState({ zoom: pathOf(model, widestInGroup(h)) }); return; }
    const other = model.others.find((o) => o.level === model.level[h.node]
      && model.levelStart[o.level] + o.index === h.node);
    const hidden = other ? Number(other.hidden_nodes) || 0 : 0;
    const cap = nodeCap();
    if (cap >= NODES_CEIL) {
      setStatus("Already at the maximum detail (200,000 nodes): the table lists every function exactly.");
      return;
    }
    const next = Math.min(NODES_CEIL, cap + Math.max(hidden, cap));
    setStatus(`Expanding: detail raised to ${next.toLocaleString("en-US")} nodes.`);
    setState({ nodes: String(next) });
    return;
  }
  const name = String(model.names[model.nameIdx[h.node]]);
  if (e.shiftKey && h.node > 0) { setState({ view: "sandwich", fn: name }); return; }
  setState({ zoom: pathOf(model, h.node) });
}

let lastSeriesKey = "";
async function loadTimeline() {
  const t0 = toUnixSeconds(state.from);
  const t1 = toUnixSeconds(state.until);
  if (!Number.isFinite(t0) || !Number.isFinite(t1) || t1 <= t0) return; // the field error says why
  const step = niceStep(t1 - t0);
  const p = new URLSearchParams({ query: apiQuery(state.type, state.query), from: state.from, until: state.until, step: String(step) });
  if (state.groupby) p.set("group_by", state.groupby);
  const key = p.toString();
  if (key === lastSeriesKey) return;
  lastSeriesKey = key;
  try {
    const resp = await fetchJSON(`/api/v1/series?${p}`);
    timeline.groupBy = state.groupby;
    timeline.setData(resp, t0, t1);
    V.renderGroupLegend($("timeline-legend"), timeline.groups, timeline.dark);
  } catch (e) {
    lastSeriesKey = "";
    if (!(e instanceof ApiError && e.status === 401)) timeline.setData({ series: [] }, t0, t1);
  }
}

function runQuery() {
  const next = { type: $("type").value, query: $("query").value.trim() || "{}", from: $("from").value.trim() || "now-1h",
    until: $("until").value.trim() || "now", zoom: [], prefix: [] };
  const errs = validate({ ...state, ...next });
  if (Object.keys(errs).length) {
    // Refused before it reaches the state or the URL: the page keeps the last good query.
    setFieldErrors(errs);
    markStale(true);
    setStatus("Fix the marked field: nothing was run.", "error");
    return;
  }
  setState(next);
}

function downloadPNG() {
  const target = (state.view === "sandwich" ? swCallees : graph).exportCanvas();
  target.toBlob((blob) => {
    if (!blob) return;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `hotpath-${state.view}.png`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }, "image/png");
}

function showLogin(message) {
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("token").focus();
  setStatus("Sign in needed: this server requires a read token.", "error");
}

function wire() {
  $("run").addEventListener("click", runQuery);
  for (const id of ["query", "from", "until"]) $(id).addEventListener("keydown", (e) => { if (e.key === "Enter") runQuery(); });
  $("type").addEventListener("change", runQuery);
  $("preset").addEventListener("change", () => {
    if ($("preset").value !== "custom") { $("from").value = $("preset").value; $("until").value = "now"; runQuery(); }
  });
  const complete = () => suggest($("query"), $("query-suggest"), state.from, state.until);
  $("query").addEventListener("input", complete);
  $("query").addEventListener("focus", complete);
  let searchTimer = 0;
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => setState({ search: $("search").value }, { replace: true }), 120);
  });
  $("search").addEventListener("change", () => setState({ search: $("search").value }, { replace: true }));
  $("views").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-view]");
    if (b) setState({ view: b.dataset.view });
  });
  $("orient").addEventListener("click", () => setState({ orient: state.orient === "icicle" ? "flame" : "icicle" }));
  $("theme").addEventListener("click", () => setState({ theme: isDark() ? "light" : "dark" }));
  $("dl-png").addEventListener("click", downloadPNG);
  $("diff-run").addEventListener("click", () => setState({ rquery: $("rquery").value.trim(), rfrom: $("rfrom").value.trim(),
    runtil: $("runtil").value.trim(), noise: $("noise").value || "3" }));
  $("quality").addEventListener("click", (e) => {
    if (!e.target.closest(".quality-toggle")) return;
    $("quality").classList.toggle("expanded");
    if (model) V.renderQuality($("quality"), model, state.query);
  });
  $("groupby").addEventListener("change", () => setState({ groupby: $("groupby").value }));
  $("nodes").addEventListener("change", () => setState({ nodes: $("nodes").value }));
  $("noise").addEventListener("change", () => setState({ noise: $("noise").value || "3" }, { replace: true }));
  $("top-table").querySelector("thead").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-sort]");
    if (!b) return;
    const dir = state.sort === b.dataset.sort ? String(-Number(state.dir)) : (b.dataset.sort === "name" ? "1" : "-1");
    setState({ sort: b.dataset.sort, dir });
  });
  const help = (show) => { $("help").hidden = !show; };
  $("help-button").addEventListener("click", () => help(true));
  $("help-close").addEventListener("click", () => help(false));
  document.addEventListener("keydown", (e) => {
    const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement;
    if (e.key === "Escape") {
      if (!$("help").hidden) { help(false); return; }
      if (typing) e.target.blur();
      if (state.zoom.length) setState({ zoom: [] });
      return;
    }
    if (typing) return;
    if (e.key === "/") { e.preventDefault(); $("search").focus(); $("search").select(); }
    else if (e.key === "?") { help($("help").hidden); }
  });
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await login($("token").value);
      $("login").hidden = true;
      $("token").value = "";
      loadedKey = ""; lastSeriesKey = ""; clearCache();
      loadTypes();
      apply();
    } catch (err) {
      $("login-error").textContent = err instanceof ApiError ? err.message : String(err);
    }
  });
  window.addEventListener("popstate", () => { state = parseState(location.search); apply(); });
}

/** Add the profile types the server has data for (beyond the built-in cpu/offcpu) to the picker. */
async function loadTypes() {
  try {
    const r = await fetchJSON("/api/v1/profile-types");
    const have = new Set([...$("type").options].map((o) => o.value));
    for (const t of r.types || []) {
      if (!t || typeof t.name !== "string" || have.has(t.name)) continue;
      const o = document.createElement("option");
      o.value = t.name;
      o.textContent = t.name;
      $("type").appendChild(o);
    }
    $("type").value = state.type;
  } catch { /* the built-in types stay usable */ }
}

async function boot() {
  calibration = cachedCalibration();
  wire();
  const frag = new URLSearchParams(location.hash.slice(1));
  const token = frag.get("token");
  if (token) {
    history.replaceState(null, "", `${location.pathname}${location.search}`);
    try { await login(token); } catch (e) { showLogin(e instanceof ApiError ? e.message : String(e)); return; }
  }
  try {
    const s = await getSession();
    if (s.auth_required && !s.authenticated) { syncControls(); showLogin(""); return; }
    loadTypes();
  } catch (e) {
    syncControls();
    handleError(e);
    return;
  }
  apply();
}

// Test and benchmark hook: read-only views of what is drawn, never used by the page itself.
window.hotpath = {
  get state() { return state; },
  get model() { return model; },
  get calibration() { return calibration; },
  timeline,
  graph,
  timeline,
  sandwich: { callers: swCallers, callees: swCallees },
  /** Center of the widest hatched box (client group or server "other") and its parent's path. */
  widestGroup() {
    const g = graph;
    const m = g.m;
    let best = -1;
    for (let k = 0; k < g.r.count; k++) {
      const i = g.r.node[k];
      if ((g.r.kind[k] === 1 || m.isOther[i]) && (best < 0 || g.r.pw[k] > g.r.pw[best])) best = k;
    }
    if (best < 0) return null;
    const i = g.r.node[best];
    const y = g.yOfLevel(m.level[i]) - g.scroll.scrollTop + 9;
    return { x: g.r.px[best] + Math.max(g.r.pw[best], 1) / 2, y, path: pathOf(m, m.parent[i]), width: g.r.pw[best] };
  },
  frameCenter(name, which = graph) {
    const m = which.m;
    if (!m) return null;
    for (let i = 0; i < m.n; i++) if (String(m.names[m.nameIdx[i]]) === name) { const c = which.centerOf(i); if (c) return c; }
    return null;
  },
};

boot();
