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

/** Fill color for a frame-table entry. */
export function frameColor(kind, binary, name, dark) {
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
  const hue = binaryHue(binary);
  const l = (dark ? 38 : 70) + jitter / 2;
  return `hsl(${hue},${dark ? 45 : 55}%,${l}%)`;
}

/** Legend color for a binary (no per-name jitter). */
export function legendColor(kind, binary, dark) {
  if (kind === "kernel") return `hsl(30,90%,${dark ? 42 : 62}%)`;
  if (kind === "interpreted") return `hsl(${PY_BAND_START + PY_BAND_WIDTH / 2},${dark ? 55 : 70}%,${dark ? 40 : 68}%)`;
  if (kind === "other") return dark ? "hsl(0,0%,35%)" : "hsl(0,0%,72%)";
  return `hsl(${binaryHue(binary)},${dark ? 45 : 55}%,${dark ? 38 : 70}%)`;
}
