// Pure view state <-> URL query string, so every view is shareable and back/forward restores it.

export const VIEWS = ["flame", "table", "sandwich", "diff", "wall"];

export const DEFAULTS = Object.freeze({
  type: "cpu",
  query: "{}",
  from: "now-1h",
  until: "now",
  view: "flame",
  zoom: [],
  prefix: [],
  search: "",
  rquery: "",
  rfrom: "",
  runtil: "",
  orient: "icicle",
  theme: "",
  fn: "",
  sort: "self",
  dir: "-1",
  noise: "3",
  groupby: "", // a label name: the timeline stacks one series per value (series?group_by=)
  nodes: "", // detail cap (max_nodes); "" = the default this browser draws within a frame budget
});

function parseList(s) {
  if (!s) return [];
  try {
    const v = JSON.parse(s);
    return Array.isArray(v) ? v.map(String) : [];
  } catch {
    return [];
  }
}

/** State from a query string (unknown keys ignored, bad values replaced by defaults). */
export function parseState(search) {
  const q = new URLSearchParams(search || "");
  const s = { ...DEFAULTS, zoom: [], prefix: [] };
  for (const k of Object.keys(DEFAULTS)) {
    if (!q.has(k)) continue;
    const v = q.get(k);
    if (k === "zoom" || k === "prefix") s[k] = parseList(v);
    else s[k] = v;
  }
  if (!VIEWS.includes(s.view)) s.view = DEFAULTS.view;
  if (s.orient !== "flame" && s.orient !== "icicle") s.orient = DEFAULTS.orient;
  if (s.theme !== "dark" && s.theme !== "light") s.theme = "";
  if (!["self", "total", "name"].includes(s.sort)) s.sort = DEFAULTS.sort;
  if (s.dir !== "1" && s.dir !== "-1") s.dir = DEFAULTS.dir;
  if (!Number.isFinite(Number(s.noise)) || Number(s.noise) < 0) s.noise = DEFAULTS.noise;
  if (!/^([A-Za-z_][A-Za-z0-9_]*)?$/.test(s.groupby)) s.groupby = DEFAULTS.groupby;
  if (s.nodes !== "" && !(Number.isInteger(Number(s.nodes)) && Number(s.nodes) >= 2)) s.nodes = DEFAULTS.nodes;
  return s;
}

/** Query string for a state, leaving defaults out to keep URLs short. */
export function formatState(s) {
  const q = new URLSearchParams();
  for (const k of Object.keys(DEFAULTS)) {
    const v = s[k];
    if (k === "zoom" || k === "prefix") {
      if (Array.isArray(v) && v.length) q.set(k, JSON.stringify(v));
    } else if (v !== undefined && v !== null && String(v) !== String(DEFAULTS[k])) {
      q.set(k, String(v));
    }
  }
  const out = q.toString();
  return out ? `?${out}` : "";
}

/** The selector sent to the API: the profile type plus the label matchers ("cpu{service=\"api\"}"). */
export function apiQuery(type, labels) {
  let sel = (labels || "").trim();
  const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*(\{.*)$/s.exec(sel);
  if (m) sel = m[2];
  if (!sel) sel = "{}";
  if (!sel.startsWith("{")) sel = `{${sel}}`;
  return `${type}${sel}`;
}

/** Parameters of the main data request for a state and view. */
export function dataParams(s, maxNodes) {
  const p = new URLSearchParams();
  if (s.view === "diff") {
    p.set("left", apiQuery(s.type, s.query));
    p.set("right", apiQuery(s.type, s.rquery || s.query));
    p.set("from", s.from);
    p.set("until", s.until);
    p.set("left_from", s.from);
    p.set("left_until", s.until);
    p.set("right_from", s.rfrom || s.from);
    p.set("right_until", s.runtil || s.until);
  } else if (s.view === "wall") {
    p.set("query", apiQuery("", s.query));
    p.set("from", s.from);
    p.set("until", s.until);
  } else {
    p.set("query", apiQuery(s.type, s.query));
    p.set("from", s.from);
    p.set("until", s.until);
    if (s.prefix && s.prefix.length) p.set("prefix", JSON.stringify(s.prefix));
  }
  if (maxNodes) p.set("max_nodes", String(maxNodes));
  return p;
}

/** Endpoint for a view. */
export function endpoint(view) {
  if (view === "diff") return "/api/v1/diff";
  if (view === "wall") return "/api/v1/wallclock";
  return "/api/v1/flamegraph";
}
