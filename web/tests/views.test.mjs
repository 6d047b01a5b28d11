import { test } from "node:test";
import assert from "node:assert/strict";
import { decode, findPath } from "../layout.js";
import { sandwich } from "../sandwich.js";
import { diffStats, classify, summarize, diffColor } from "../diff.js";
import { parseState, formatState, apiQuery, dataParams, endpoint } from "../state.js";
import { displayUnit, formatValue, formatPct, truncate, toUnixSeconds } from "../format.js";
import { sumSeries, dragRange, pixelToTime } from "../timeline.js";
import { binaryHue, frameColor, legendColor, pythonHue } from "../colors.js";
import { simple, fromTree } from "./fixtures.mjs";

test("sandwich: callers inverted, callees merged, recursion once", () => {
  // x called from a and from b; x recurses once under a.
  const wire = fromTree(["total", 0, [
    ["a", 0, [["x", 5, [["y", 10, []], ["x", 5, []]]]]],
    ["b", 0, [["x", 0, [["y", 20, []]]]]],
  ]]);
  const m = decode(wire);
  const s = sandwich(m, "x");
  assert.ok(s.found);
  assert.equal(s.total, 40);
  assert.equal(s.self, 10);
  const c = s.callers;
  assert.equal(c.names[c.nameIdx[0]], "x");
  assert.equal(c.w[0], 40);
  const callerTotals = {};
  for (let i = c.levelStart[1]; i < c.levelStart[2]; i++) callerTotals[c.names[c.nameIdx[i]]] = c.w[i];
  assert.deepEqual(callerTotals, { a: 20, b: 20 });
  const e = s.callees;
  assert.equal(e.w[0], 40);
  assert.equal(e.self[0], 5, "root self is the outermost frames' self");
  const y = findPath(e, ["y"]);
  assert.equal(e.w[y], 30);
  assert.equal(findPath(e, ["x"]) > 0, true, "nested recursion stays a callee");
  assert.equal(sandwich(m, "nope").found, false);
});

function diffWire(lt, rt, extra = {}) {
  // root -> same(lt0/rt0), changed(lt1/rt1)
  const L = lt[0] + lt[1];
  const R = rt[0] + rt[1];
  return {
    version: 1, format: "diff", type: "cpu", unit: "count", period: 0,
    names: ["total", "same", "changed"], binaries: ["", "", ""], kinds: ["", "native", "native"],
    levels: [
      [0, L + R, 0, 0, L, 0, R, 0],
      [0, lt[0] + rt[0], lt[0] + rt[0], 1, lt[0], lt[0], rt[0], rt[0],
        0, lt[1] + rt[1], lt[1] + rt[1], 2, lt[1], lt[1], rt[1], rt[1]],
    ],
    numTicks: L + R, leftTicks: L, rightTicks: R, leftPeriod: 0, rightPeriod: 0, ...extra,
  };
}

test("diff: normalized by totals, Poisson noise hides small changes", () => {
  // Same shares on both sides although the right has twice the samples: no change at all.
  let m = decode(diffWire([500, 500], [1000, 1000]));
  let st = diffStats(m);
  assert.equal(st.delta[1], 0);
  assert.equal(classify(st, 2, 3).cls, "noise");
  // 50% -> 70% with thousands of samples: significant growth of "changed", shrink of "same".
  m = decode(diffWire([1000, 1000], [600, 1400]));
  st = diffStats(m);
  assert.ok(Math.abs(st.delta[2] - 0.2) < 1e-12);
  assert.ok(st.z[2] > 5, `z=${st.z[2]}`);
  assert.equal(classify(st, 2, 3).cls, "grew");
  assert.equal(classify(st, 1, 3).cls, "shrank");
  assert.deepEqual(summarize(st, 3), { grew: 1, shrank: 1, noise: 0 });
  // Same shift with 10 samples per side: within noise.
  m = decode(diffWire([5, 5], [3, 7]));
  st = diffStats(m);
  assert.ok(Math.abs(st.z[2]) < 3);
  assert.equal(classify(st, 2, 3).cls, "noise");
  assert.equal(classify(st, 2, 0.5).cls, "grew", "a lower threshold shows it");
  assert.match(diffColor({ cls: "grew", intensity: 1 }, false), /^hsl\(0,/);
  assert.match(diffColor({ cls: "shrank", intensity: 1 }, false), /^hsl\(215,/);
});

test("diff: nanosecond values are turned into sample counts by the period", () => {
  const p = 1e7;
  const m = decode(diffWire([5 * p, 5 * p], [3 * p, 7 * p], { unit: "nanoseconds", leftPeriod: p, rightPeriod: p }));
  const st = diffStats(m);
  assert.ok(Math.abs(st.z[2]) < 3, "10 samples per side is noise even when values are large");
});

test("state round-trips through the URL and rejects junk", () => {
  const s = parseState("?view=diff&zoom=%5B%22main%22%2C%22a%3Bb%22%5D&search=fo%2Bo&theme=dark&orient=flame&rquery=%7Bx%3D%221%22%7D");
  assert.equal(s.view, "diff");
  assert.deepEqual(s.zoom, ["main", "a;b"]);
  assert.equal(s.search, "fo+o");
  const back = parseState(formatState(s));
  assert.deepEqual(back, s);
  const junk = parseState("?view=<script>&zoom=notjson&orient=x&noise=-1");
  assert.equal(junk.view, "flame");
  assert.deepEqual(junk.zoom, []);
  assert.equal(junk.orient, "icicle");
  assert.equal(junk.noise, "3");
  assert.equal(formatState(parseState("")), "");
});

test("API query composition", () => {
  assert.equal(apiQuery("cpu", '{service="api"}'), 'cpu{service="api"}');
  assert.equal(apiQuery("cpu", 'offcpu{service="api"}'), 'cpu{service="api"}');
  assert.equal(apiQuery("offcpu", 'service="api"'), 'offcpu{service="api"}');
  assert.equal(apiQuery("cpu", ""), "cpu{}");
  const p = dataParams(parseState("?view=diff&rfrom=now-2h&runtil=now-1h"), 100);
  assert.equal(p.get("left"), "cpu{}");
  assert.equal(p.get("right_from"), "now-2h");
  assert.equal(p.get("left_from"), "now-1h");
  assert.equal(p.get("max_nodes"), "100");
  assert.equal(dataParams(parseState('?prefix=["a"]'), 0).get("prefix"), '["a"]');
  assert.equal(endpoint("wall"), "/api/v1/wallclock");
});

test("formatting", () => {
  assert.equal(formatValue(1.5e9, "nanoseconds"), "1.50 s");
  assert.equal(formatValue(2.5e6, "nanoseconds"), "2.50 ms");
  assert.equal(formatValue(1234, "count"), "1,234 samples");
  assert.equal(formatPct(0.1234), "12.3%");
  assert.equal(formatPct(0.00001), "<0.01%");
  assert.equal(truncate("abcdef", 4), "abc…");
  assert.equal(truncate("abc", 4), "abc");
  assert.equal(toUnixSeconds("now-1h", 10000), 6400);
  assert.equal(toUnixSeconds("1700000000"), 1700000000);
  assert.equal(toUnixSeconds("2023-11-14T22:13:20Z"), 1700000000);
  assert.ok(Number.isNaN(toUnixSeconds("garbage")));
});

test("timeline: series summed per timestamp and drags mapped to ranges", () => {
  const pts = sumSeries({ series: [{ points: [[10, 1], [20, 2]] }, { points: [[20, 3], [30, 4]] }] });
  assert.deepEqual(pts, [[10, 1], [20, 5], [30, 4]]);
  assert.equal(pixelToTime(50, 100, 0, 1000), 500);
  assert.deepEqual(dragRange(80, 20, 100, 0, 1000), [200, 800]);
  assert.equal(dragRange(10, 11, 100, 0, 1000), null);
});

test("colors: kernel orange family, user hues outside it", () => {
  for (const b of ["/bin/a", "/usr/lib/libc.so.6", "", "python3"]) {
    const h = binaryHue(b);
    assert.ok(h >= 60 && h < 360, `${b}: ${h}`);
  }
  assert.match(frameColor("kernel", "", "schedule", false), /^hsl\((2\d|3\d),/);
  assert.equal(frameColor("native", "/bin/a", "f", false).startsWith(`hsl(${binaryHue("/bin/a")},`), true);
  assert.equal(decode(simple()).kinds[3], "kernel");
});

test("colors: Python frames in their own blue band, native binaries never in it", () => {
  for (let i = 0; i < 2000; i++) {
    const h = binaryHue(`/usr/lib/lib${i}.so`);
    assert.ok(h >= 60 && h < 360 && !(h >= 195 && h < 235), `binary hue ${h}`);
  }
  for (const f of ["json.decoder.JSONDecoder.decode", "workload.run_round", "<module>"]) {
    const m = frameColor("interpreted", "", f, false).match(/^hsl\((\d+),/);
    assert.ok(m && +m[1] >= 195 && +m[1] < 235, f);
    assert.ok(pythonHue(f) >= 195 && pythonHue(f) < 235);
  }
  assert.match(legendColor("interpreted", "", true), /^hsl\(215,/);
});

test("selector autocomplete contexts", async () => {
  const { completionContext, completions } = await import("../autocomplete.js");
  assert.deepEqual(completionContext(""), { kind: "name", head: "{" });
  assert.deepEqual(completionContext("{serv"), { kind: "name", head: "{" });
  assert.deepEqual(completionContext('{service="api", ho'), { kind: "name", head: '{service="api", ' });
  assert.deepEqual(completionContext('{service=~"ap'), { kind: "value", name: "service", head: '{service=~"' });
  assert.equal(completionContext('{service="api"'), null);
  assert.deepEqual(completions(completionContext("{ho"), ["host", "pid"], []), ['{host="', '{pid="']);
  assert.deepEqual(completions(completionContext('{host="w'), [], ["web-1"]), ['{host="web-1"}']);
});

test("tooltip lines: values, shares of all and of the zoomed frame", async () => {
  const { tooltipLines } = await import("../views.js");
  const m = decode(simple());
  const lines = tooltipLines(m, { node: 4, group: false }, 2, null);
  assert.equal(lines[0], "leaf");
  assert.equal(lines[1], "binary: /lib/libc.so · native");
  assert.ok(lines.includes("total 40 ns (40.0% of all)"), lines.join("|"));
  assert.ok(lines.includes("66.7% of the zoomed frame"), lines.join("|"));
  assert.ok(tooltipLines(m, { node: 4, group: false }, 0, null, 400).includes("total 40 ns (10.0% of all)"));
  const g = tooltipLines(m, { node: 4, group: true, count: 3, total: 5 }, 0, null);
  assert.equal(g[0], "3 small frames");
});

test("shortLabel keeps the function name: args, templates, then namespaces go first", async () => {
  const { shortLabel } = await import("../format.js");
  assert.equal(shortLabel("svc-00::mod29::fn_parse", 100), "svc-00::mod29::fn_parse");
  assert.equal(shortLabel("svc-00::mod29::fn_parse", 16), "s::m::fn_parse");
  assert.equal(shortLabel("svc-00::mod29::fn_parse", 12), "…::fn_parse");
  assert.equal(shortLabel("svc-00::mod29::fn_parse", 6), "fn_pa…");
  assert.equal(shortLabel("std::vector<std::pair<int,int>>::push_back(std::pair<int,int> const&)", 30),
    "std::vector<…>::push_back(…)");
  assert.equal(shortLabel("com.example.server.Handler.handle", 20), "c.e.s.H.handle");
  assert.equal(shortLabel("/usr/lib/python3/foo/bar.py", 12), "…/bar.py");
  assert.equal(shortLabel("plainfunctionname", 8), "plainfu…");
});

test("timeline steps are multiples of the 10 s data interval; CPU reads as cores", async () => {
  const { niceStep, rate } = await import("../timeline.js");
  assert.equal(niceStep(3600), 20); // 15 s would alternate 1 and 2 batches per bar
  assert.equal(niceStep(300), 10);
  assert.equal(niceStep(86400), 600);
  for (const span of [60, 900, 3600, 21600, 86400, 604800]) assert.equal(niceStep(span) % 10, 0);
  const r = rate({ unit: "nanoseconds", type: "cpu" }, 20);
  assert.equal(r.fmt(40e9 * r.scale), "2.00 cores");
});

test("values of every profile type are shown in their unit", () => {
  assert.equal(displayUnit("memory:inuse_objects", "count"), "objects");
  assert.equal(displayUnit("goroutine:goroutine", "count"), "goroutines");
  assert.equal(displayUnit("mutex:contentions", "count"), "contentions");
  assert.equal(displayUnit("memory:inuse_space", "bytes"), "bytes");
  assert.equal(formatValue(64 * 2 ** 20, displayUnit("memory:inuse_space", "bytes")), "64.00 MiB");
  assert.equal(formatValue(1234, displayUnit("memory:alloc_objects", "count")), "1,234 objects");
  assert.equal(formatValue(100, displayUnit("goroutine", "count")), "100 goroutines");
  assert.equal(formatValue(2.5e6, displayUnit("mutex:delay", "nanoseconds")), "2.50 ms");
  const m = decode({ version: 1, type: "goroutine:goroutine", unit: "count", aggregation: "average",
    names: ["total", "main.parked"], levels: [[0, 100, 0, 0], [0, 100, 100, 1]], numTicks: 100, maxSelf: 100 });
  assert.equal(m.unit, "goroutines");
  assert.equal(m.aggregation, "average");
});

test("a gauge's timeline points are averages, shown in their unit", async () => {
  const { rate } = await import("../timeline.js");
  const r = rate({ unit: "bytes", type: "memory:inuse_space", aggregation: "average" }, 20);
  assert.equal(r.scale, 1);
  assert.equal(r.fmt(64 * 2 ** 20), "64.00 MiB (average over 20 s)");
});
