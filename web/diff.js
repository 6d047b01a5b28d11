// Pure diff statistics: normalize left/right by their totals and judge noise by treating sample
// counts as Poisson, so colors show real change instead of raw deltas (what peers get wrong).

/** Default equivalent sampling period when the server sends none (19 Hz, the collector default). */
export const DEFAULT_PERIOD_NS = Math.round(1e9 / 19);

function countScale(m, period) {
  if (period > 0) return period;
  return m.unit === "nanoseconds" ? DEFAULT_PERIOD_NS : 1;
}

/**
 * Per node: normalized delta (right share − left share of their own totals) and its z-score.
 * z = Δp / sqrt(nL/NL² + nR/NR²) with n = value / period (sample counts), the normal
 * approximation of the difference of two Poisson rates.
 */
export function diffStats(m) {
  const n = m.n;
  const delta = new Float64Array(n);
  const z = new Float64Array(n);
  if (!m.isDiff || n === 0) return { delta, z, maxAbs: 0, leftTicks: 0, rightTicks: 0 };
  const leftTicks = m.leftTicks || m.lt[0];
  const rightTicks = m.rightTicks || m.rt[0];
  const sl = countScale(m, m.leftPeriod || m.period);
  const sr = countScale(m, m.rightPeriod || m.period);
  const NL = leftTicks / sl;
  const NR = rightTicks / sr;
  let maxAbs = 0;
  for (let i = 0; i < n; i++) {
    const nl = m.lt[i] / sl;
    const nr = m.rt[i] / sr;
    const pl = NL > 0 ? nl / NL : 0;
    const pr = NR > 0 ? nr / NR : 0;
    const d = pr - pl;
    const v = (NL > 0 ? nl / (NL * NL) : 0) + (NR > 0 ? nr / (NR * NR) : 0);
    delta[i] = d;
    z[i] = v > 0 ? d / Math.sqrt(v) : 0;
    if (i > 0 && Math.abs(d) > maxAbs) maxAbs = Math.abs(d);
  }
  return { delta, z, maxAbs, leftTicks, rightTicks };
}

/**
 * Color class of a node: "noise" when |z| < threshold, else "grew" (red: larger share on the right
 * / new side) or "shrank" (blue), with an intensity in [0.25, 1] from |Δ| relative to the largest.
 */
export function classify(stats, i, threshold) {
  const d = stats.delta[i];
  if (Math.abs(stats.z[i]) < threshold || d === 0) return { cls: "noise", intensity: 0 };
  const t = stats.maxAbs > 0 ? Math.sqrt(Math.min(1, Math.abs(d) / stats.maxAbs)) : 1;
  return { cls: d > 0 ? "grew" : "shrank", intensity: 0.25 + 0.75 * t };
}

/** CSS color for a classified node: red family grew, blue family shrank, grey noise. */
export function diffColor(c, dark) {
  if (c.cls === "noise") return dark ? "hsl(0,0%,38%)" : "hsl(0,0%,78%)";
  const light = dark ? 30 + 25 * (1 - c.intensity) : 85 - 40 * c.intensity;
  return c.cls === "grew" ? `hsl(0,85%,${light.toFixed(0)}%)` : `hsl(215,85%,${light.toFixed(0)}%)`;
}

/** Counts of nodes in each class, for the legend ("12 grew, 3 shrank, 80 within noise"). */
export function summarize(stats, threshold) {
  const out = { grew: 0, shrank: 0, noise: 0 };
  for (let i = 1; i < stats.delta.length; i++) out[classify(stats, i, threshold).cls]++;
  return out;
}
