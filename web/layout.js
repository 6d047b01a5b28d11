// Pure flame-graph layout: wire format -> flat typed arrays -> rectangles, plus search and zoom.
// No DOM here so it runs under `node --test`; everything is iterative because graphs can be
// thousands of frames deep (recursion would overflow the JS stack).

import { displayUnit } from "./format.js";

/** Error for a response that does not follow the wire format (docs/contracts.md §2). */
export class WireFormatError extends Error {}

/**
 * Decode the wire format once per data load into typed arrays.
 * Nodes are numbered level by level, sorted by x inside a level, so a level is a contiguous
 * range [levelStart[L], levelStart[L+1]) that binary search can walk.
 */
export function decode(wire) {
  if (!wire || typeof wire !== "object" || !Array.isArray(wire.levels) || !Array.isArray(wire.names)) {
    throw new WireFormatError("flame graph: missing levels or names");
  }
  const isDiff = wire.format === "diff" || wire.format === "wall";
  const stride = isDiff ? 8 : 4;
  const L = wire.levels.length;
  let n = 0;
  for (let l = 0; l < L; l++) {
    const row = wire.levels[l];
    if (!Array.isArray(row) || row.length % stride !== 0) {
      throw new WireFormatError(`flame graph: level ${l} is not a multiple of stride ${stride}`);
    }
    n += row.length / stride;
  }
  const x = new Float64Array(n);
  const w = new Float64Array(n);
  const self = new Float64Array(n);
  const level = new Int32Array(n);
  const nameIdx = new Int32Array(n);
  const parent = new Int32Array(n).fill(-1);
  const levelStart = new Int32Array(L + 1);
  const lt = isDiff ? new Float64Array(n) : null;
  const ls = isDiff ? new Float64Array(n) : null;
  const rt = isDiff ? new Float64Array(n) : null;
  const rs = isDiff ? new Float64Array(n) : null;
  const names = wire.names;
  let k = 0;
  let orphans = 0;
  for (let l = 0; l < L; l++) {
    levelStart[l] = k;
    const row = wire.levels[l];
    let prevEnd = 0;
    for (let j = 0; j < row.length; j += stride) {
      const xi = prevEnd + row[j];
      x[k] = xi;
      w[k] = row[j + 1];
      self[k] = row[j + 2];
      const ni = row[j + 3];
      nameIdx[k] = ni >= 0 && ni < names.length ? ni : 0;
      level[k] = l;
      if (isDiff) {
        lt[k] = row[j + 4];
        ls[k] = row[j + 5];
        rt[k] = row[j + 6];
        rs[k] = row[j + 7];
      }
      prevEnd = xi + row[j + 1];
      k++;
    }
  }
  levelStart[L] = k;
  // Parents: both levels are sorted by x, so one forward pointer per level pair suffices.
  for (let l = 1; l < L; l++) {
    let p = levelStart[l - 1];
    const pEnd = levelStart[l];
    for (let i = levelStart[l]; i < levelStart[l + 1]; i++) {
      while (p < pEnd && x[p] + w[p] <= x[i] && !(w[p] === 0 && x[p] === x[i])) p++;
      if (p < pEnd && x[p] <= x[i]) parent[i] = p;
      else orphans++;
    }
  }
  const kinds = Array.isArray(wire.kinds) ? wire.kinds : [];
  const binaries = Array.isArray(wire.binaries) ? wire.binaries : [];
  const isOther = new Uint8Array(n);
  for (let i = 0; i < n; i++) if (kinds[nameIdx[i]] === "other") isOther[i] = 1;
  return {
    n, x, w, self, level, nameIdx, parent, levelStart, levels: L, lt, ls, rt, rs, isOther,
    names, binaries, kinds, isDiff, format: wire.format || "single",
    type: wire.type || "", unit: displayUnit(wire.type, wire.unit), period: wire.period || 0,
    aggregation: wire.aggregation || "sum",
    numTicks: n > 0 ? w[0] : 0,
    leftTicks: wire.leftTicks || 0, rightTicks: wire.rightTicks || 0,
    leftPeriod: wire.leftPeriod || 0, rightPeriod: wire.rightPeriod || 0,
    others: Array.isArray(wire.others) ? wire.others : [],
    counters: wire.counters && typeof wire.counters === "object" ? wire.counters : {},
    orphans,
  };
}

/** Function names from the root's child down to node i (the root itself is excluded). */
export function pathOf(m, i) {
  const out = [];
  for (let p = i; p > 0; p = m.parent[p]) out.push(m.names[m.nameIdx[p]]);
  return out.reverse();
}

/** Range [a, b) of nodes of level l whose x lies in [x0, x1). */
export function levelRange(m, l, x0, x1) {
  const s = m.levelStart[l];
  const e = m.levelStart[l + 1];
  return [lowerBound(m.x, s, e, x0), lowerBound(m.x, s, e, x1)];
}

function lowerBound(arr, lo, hi, v) {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Children of node i, as a contiguous range of the next level. */
export function childRange(m, i) {
  const l = m.level[i] + 1;
  if (l >= m.levels) return [0, 0];
  return levelRange(m, l, m.x[i], m.x[i] + m.w[i] + (m.w[i] === 0 ? 1e-9 : 0));
}

/** Resolve a path of names (as from pathOf) to a node index; returns the deepest node found. */
export function findPath(m, path) {
  let cur = 0;
  if (m.n === 0) return -1;
  for (const name of path || []) {
    const [a, b] = childRange(m, cur);
    let next = -1;
    for (let c = a; c < b; c++) {
      if (m.parent[c] === cur && m.names[m.nameIdx[c]] === name) { next = c; break; }
    }
    if (next < 0) break;
    cur = next;
  }
  return cur;
}

/** Ancestors of i from the root down (inclusive of root, exclusive of i). */
export function ancestors(m, i) {
  const out = [];
  for (let p = m.parent[i]; p >= 0; p = m.parent[p]) out.push(p);
  return out.reverse();
}

/**
 * Reusable rectangle buffers for one decoded model: allocated once per data load so hover and
 * zoom redraws allocate nothing.
 */
export function makeRects(m) {
  const cap = m.n + 8;
  return {
    node: new Int32Array(cap), // node index, or the first node of a group
    px: new Float64Array(cap),
    pw: new Float64Array(cap),
    kind: new Uint8Array(cap), // 0 node, 1 group of tiny siblings, 2 ancestor of the zoomed frame
    groupCount: new Int32Array(cap),
    groupTotal: new Float64Array(cap),
    levelStart: new Int32Array(m.levels + 1),
    visible: new Uint8Array(m.n),
    count: 0,
    levels: 0,
  };
}

export const RECT_NODE = 0;
export const RECT_GROUP = 1;
export const RECT_ANCESTOR = 2;

/**
 * Lay out the graph zoomed on node `zoom` across `widthPx` pixels.
 * Frames narrower than `minPx` are merged per parent (runs of adjacent tiny siblings) into one
 * group rectangle, so nothing vanishes; their descendants are not drawn. Levels are filled in
 * order so each level's rectangles are sorted by x (hit testing binary-searches them).
 */
export function layout(m, r, zoom, widthPx, minPx = 0.5) {
  r.count = 0;
  r.levels = 0;
  if (m.n === 0 || widthPx <= 0) { r.levelStart.fill(0); return r; }
  const z = zoom >= 0 && zoom < m.n ? zoom : 0;
  const zx0 = m.x[z];
  const zw = m.w[z] > 0 ? m.w[z] : 1;
  const scale = widthPx / zw;
  const zl = m.level[z];
  const vis = r.visible;
  let c = 0;
  // Ancestors of the zoomed frame span the whole width, one per level.
  const chain = ancestors(m, z);
  for (let l = 0; l < zl; l++) {
    r.levelStart[l] = c;
    const a = chain[l];
    if (a === undefined) continue;
    r.node[c] = a; r.px[c] = 0; r.pw[c] = widthPx; r.kind[c] = RECT_ANCESTOR;
    r.groupCount[c] = 0; r.groupTotal[c] = 0; c++;
  }
  let lastLevel = zl;
  for (let l = zl; l < m.levels; l++) {
    r.levelStart[l] = c;
    const [a, b] = l === zl ? [z, z + 1] : levelRange(m, l, zx0, zx0 + zw);
    let emitted = 0;
    let openGroup = -1; // rect index of the group being extended
    let openParent = -1;
    for (let i = a; i < b; i++) {
      if (l > zl) {
        const p = m.parent[i];
        if (p < 0 || !vis[p]) { vis[i] = 0; openGroup = -1; continue; }
      }
      const px = (m.x[i] - zx0) * scale;
      const pw = m.w[i] * scale;
      if (pw >= minPx || l === zl) {
        vis[i] = 1;
        r.node[c] = i; r.px[c] = px; r.pw[c] = pw; r.kind[c] = RECT_NODE;
        r.groupCount[c] = 0; r.groupTotal[c] = 0;
        c++; emitted++; openGroup = -1;
      } else {
        vis[i] = 0;
        const p = m.parent[i];
        if (openGroup >= 0 && openParent === p) {
          r.pw[openGroup] = px + pw - r.px[openGroup];
          r.groupCount[openGroup]++;
          r.groupTotal[openGroup] += m.w[i];
        } else {
          r.node[c] = i; r.px[c] = px; r.pw[c] = pw; r.kind[c] = RECT_GROUP;
          r.groupCount[c] = 1; r.groupTotal[c] = m.w[i];
          openGroup = c; openParent = p; c++; emitted++;
        }
      }
    }
    if (emitted > 0) lastLevel = l;
    else { r.levelStart[l] = c; break; }
  }
  r.levels = lastLevel + 1;
  for (let l = r.levels; l <= m.levels; l++) r.levelStart[l] = c;
  r.count = c;
  return r;
}

/** Rectangle index under pixel x on level l, or -1 (binary search over that level's rects). */
export function hitTest(r, l, px) {
  if (l < 0 || l >= r.levels) return -1;
  let lo = r.levelStart[l];
  let hi = r.levelStart[l + 1];
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (r.px[mid] + Math.max(r.pw[mid], 1) <= px) lo = mid + 1;
    else hi = mid;
  }
  if (lo < r.levelStart[l + 1] && r.px[lo] <= px + 0.5) return lo;
  return -1;
}

/** The search box's pattern as a name test: a regex, or a literal substring when the regex is invalid. */
export function nameMatcher(pattern) {
  let re = null;
  try { re = new RegExp(pattern); } catch { re = null; }
  if (re) return { test: (s) => re.test(s), invalid: false };
  return { test: (s) => s.includes(pattern), invalid: true };
}

/**
 * Search: name indexes matching `pattern` (a regex, falling back to a literal substring when the
 * regex is invalid), the per-node match flags, and the matched share of `base` (root or zoomed
 * frame) counting each matched subtree once (a match under a match adds nothing).
 */
export function search(m, pattern, base = 0) {
  const matched = new Uint8Array(m.n);
  if (!pattern || m.n === 0) return { matched, ticks: 0, total: m.n ? m.w[base] : 0, ratio: 0, count: 0, invalid: false };
  const { test, invalid } = nameMatcher(pattern);
  const nameHit = new Uint8Array(m.names.length);
  for (let j = 0; j < m.names.length; j++) nameHit[j] = test(String(m.names[j])) ? 1 : 0;
  // underMatch[i]: some ancestor (or i itself) matched; levels are processed top-down.
  const under = new Uint8Array(m.n);
  let ticks = 0;
  let count = 0;
  const b0 = m.x[base];
  const b1 = b0 + m.w[base];
  for (let i = 0; i < m.n; i++) {
    const hit = i > 0 && nameHit[m.nameIdx[i]];
    const p = m.parent[i];
    const above = p >= 0 ? under[p] : 0;
    if (hit) { matched[i] = 1; count++; }
    under[i] = hit || above ? 1 : 0;
    if (hit && !above && m.level[i] >= m.level[base] && m.x[i] >= b0 && m.x[i] < b1) ticks += m.w[i];
  }
  const total = m.w[base];
  return { matched, ticks, total, ratio: total > 0 ? ticks / total : 0, count, invalid };
}

/** Children adjacency (CSR) built once for walks that need it (table, sandwich). */
export function childrenCSR(m) {
  const start = new Int32Array(m.n + 1);
  for (let i = 1; i < m.n; i++) if (m.parent[i] >= 0) start[m.parent[i] + 1]++;
  for (let i = 0; i < m.n; i++) start[i + 1] += start[i];
  const fill = start.slice(0, m.n);
  const list = new Int32Array(Math.max(start[m.n], 1));
  for (let i = 1; i < m.n; i++) { const p = m.parent[i]; if (p >= 0) list[fill[p]++] = i; }
  return { start, list };
}

/** Key identifying a function across the graph: name + binary (same as the server's frame identity). */
function fnKey(m, ni) {
  return `${m.names[ni]}\u0000${m.binaries[ni] || ""}`;
}

/**
 * Top functions: self summed per function, total counted once per stack (a recursive function's
 * inner frames add nothing). Iterative DFS keeps a per-function "on the current path" counter.
 */
export function topFunctions(m) {
  if (m.n === 0) return [];
  const { start, list } = childrenCSR(m);
  const keyOf = new Int32Array(m.names.length).fill(-1);
  const rows = [];
  const keyIdx = new Map();
  for (let j = 0; j < m.names.length; j++) {
    const k = fnKey(m, j);
    let id = keyIdx.get(k);
    if (id === undefined) {
      id = rows.length; keyIdx.set(k, id);
      rows.push({ name: String(m.names[j]), binary: m.binaries[j] || "", kind: m.kinds[j] || "", self: 0, total: 0, nameIdx: [] });
    }
    rows[id].nameIdx.push(j);
    keyOf[j] = id;
  }
  const onPath = new Int32Array(rows.length);
  const stack = [0];
  const state = new Uint8Array(m.n); // 0 unseen, 1 entered
  while (stack.length) {
    const i = stack[stack.length - 1];
    if (state[i] === 0) {
      state[i] = 1;
      if (i > 0) {
        const id = keyOf[m.nameIdx[i]];
        rows[id].self += m.self[i];
        if (onPath[id] === 0) rows[id].total += m.w[i];
        onPath[id]++;
      }
      for (let c = start[i + 1] - 1; c >= start[i]; c--) stack.push(list[c]);
    } else {
      stack.pop();
      if (i > 0) onPath[keyOf[m.nameIdx[i]]]--;
    }
  }
  return rows.filter((r) => r.self > 0 || r.total > 0);
}

/** Sort table rows by a column ("self", "total", "name") in a direction (1 asc, -1 desc). */
export function sortRows(rows, column, dir) {
  const d = dir === 1 ? 1 : -1;
  const col = column === "name" ? "name" : column === "total" ? "total" : "self";
  return rows.slice().sort((a, b) => {
    if (col === "name") return d * (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    return d * (a[col] - b[col]) || (a.name < b.name ? -1 : 1);
  });
}
