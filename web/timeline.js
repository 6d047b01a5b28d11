// Timeline of totals (the `series` endpoint) on a canvas; dragging selects a time range.
// `sumSeries` and `pixelToTime` are pure and unit-tested; the class does the drawing and input.

import { displayUnit, formatValue, formatTime } from "./format.js";

/** Sum all series' points per timestamp: [[t, v], ...] sorted by t. */
export function sumSeries(resp) {
  const acc = new Map();
  for (const s of (resp && resp.series) || []) {
    for (const [t, v] of s.points || []) acc.set(t, (acc.get(t) || 0) + v);
  }
  return [...acc.entries()].sort((a, b) => a[0] - b[0]);
}

/** Distinguishable colors for stacked groups: hues a golden angle apart, two lightnesses. */
export function groupColor(k, dark) {
  const hue = Math.round((k * 137.508 + 20) % 360);
  const light = (dark ? 58 : 50) + (k % 2 ? 10 : 0);
  return `hsl(${hue},65%,${light}%)`;
}

/**
 * Groups of a `series?group_by=` answer, biggest first: [{name, values: Map(t -> v), total, other}].
 * The server's "other" entry (groups past its cap) stays last and says how many groups it sums.
 */
export function seriesGroups(resp, groupBy) {
  const out = [];
  for (const s of (resp && resp.series) || []) {
    const values = new Map();
    let total = 0;
    for (const [t, v] of s.points || []) { values.set(t, (values.get(t) || 0) + v); total += v; }
    const name = s.other ? `other (${s.groups} more ${groupBy} values)`
      : (s.labels && s.labels[groupBy]) || `(no ${groupBy})`;
    out.push({ name, values, total, other: !!s.other });
  }
  return out.sort((a, b) => (a.other - b.other) || (b.total - a.total) || (a.name < b.name ? -1 : 1));
}

/** Time (unix seconds) at pixel x of a [t0, t1] axis drawn across `width` pixels. */
export function pixelToTime(x, width, t0, t1) {
  const f = Math.min(1, Math.max(0, x / Math.max(1, width)));
  return t0 + f * (t1 - t0);
}

/** A drag selection as a [from, until] range of whole seconds, or null when it is too small. */
export function dragRange(x0, x1, width, t0, t1, minPx = 3) {
  if (Math.abs(x1 - x0) < minPx) return null;
  const a = pixelToTime(Math.min(x0, x1), width, t0, t1);
  const b = pixelToTime(Math.max(x0, x1), width, t0, t1);
  return [Math.floor(a), Math.ceil(b)];
}

// Batches arrive every 10 s (the collector's and Pyroscope SDKs' interval): a step that is not a
// multiple of it puts 1 or 2 batches in alternate buckets, drawing a steady load as a sawtooth.
export const DATA_INTERVAL_S = 10;
const STEP_MULTIPLES = [1, 2, 3, 6, 12, 30, 60, 90, 180, 360, 720, 1080, 2160, 4320, 8640, 17280, 60480];

/** The smallest step (a multiple of the data interval from a readable list) giving <= maxPoints bars. */
export function niceStep(spanS, maxPoints = 240, interval = DATA_INTERVAL_S) {
  const want = Math.max(1, spanS / maxPoints);
  for (const k of STEP_MULTIPLES) if (k * interval >= want) return k * interval;
  return Math.ceil(want / interval) * interval;
}

/** How a point reads best: CPU nanoseconds as cores, other time as threads, gauges as averages, else per step. */
export function rate(resp, step) {
  const unit = displayUnit(resp && resp.type, resp && resp.unit);
  if (resp && resp.aggregation === "average") { // gauges (live heap, goroutines): each point is already a mean
    return { scale: 1, fmt: (v) => `${formatValue(v, unit)} (average over ${step || "?"} s)` };
  }
  if (unit === "nanoseconds" && step > 0) {
    const what = !resp.type || resp.type === "cpu" ? "cores" : "threads (avg)";
    return { scale: 1 / (step * 1e9), fmt: (v) => `${v.toFixed(v >= 10 ? 1 : 2)} ${what}` };
  }
  return { scale: 1, fmt: (v) => `${formatValue(v, unit)} per ${step || "?"} s` };
}

const HEIGHT = 70;

export class Timeline {
  constructor(canvas, { onSelect = () => {} } = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.onSelect = onSelect;
    this.points = [];
    this.t0 = 0;
    this.t1 = 1;
    this.unit = "";
    this.step = 0;
    this.rate = rate(null, 0);
    this.groupBy = "";
    this.groups = [];
    this.peakLabel = "";
    this.drag = null;
    this.dark = false;
    canvas.addEventListener("mousedown", (e) => { this.drag = [e.offsetX, e.offsetX]; this.draw(); });
    canvas.addEventListener("mousemove", (e) => {
      if (this.drag) { this.drag[1] = e.offsetX; this.draw(); }
    });
    const end = () => {
      if (!this.drag) return;
      const [a, b] = this.drag;
      this.drag = null;
      const r = dragRange(a, b, this.width(), this.t0, this.t1);
      this.draw();
      if (r) this.onSelect(r[0], r[1]);
    };
    canvas.addEventListener("mouseup", end);
    canvas.addEventListener("mouseleave", end);
  }

  width() {
    const p = this.canvas.parentElement;
    if (!p) return 600;
    const cs = getComputedStyle(p);
    return Math.max(1, Math.floor(p.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)));
  }

  /** Show a `series` response over the axis [t0, t1] (unix seconds). */
  setData(resp, t0, t1) {
    if (!Number.isFinite(t0) || !Number.isFinite(t1)) { t0 = 0; t1 = 1; resp = { series: [] }; }
    this.step = (resp && resp.step) || 0;
    this.rate = rate(resp, this.step);
    this.points = sumSeries(resp).map(([t, v]) => [t, v * this.rate.scale]);
    this.groups = this.groupBy ? seriesGroups(resp, this.groupBy) : [];
    this.unit = displayUnit(resp && resp.type, resp && resp.unit);
    this.t0 = t0;
    this.t1 = t1 > t0 ? t1 : t0 + 1;
    this.draw();
  }

  setTheme(dark) { this.dark = dark; this.draw(); }

  draw() {
    const dpr = window.devicePixelRatio || 1;
    const w = this.width();
    if (this.canvas.width !== Math.round(w * dpr)) {
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(HEIGHT * dpr);
      this.canvas.style.width = `${w}px`;
      this.canvas.style.height = `${HEIGHT}px`;
    }
    const g = this.ctx;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, HEIGHT);
    const max = this.points.reduce((a, p) => Math.max(a, p[1]), 0);
    const span = this.t1 - this.t0;
    const bw = this.step > 0 ? Math.max(1, (this.step / span) * w) : 2;
    g.fillStyle = this.dark ? "hsl(25,80%,55%)" : "hsl(25,85%,55%)";
    if (this.groups.length && max > 0) {
      // Stacked: biggest group at the bottom, each bar's segments summing to the total.
      for (const [t] of this.points) {
        const x = ((t - this.t0) / span) * w;
        let y = HEIGHT;
        this.groups.forEach((grp, k) => {
          const h = ((grp.values.get(t) || 0) * this.rate.scale / max) * (HEIGHT - 14);
          if (h <= 0) return;
          g.fillStyle = groupColor(k, this.dark);
          g.fillRect(x, y - h, Math.max(1, bw - 1), h);
          y -= h;
        });
      }
    } else {
      for (const [t, v] of this.points) {
        const x = ((t - this.t0) / span) * w;
        const h = max > 0 ? (v / max) * (HEIGHT - 14) : 0;
        g.fillRect(x, HEIGHT - h, Math.max(1, bw - 1), h);
      }
    }
    g.fillStyle = this.dark ? "#bbb" : "#555";
    g.font = "11px system-ui, sans-serif";
    g.textBaseline = "top";
    this.peakLabel = max > 0 ? `peak ${this.rate.fmt(max)}` : "no data in this range";
    g.fillText(this.peakLabel, 4, 1);
    const fmt = (t) => formatTime(t).slice(5, 16); // "" for a non-finite bound: never throws
    g.textAlign = "right";
    g.fillText(`${fmt(this.t0)} → ${fmt(this.t1)} UTC`, w - 4, 1);
    g.textAlign = "left";
    if (this.drag) {
      const [a, b] = this.drag;
      g.fillStyle = this.dark ? "rgba(120,170,255,0.3)" : "rgba(40,100,220,0.25)";
      g.fillRect(Math.min(a, b), 0, Math.abs(b - a), HEIGHT);
    }
  }
}
