// Pure palette: color by binary (hash -> hue), kernel frames in an orange family and Python
// (interpreted) frames in a blue family, both kept apart from native user frames; "other"/grouped
// boxes grey (hatched by the renderer).

/** FNV-1a hash of a string, 32-bit. */
export function hash32(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

// Hue bands reserved for frame kinds: the kernel's 15°–50°, Python's 195°–235°.
const PY_BAND_START = 195;
const PY_BAND_WIDTH = 40;

/** Hue for a user-space binary, avoiding the kernel's and Python's bands. */
export function binaryHue(binary) {
  const hue = 60 + (hash32(binary || "?") % (300 - PY_BAND_WIDTH));
  return hue >= PY_BAND_START ? hue + PY_BAND_WIDTH : hue;
}

/** Hue for a Python frame: inside Python's band, varied by its source file. */
export function pythonHue(file) {
  return PY_BAND_START + 5 + (hash32(file || "?") % (PY_BAND_WIDTH - 10));
}

// Well-separated hues outside the kernel and Python bands, handed out by rank (biggest binary
// first), so the binaries a graph and its legend show never share a color; hashing (below) only
// colors binaries past the palette, which are too small to sit in the legend.
// [hue, lightness offset] chosen greedily for the largest minimum RGB distance to each other and to
// the kernel and Python colors, in both themes (light pastels of nearby hues look alike).
export const PALETTE = [[120, -24], [305, -24], [85, 0], [300, 0], [160, -12], [240, -24], [355, 0], [55, -24],
  [355, -24], [180, 0], [260, 0], [100, -12]];

/** Binary -> [hue, lightness offset] for user-space binaries ranked biggest first. */
export function binaryHues(ranked) {
  const out = new Map();
  ranked.slice(0, PALETTE.length).forEach((b, k) => out.set(b, PALETTE[k]));
  return out;
}

function userColor(binary, dark, hues, jitter) {
  const [hue, dl] = hues && hues.has(binary) ? hues.get(binary) : [binaryHue(binary), 0];
  const l = dark ? 38 + dl / 2 + jitter / 2 : 70 + dl + jitter / 2;
  return `hsl(${hue},${dark ? 45 : 55}%,${l}%)`;
}

/** User-space binaries of a decoded graph by self value, biggest first (the legend's order). */
export function rankBinaries(m) {
  const byBin = new Map();
  for (let i = 1; i < m.n; i++) {
    const ni = m.nameIdx[i];
    const kind = m.kinds[ni] || "";
    if (kind === "kernel" || kind === "interpreted" || kind === "other") continue;
    const b = m.binaries[ni] || "";
    byBin.set(b, (byBin.get(b) || 0) + m.self[i] + 1e-9 * m.w[i]);
  }
  return [...byBin.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map((e) => e[0]);
}

/** Fill color for a frame-table entry; `hues` (from binaryHues) overrides the hashed hue. */
export function frameColor(kind, binary, name, dark, hues = null) {
  const jitter = (hash32(name || "") % 12) - 6;
  if (kind === "other") return dark ? "hsl(0,0%,35%)" : "hsl(0,0%,72%)";
  if (kind === "kernel") {
    const l = (dark ? 42 : 62) + jitter / 2;
    return `hsl(${30 + (jitter % 6)},90%,${l}%)`;
  }
  if (kind === "interpreted") {
    const l = (dark ? 40 : 68) + jitter / 2;
    return `hsl(${pythonHue(name.split(".")[0])},${dark ? 55 : 70}%,${l}%)`;
  }
  return userColor(binary, dark, hues, jitter);
}

/** Legend color for a binary (no per-name jitter). */
export function legendColor(kind, binary, dark, hues = null) {
  if (kind === "kernel") return `hsl(30,90%,${dark ? 42 : 62}%)`;
  if (kind === "interpreted") return `hsl(${PY_BAND_START + PY_BAND_WIDTH / 2},${dark ? 55 : 70}%,${dark ? 40 : 68}%)`;
  if (kind === "other") return dark ? "hsl(0,0%,35%)" : "hsl(0,0%,72%)";
  return userColor(binary, dark, hues, 0);
}
