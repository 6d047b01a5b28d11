// Pure formatting of values, percentages and times for labels, tooltips and the table.

/** Human value in the profile's unit: nanoseconds as ms/s, counts as samples. */
export function formatValue(v, unit) {
  if (unit === "nanoseconds") {
    const a = Math.abs(v);
    if (a >= 1e9) return `${(v / 1e9).toFixed(a >= 1e11 ? 0 : 2)} s`;
    if (a >= 1e6) return `${(v / 1e6).toFixed(a >= 1e8 ? 0 : 2)} ms`;
    if (a >= 1e3) return `${(v / 1e3).toFixed(1)} µs`;
    return `${Math.round(v)} ns`;
  }
  if (unit === "bytes") {
    const a = Math.abs(v);
    if (a >= 2 ** 30) return `${(v / 2 ** 30).toFixed(2)} GiB`;
    if (a >= 2 ** 20) return `${(v / 2 ** 20).toFixed(2)} MiB`;
    if (a >= 2 ** 10) return `${(v / 2 ** 10).toFixed(1)} KiB`;
    return `${v} B`;
  }
  return `${Math.round(v).toLocaleString("en-US")}${unit && unit !== "count" ? ` ${unit}` : " samples"}`;
}

/** Percentage with precision that stays readable for tiny shares. */
export function formatPct(r) {
  if (!Number.isFinite(r)) return "–";
  const p = r * 100;
  if (p === 0) return "0%";
  if (Math.abs(p) < 0.01) return "<0.01%";
  return `${p.toFixed(Math.abs(p) < 10 ? 2 : 1)}%`;
}

/** Short text fitting `maxChars`, ending with an ellipsis when cut. */
export function truncate(s, maxChars) {
  if (maxChars <= 0) return "";
  if (s.length <= maxChars) return s;
  if (maxChars <= 1) return "…";
  return `${s.slice(0, maxChars - 1)}…`;
}

/** Parse "now", "now-1h", unix seconds or RFC 3339 into unix seconds (for the timeline axis). */
export function toUnixSeconds(t, now = Date.now() / 1000) {
  if (t === undefined || t === null || t === "") return NaN;
  const s = String(t).trim();
  if (s === "now") return now;
  const rel = /^now-(\d+(?:\.\d+)?)(s|m|h|d|w)$/.exec(s);
  if (rel) {
    const mult = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[rel[2]];
    return now - Number(rel[1]) * mult;
  }
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const ms = Date.parse(s);
  return Number.isFinite(ms) ? ms / 1000 : NaN;
}
