// The default detail cap (max_nodes) for this browser: how many nodes the real layout + canvas
// draw in one frame budget, measured once at boot on a synthetic graph of a realistic shape.
// A fixed cap (16,384 before) hid most samples on big profiles of fast machines and was too much
// for slow ones; measuring is what lets the default follow the machine.

import { decode } from "./layout.js";
import { FlameGraph } from "./render.js";

export const NODE_CHOICES = [4096, 16384, 32768, 65536, 131072, 200000];
const FLOOR = 16384; // never below the old fixed cap: it was always fast enough to draw
const CEIL = 200000; // the server's MAX_NODES_CAP default

/** A wire-format graph of about `n` nodes: 3 children per node, each 60% of what is left. */
export function syntheticWire(n) {
  const names = ["total"];
  for (let j = 1; j < 500; j++) names.push(`pkg${j % 37}::module${j % 11}::function_${j}`);
  const levels = [[0, 1e9, 0, 0]];
  let prev = [[0, 1e9]];
  let count = 1;
  while (count < n && prev.length) {
    const row = [];
    const next = [];
    let end = 0;
    for (const [x, w] of prev) {
      let cx = x;
      let rest = Math.floor(w * 0.95);
      for (let c = 0; c < 3 && count < n; c++) {
        const cw = c === 2 ? rest : Math.floor(rest * 0.6);
        if (cw < 1) break;
        row.push(cx - end, cw, c === 2 ? cw : 0, 1 + (count % 499));
        end = cx + cw;
        next.push([cx, cw]);
        cx += cw;
        rest -= cw;
        count++;
      }
    }
    if (!row.length) break;
    levels.push(row);
    prev = next;
  }
  return { version: 1, names, binaries: names.map((_, j) => (j ? `/usr/lib/lib${j % 23}.so` : "")),
    kinds: names.map((_, j) => (j ? "native" : "")), levels, numTicks: 1e9 };
}

/** The largest choice whose cost (by the measured per-node rate) fits `budgetMs`. */
export function pickCap(msPerNode, budgetMs) {
  if (!(msPerNode > 0)) return FLOOR;
  const fit = budgetMs / msPerNode;
  let best = FLOOR;
  for (const c of NODE_CHOICES) if (c <= fit && c >= FLOOR && c <= CEIL) best = c;
  return best;
}

const STORE = "hotpath.calibration.v1";

/** The measured default, remembered per browser so it does not flip between page loads (a page
 * measured while the machine was busy would otherwise fetch a different graph than the next). */
export function cachedCalibration() {
  try {
    const c = JSON.parse(localStorage.getItem(STORE) || "null");
    if (c && NODE_CHOICES.includes(c.cap)) return { ...c, cached: true };
  } catch { /* unreadable: measure again */ }
  const c = calibrate();
  try { if (c.nodes) localStorage.setItem(STORE, JSON.stringify(c)); } catch { /* private mode */ }
  return c;
}

/** Measure a zoom (relayout + draw) of an `n`-node graph at 1400 px; returns the default cap. */
export function calibrate({ n = 20000, budgetMs = 16 } = {}) {
  const box = document.createElement("div");
  box.style.cssText = "position:absolute;left:-20000px;top:0;width:1400px;height:600px;overflow:hidden";
  document.body.appendChild(box);
  try {
    const m = decode(syntheticWire(n));
    const g = new FlameGraph(box);
    g.setModel(m); // warm-up: JIT and the canvas allocation
    const t0 = performance.now();
    const reps = 3;
    for (let k = 0; k < reps; k++) { g.setZoom(k % 2); g.setZoom(0); }
    const ms = (performance.now() - t0) / (2 * reps);
    if (g.ro) g.ro.disconnect();
    const msPerNode = ms / m.n;
    return { nodes: m.n, zoomMs: ms, msPerNode, budgetMs, cap: pickCap(msPerNode, budgetMs) };
  } catch {
    return { nodes: 0, zoomMs: 0, msPerNode: 0, budgetMs, cap: FLOOR };
  } finally {
    box.remove();
  }
}
