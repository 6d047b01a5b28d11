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

/** What a count of profile `type` counts ("objects" for memory:inuse_objects, "samples" for cpu); other
 * units as the server gives them. Why: every non-time, non-byte pprof unit is "count". */
export function displayUnit(type, unit) {
  if (unit !== "count") return unit || "";
  const sample = String(type || "").split(":").pop();
  if (sample.endsWith("objects")) return "objects";
  if (sample.startsWith("goroutine")) return "goroutines";
  if (sample === "contentions") return "contentions";
  if (sample === "threadcreate") return "threads";
  return "count";
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

/**
 * A frame label fitting `maxChars` that keeps the function name readable: first the parameter
 * list and template arguments fold to "…", then the namespaces/modules/directories shorten to
 * their first letter, then they go ("…::name"); only then is the name itself cut at its end.
 * `svc-00::mod29::fn_parse` -> `s::m::fn_parse` -> `…::fn_parse`, not `svc-00::mod29::fn…`.
 */
export function shortLabel(s, maxChars) {
  if (s.length <= maxChars) return s;
  if (maxChars <= 0) return "";
  let t = s;
  // Innermost <...> and a trailing (...) first: they are rarely what identifies the frame.
  if (t.includes("<")) {
    for (let k = 0; k < 8 && /<[^<>]*>/.test(t); k++) t = t.replace(/<[^<>]*>/g, "\u2039\u203a");
    t = t.replaceAll("\u2039\u203a", "<…>");
  }
  if (t.length > maxChars) t = t.replace(/\((?:[^()]|\([^()]*\))*\)(\s*const)?$/, "(…)");
  if (t.length <= maxChars) return t;
  // The qualifier separator: C++/Rust "::", else a path's "/", else a dotted module path.
  const bare = t.replace(/\(…\)$/, "");
  const sep = bare.includes("::") ? "::" : bare.includes("/") ? "/" : bare.includes(".") ? "." : "";
  const cut = sep ? bare.lastIndexOf(sep) : -1;
  if (cut >= 0 && cut + sep.length < bare.length) {
    const name = t.slice(cut + sep.length);
    const quals = t.slice(0, cut).split(sep);
    const abbreviated = `${quals.map((q) => q.slice(0, 1) || q).join(sep)}${sep}${name}`;
    if (abbreviated.length <= maxChars) return abbreviated;
    const dropped = `…${sep}${name}`;
    if (dropped.length <= maxChars) return dropped;
    return truncate(name, maxChars);
  }
  return truncate(t, maxChars);
}

// The forms the server accepts (server/timeparse.py): now, now-1h / now+30m, Unix seconds or
// milliseconds, RFC 3339 / ISO 8601 (no zone = UTC). Anything else is refused here, before a request,
// so a typo never reaches the timeline axis as NaN.
const RELATIVE = /^now(?:\s*([+-])\s*(\d{1,15})\s*(s|m|h|d|w))?$/;
const ISO = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?$/i;
const MAX_TIME = 253402300799;

/** Parse a query time into unix seconds; NaN when the server would refuse it too. */
export function toUnixSeconds(t, now = Date.now() / 1000) {
  if (t === undefined || t === null) return NaN;
  const s = String(t).trim();
  if (!s) return NaN;
  const rel = RELATIVE.exec(s);
  if (rel) {
    if (!rel[1]) return now;
    const off = Number(rel[2]) * { s: 1, m: 60, h: 3600, d: 86400, w: 604800 }[rel[3]];
    return rel[1] === "+" ? now + off : now - off;
  }
  if (/^\d+(\.\d+)?$/.test(s)) {
    const v = Number(s) > 1e11 ? Number(s) / 1000 : Number(s);
    return v <= MAX_TIME ? v : NaN;
  }
  if (!ISO.test(s)) return NaN;
  const hasZone = /(?:Z|[+-]\d{2}:?\d{2})$/i.test(s) && s.length > 10;
  const ms = Date.parse(hasZone ? s.replace(" ", "T") : `${s.replace(" ", "T")}${s.length > 10 ? "Z" : "T00:00:00Z"}`);
  const v = ms / 1000;
  return Number.isFinite(v) && v >= 0 && v <= MAX_TIME ? v : NaN;
}

/** Why a time field cannot be used, or "" when it parses. */
export function timeError(t) {
  if (Number.isFinite(toUnixSeconds(t))) return "";
  const shown = String(t ?? "").trim().slice(0, 40);
  return shown ? `"${shown}" is not a time: use now-1h, now-30m, 2026-01-02T15:04:05Z or Unix seconds` : "empty time";
}

/** Readable UTC time for unix seconds ("2026-01-02 15:04:05"); "" for a non-finite value. */
export function formatTime(t) {
  if (!Number.isFinite(t)) return "";
  const d = new Date(t * 1000);
  if (!Number.isFinite(d.getTime())) return "";
  return d.toISOString().replace("T", " ").slice(0, 19);
}
