// DOM pieces around the graph: tooltip text, table, legend, data-quality strip, breadcrumb.
// Untrusted strings (function names, binaries, labels, server messages) only ever go through
// textContent; nothing here builds HTML from data.

import { formatValue, formatPct } from "./format.js";
import { legendColor, binaryHues, rankBinaries } from "./colors.js";
import { diffColor } from "./diff.js";
import { groupColor } from "./timeline.js";

/** Create an element with a class and text (textContent, never HTML). */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

/** Tooltip lines for a hit: [title, ...rows]. Pure so it is unit-tested. */
export function tooltipLines(m, hit, zoomNode, stats, allTicks = 0) {
  const unit = m.unit;
  const all = allTicks || m.numTicks || 1;
  if (hit.group) {
    return [
      `${hit.count} small frames`,
      `total ${formatValue(hit.total, unit)} (${formatPct(hit.total / all)} of all)`,
      m.parent[hit.node] === 0 ? "too narrow to draw one by one: click to zoom in" : "too narrow to draw one by one: click to drill in",
    ];
  }
  const i = hit.node;
  const ni = m.nameIdx[i];
  const lines = [String(m.names[ni])];
  const bin = m.binaries[ni] || "";
  const kind = m.kinds[ni] || "";
  lines.push(`binary: ${bin || "(unknown)"}${kind ? ` · ${kind}` : ""}`);
  if (m.format === "wall") {
    lines.push(`wall ${formatValue(m.w[i], unit)} (${formatPct(m.w[i] / all)} of all)`);
    lines.push(`on-CPU ${formatValue(m.lt[i], unit)} (${formatPct(m.w[i] ? m.lt[i] / m.w[i] : 0)} of this frame)`);
    lines.push(`off-CPU ${formatValue(m.rt[i], unit)} (${formatPct(m.w[i] ? m.rt[i] / m.w[i] : 0)} of this frame)`);
    return lines;
  }
  if (m.isDiff && stats) {
    const lt = stats.leftTicks || 1;
    const rt = stats.rightTicks || 1;
    lines.push(`left (baseline): ${formatValue(m.lt[i], unit)} = ${formatPct(m.lt[i] / lt)}; self ${formatValue(m.ls[i], unit)}`);
    lines.push(`right (new): ${formatValue(m.rt[i], unit)} = ${formatPct(m.rt[i] / rt)}; self ${formatValue(m.rs[i], unit)}`);
    const d = stats.delta[i] * 100;
    lines.push(`change ${d >= 0 ? "+" : ""}${d.toFixed(2)} points of total, z = ${stats.z[i].toFixed(1)}`);
    return lines;
  }
  lines.push(`self ${formatValue(m.self[i], unit)} (${formatPct(m.self[i] / all)} of all)`);
  lines.push(`total ${formatValue(m.w[i], unit)} (${formatPct(m.w[i] / all)} of all)`);
  if (zoomNode > 0 && m.w[zoomNode] > 0) lines.push(`${formatPct(m.w[i] / m.w[zoomNode])} of the zoomed frame`);
  if (m.isOther[i]) {
    lines.push(m.parent[i] === 0 ? "collapsed by the server: click to expand (raises the detail cap)"
      : "collapsed by the server: click to drill in");
  }
  return lines;
}

/** Fill the tooltip element and place it near the pointer. */
export function showTooltip(tip, lines, clientX, clientY) {
  tip.replaceChildren();
  lines.forEach((t, k) => tip.appendChild(el("div", k === 0 ? "name" : "row", t)));
  tip.hidden = false;
  const w = tip.offsetWidth;
  const h = tip.offsetHeight;
  const x = clientX + 14 + w > window.innerWidth ? Math.max(0, clientX - w - 10) : clientX + 14;
  const y = clientY + 16 + h > window.innerHeight ? Math.max(0, clientY - h - 10) : clientY + 16;
  tip.style.left = `${x}px`;
  tip.style.top = `${y}px`;
}

/** A binary path shortened to its file name ("/usr/lib/x86_64-linux-gnu/libc.so.6" -> "libc.so.6"). */
export function shortBinary(path) {
  const p = String(path || "");
  const base = p.split("/").pop();
  return base || p;
}

/** Top-functions table body. */
export function renderTable(tbody, rows, { unit, total, selected, onSelect, onSandwich, limit = 2000 }) {
  tbody.replaceChildren();
  for (const row of rows.slice(0, limit)) {
    const tr = el("tr");
    tr.dataset.name = row.name;
    if (row.name === selected) tr.className = "selected";
    const fn = el("td", "fn", row.name);
    fn.title = row.name;
    tr.appendChild(fn);
    const bin = el("td", "bin", shortBinary(row.binary) || (row.kind === "kernel" ? "[kernel]" : row.kind === "interpreted" ? "[python]" : ""));
    bin.title = row.binary || "";
    tr.appendChild(bin);
    tr.appendChild(el("td", "num", `${formatValue(row.self, unit)} · ${formatPct(total ? row.self / total : 0)}`));
    tr.appendChild(el("td", "num", `${formatValue(row.total, unit)} · ${formatPct(total ? row.total / total : 0)}`));
    const td = el("td");
    const b = el("button", "sw", "sandwich");
    b.type = "button";
    b.addEventListener("click", (e) => { e.stopPropagation(); onSandwich(row); });
    td.appendChild(b);
    tr.appendChild(td);
    tr.addEventListener("click", () => onSelect(row));
    tbody.appendChild(tr);
  }
}

function swatch(color, cls = "") {
  const s = el("span", `swatch ${cls}`.trim());
  if (color) s.style.background = color;
  return s;
}

/** Legend for a single profile: the biggest binaries by total, kernel, Python and grouped boxes. */
export function renderLegend(box, m, dark) {
  box.replaceChildren();
  if (!m || m.n === 0) return;
  let kernel = false;
  let python = false;
  for (let i = 1; i < m.n; i++) {
    const kind = m.kinds[m.nameIdx[i]] || "";
    if (kind === "kernel") kernel = true;
    else if (kind === "interpreted") python = true;
  }
  const ranked = rankBinaries(m);
  const hues = binaryHues(ranked);
  box.appendChild(el("span", "muted", "color = binary:"));
  for (const b of ranked.slice(0, 10)) {
    const item = el("span", "item");
    item.dataset.binary = b;
    item.appendChild(swatch(legendColor("native", b, dark, hues)));
    item.appendChild(document.createTextNode(b ? b.split("/").pop() : "(unknown binary)"));
    item.title = b;
    box.appendChild(item);
  }
  if (kernel) {
    const item = el("span", "item");
    item.appendChild(swatch(legendColor("kernel", "", dark)));
    item.appendChild(document.createTextNode("kernel"));
    box.appendChild(item);
  }
  if (python) {
    const item = el("span", "item");
    item.appendChild(swatch(legendColor("interpreted", "", dark)));
    item.appendChild(document.createTextNode("Python"));
    box.appendChild(item);
  }
  const item = el("span", "item");
  item.appendChild(swatch("", "hatched"));
  item.appendChild(document.createTextNode("grouped small frames / server \"other\" (click to drill in)"));
  box.appendChild(item);
  box.appendChild(el("span", "muted", "magenta = search match"));
}

/** Legend of the stacked timeline: each group's color and share of the range. */
export function renderGroupLegend(box, groups, dark) {
  box.replaceChildren();
  let all = 0;
  for (const g of groups) all += g.total;
  groups.forEach((g, k) => {
    const item = el("span", "item");
    item.dataset.group = g.name;
    item.appendChild(swatch(groupColor(k, dark)));
    item.appendChild(document.createTextNode(`${g.name} ${formatPct(all ? g.total / all : 0)}`));
    box.appendChild(item);
  });
}

/** Diff legend: what red, blue and grey mean, with counts. */
export function renderDiffLegend(box, summary, threshold, dark) {
  box.replaceChildren();
  const add = (color, text) => {
    const item = el("span", "item");
    item.appendChild(swatch(color));
    item.appendChild(document.createTextNode(text));
    box.appendChild(item);
  };
  add(diffColor({ cls: "grew", intensity: 1 }, dark),
    `red: grew — larger share of the total on the right (new) than on the left (baseline), ${summary.grew} frames`);
  add(diffColor({ cls: "shrank", intensity: 1 }, dark), `blue: shrank — smaller share on the right, ${summary.shrank} frames`);
  add(diffColor({ cls: "noise", intensity: 0 }, dark),
    `grey: within noise (|z| < ${threshold}, counts treated as Poisson), ${summary.noise} frames`);
  box.appendChild(el("span", "muted", "shares are normalized by each side's total; darker = bigger change"));
}

/** Wall-clock legend. */
export function renderWallLegend(box, colors) {
  box.replaceChildren();
  for (const [c, t] of [[colors[0], "on-CPU share of the frame"], [colors[1], "off-CPU (blocked) share of the frame"]]) {
    const item = el("span", "item");
    item.appendChild(swatch(c));
    item.appendChild(document.createTextNode(t));
    box.appendChild(item);
  }
  box.appendChild(el("span", "muted", "width = wall time (on-CPU + off-CPU)"));
}

const COUNTER_NAMES = {
  missed_stacks: "missed stacks",
  missed_kernel_stacks: "missed kernel stacks",
  missed_user_stacks: "missed user stacks",
  unsymbolized_frames: "unsymbolized frames",
  map_full_drops: "BPF map-full drops",
  spool_dropped_batches: "dropped batches",
};

// Labels the collector puts on samples, not on the agent's batch: the batch counters (missed stacks,
// drops) cannot be split by them, so a selector on one still shows the whole agent's counters.
const SAMPLE_LABEL = /(^|[{,\s])(process|pid|thread|tid|comm)\s*(=|!=|=~|!~)/;

/** Data-quality strip: every counter the server sent plus what the graph collapsed. One line
 * (ellipsized) until clicked; `query` says when the counters are wider than the selection. */
export function renderQuality(box, m, query = "") {
  box.replaceChildren();
  if (!m) return;
  const toggle = el("button", "quality-toggle", box.classList.contains("expanded") ? "less ▴" : "more ▾");
  toggle.type = "button";
  toggle.title = "show every data-quality line";
  box.appendChild(toggle);
  box.appendChild(el("span", "", `${formatValue(m.numTicks, m.unit)} in view`));
  const keys = Object.keys(m.counters).sort();
  for (const k of keys) {
    const v = Number(m.counters[k]) || 0;
    box.appendChild(el("span", v > 0 ? "warn" : "", `${COUNTER_NAMES[k] || k.replace(/_/g, " ")}: ${v.toLocaleString("en-US")}`));
  }
  if (!keys.length) box.appendChild(el("span", "", "no data-quality counters reported"));
  if (m.others.length) {
    let hidden = 0;
    let nodes = 0;
    for (const o of m.others) { hidden += Number(o.hidden_total) || 0; nodes += Number(o.hidden_nodes) || 0; }
    box.appendChild(el("span", "warn",
      `${nodes.toLocaleString("en-US")} small frames (${formatPct(m.numTicks ? hidden / m.numTicks : 0)}) grouped into ${m.others.length} hatched boxes: click one to drill in`));
  }
  if (m.orphans) box.appendChild(el("span", "warn", `${m.orphans} frames without a parent in the response`));
  if (keys.length && SAMPLE_LABEL.test(query)) {
    box.appendChild(el("span", "note", "counters are per agent batch: not narrowed by process/pid/thread matchers"));
  }
}

/** Breadcrumb of the zoom path; `onZoom(depth)` zooms to that many path elements (0 = all). */
export function renderBreadcrumb(box, path, prefix, { onZoom, onClearPrefix }) {
  box.replaceChildren();
  if (prefix.length) {
    const b = el("button", "prefix", `drilled into ${prefix.join(" › ")} ✕`);
    b.type = "button";
    b.title = "back to the full graph";
    b.addEventListener("click", onClearPrefix);
    box.appendChild(b);
  }
  const all = el("button", "crumb", "all");
  all.type = "button";
  all.addEventListener("click", () => onZoom(0));
  box.appendChild(all);
  path.forEach((name, k) => {
    box.appendChild(el("span", "sep", "›"));
    const b = el("button", "crumb", name.length > 60 ? `${name.slice(0, 59)}…` : name);
    b.type = "button";
    b.title = name;
    b.addEventListener("click", () => onZoom(k + 1));
    box.appendChild(b);
  });
  if (path.length) {
    const r = el("button", "reset", "reset zoom (Esc)");
    r.type = "button";
    r.id = "reset-zoom";
    r.addEventListener("click", () => onZoom(0));
    box.appendChild(r);
  }
}
