// Pure sandwich view: for one function, the merged tree of its callers (inverted) and of its
// callees, both returned as decoded models so the same renderer draws them. Iterative throughout.

import { decode } from "./layout.js";

/** A growable prefix tree keyed by (parent, name index). */
function newTrie(rootName) {
  return { name: [rootName], parent: [-1], total: [0], self: [0], kids: [[]], index: new Map() };
}

function child(t, p, ni) {
  const key = p * 4294967296 + ni;
  let c = t.index.get(key);
  if (c === undefined) {
    c = t.name.length;
    t.name.push(ni); t.parent.push(p); t.total.push(0); t.self.push(0); t.kids.push([]);
    t.kids[p].push(c);
    t.index.set(key, c);
  }
  return c;
}

/** Turn a trie into wire-format levels (delta-encoded, sorted by x) and decode it. */
function trieToModel(t, m, selfFromChildren) {
  const n = t.name.length;
  if (selfFromChildren) {
    for (let i = 0; i < n; i++) {
      let s = t.total[i];
      for (const c of t.kids[i]) s -= t.total[c];
      t.self[i] = Math.max(0, s);
    }
  }
  const x = new Float64Array(n);
  const depth = new Int32Array(n);
  const byLevel = [];
  // Preorder visits each level's nodes in increasing x, so bucketing keeps levels sorted.
  const stack = [0];
  while (stack.length) {
    const i = stack.pop();
    const d = depth[i];
    (byLevel[d] ||= []).push(i);
    let cx = x[i];
    const kids = t.kids[i].slice().sort((a, b) => t.total[b] - t.total[a]);
    for (const c of kids) { x[c] = cx; depth[c] = d + 1; cx += t.total[c]; }
    for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k]);
  }
  const levels = byLevel.map((nodes) => {
    const row = [];
    let prevEnd = 0;
    for (const i of nodes) {
      row.push(x[i] - prevEnd, t.total[i], t.self[i], t.name[i]);
      prevEnd = x[i] + t.total[i];
    }
    return row;
  });
  return decode({
    version: 1, type: m.type, unit: m.unit, period: m.period, names: m.names,
    binaries: m.binaries, kinds: m.kinds, levels, numTicks: t.total[0], counters: {},
  });
}

/**
 * Callers (inverted: level 0 is the function, level 1 its direct callers…) and callees (level 0
 * the function, then what it calls) of the function named `fn`. Only outermost occurrences
 * count, so recursion does not double count.
 */
export function sandwich(m, fn) {
  const isFn = new Uint8Array(m.names.length);
  let rootName = -1;
  for (let j = 0; j < m.names.length; j++) {
    if (String(m.names[j]) === fn) { isFn[j] = 1; if (rootName < 0) rootName = j; }
  }
  const callers = newTrie(rootName < 0 ? 0 : rootName);
  const callees = newTrie(rootName < 0 ? 0 : rootName);
  const under = new Uint8Array(m.n);
  const trieOf = new Int32Array(m.n).fill(-1);
  let total = 0;
  let self = 0;
  for (let i = 1; i < m.n; i++) {
    const p = m.parent[i];
    if (p < 0) continue;
    const hit = isFn[m.nameIdx[i]] === 1;
    if (hit) self += m.self[i];
    if (hit && !under[p]) {
      // Outermost occurrence: its callers chain, and it becomes the callee tree's root.
      const v = m.w[i];
      total += v;
      callers.total[0] += v;
      let t = 0;
      for (let a = p; a > 0; a = m.parent[a]) {
        t = child(callers, t, m.nameIdx[a]);
        callers.total[t] += v;
      }
      callees.total[0] += v;
      callees.self[0] += m.self[i];
      trieOf[i] = 0;
    } else if (trieOf[p] >= 0) {
      const t = child(callees, trieOf[p], m.nameIdx[i]);
      callees.total[t] += m.w[i];
      callees.self[t] += m.self[i];
      trieOf[i] = t;
    }
    under[i] = under[p] || hit ? 1 : 0;
  }
  return {
    found: rootName >= 0,
    total,
    self,
    callers: trieToModel(callers, m, true),
    callees: trieToModel(callees, m, false),
  };
}
