import { test } from "node:test";
import assert from "node:assert/strict";
import {
  decode, pathOf, findPath, makeRects, layout, hitTest, search, topFunctions, sortRows,
  RECT_GROUP, RECT_ANCESTOR, WireFormatError,
} from "../layout.js";
import { simple, fromTree } from "./fixtures.mjs";

test("decode resolves delta-encoded x and parents", () => {
  const m = decode(simple());
  assert.equal(m.n, 5);
  assert.deepEqual([...m.x], [0, 0, 0, 60, 0]);
  assert.deepEqual([...m.w], [100, 100, 60, 30, 40]);
  assert.deepEqual([...m.parent], [-1, 0, 1, 1, 2]);
  assert.equal(m.numTicks, 100);
  assert.equal(m.counters.missed_stacks, 3);
  assert.equal(m.orphans, 0);
});

test("decode rejects malformed input with a clear error", () => {
  assert.throws(() => decode({}), WireFormatError);
  assert.throws(() => decode({ names: ["t"], levels: [[0, 1, 0]] }), /stride 4/);
});

test("empty graph decodes and lays out to nothing", () => {
  const m = decode({ names: ["total"], levels: [] });
  assert.equal(m.n, 0);
  const r = layout(m, makeRects(m), 0, 500);
  assert.equal(r.count, 0);
  assert.equal(search(m, "x").ratio, 0);
  assert.deepEqual(topFunctions(m), []);
});

test("paths round-trip through findPath", () => {
  const m = decode(simple());
  assert.deepEqual(pathOf(m, 4), ["main", "work", "leaf"]);
  assert.equal(findPath(m, ["main", "work", "leaf"]), 4);
  assert.equal(findPath(m, ["main", "io"]), 3);
  assert.equal(findPath(m, ["main", "nope"]), 1, "stops at the deepest match");
  assert.equal(findPath(m, []), 0);
});

test("layout maps ticks to pixels and zoom stretches the frame", () => {
  const m = decode(simple());
  const r = layout(m, makeRects(m), 0, 1000);
  assert.equal(r.count, 5);
  assert.equal(r.levels, 4);
  const io = [...r.node.slice(0, r.count)].indexOf(3);
  assert.equal(r.px[io], 600);
  assert.equal(r.pw[io], 300);
  layout(m, r, 2, 1000); // zoom on work
  const kinds = [...r.kind.slice(0, r.count)];
  assert.equal(kinds.filter((k) => k === RECT_ANCESTOR).length, 2, "root and main shown as ancestors");
  const leaf = [...r.node.slice(0, r.count)].indexOf(4);
  assert.ok(Math.abs(r.pw[leaf] - (40 / 60) * 1000) < 1e-9);
  assert.ok(![...r.node.slice(0, r.count)].includes(3), "io is outside the zoom window");
});

test("tiny siblings are grouped per parent, never dropped", () => {
  const kids = [];
  for (let k = 0; k < 50; k++) kids.push([`t${k}`, 1, [["deep", 1, []]]]);
  const wire = fromTree(["total", 0, [["big", 1000, []], ["small", 0, kids]]]);
  const m = decode(wire);
  const r = layout(m, makeRects(m), 0, 200, 0.5); // 1 tick = 200/1100 px < 0.5
  let groups = 0;
  let grouped = 0;
  for (let k = 0; k < r.count; k++) if (r.kind[k] === RECT_GROUP) { groups++; grouped += r.groupCount[k]; }
  assert.equal(groups, 1);
  assert.equal(grouped, 50);
  const rect = [...r.kind.slice(0, r.count)].indexOf(RECT_GROUP);
  assert.ok(r.groupTotal[rect] === 100);
  for (let k = 0; k < r.count; k++) assert.notEqual(m.names[m.nameIdx[r.node[k]]], "deep", "children of grouped frames not drawn");
});

test("hit testing finds the rectangle under a pixel per level", () => {
  const m = decode(simple());
  const r = layout(m, makeRects(m), 0, 1000);
  assert.equal(r.node[hitTest(r, 2, 10)], 2);
  assert.equal(r.node[hitTest(r, 2, 650)], 3);
  assert.equal(hitTest(r, 2, 950), -1, "gap after io");
  assert.equal(r.node[hitTest(r, 3, 399)], 4);
  assert.equal(hitTest(r, 3, 401), -1);
  assert.equal(hitTest(r, 9, 1), -1);
});

test("search counts nested matches once", () => {
  // a(50) -> a(30) -> b(10); c(50) -> a(20)
  const wire = fromTree(["total", 0, [["a", 20, [["a", 20, [["b", 10, []]]]]], ["c", 30, [["a", 20, []]]]]]);
  const m = decode(wire);
  const r = search(m, "^a$");
  assert.equal(r.ticks, 70);
  assert.equal(r.ratio, 0.7);
  assert.equal(r.count, 3);
  const zoomed = search(m, "^a$", findPath(m, ["c"]));
  assert.equal(zoomed.ratio, 20 / 50);
  assert.equal(search(m, "a|b").ratio, 0.7, "b under a adds nothing");
  const bad = search(m, "(");
  assert.ok(bad.invalid);
  assert.equal(bad.ticks, 0);
});

test("a 1,000-deep graph decodes, lays out and zooms without recursion", () => {
  let node = ["f999", 1, []];
  for (let k = 998; k >= 0; k--) node = [`f${k}`, 0, [node]];
  const m = decode(fromTree(["total", 0, [node]]));
  assert.equal(m.levels, 1001);
  const r = layout(m, makeRects(m), 0, 800);
  assert.equal(r.levels, 1001);
  const deep = findPath(m, pathOf(m, m.n - 1));
  assert.equal(deep, m.n - 1);
  layout(m, r, 500, 800);
  assert.equal(r.count, 1001);
  assert.equal(topFunctions(m).length, 1000);
});

test("top functions: self summed, recursion counted once in total", () => {
  const wire = fromTree(["total", 0, [["a", 20, [["a", 20, [["b", 10, []]]]]], ["c", 30, [["a", 20, []]]]]]);
  const rows = topFunctions(decode(wire));
  const a = rows.find((r) => r.name === "a");
  assert.equal(a.self, 60);
  assert.equal(a.total, 70);
  const sorted = sortRows(rows, "total", -1).map((r) => r.name);
  assert.deepEqual(sorted, ["a", "c", "b"]);
  assert.deepEqual(sortRows(rows, "self", 1).map((r) => r.name), ["b", "c", "a"]);
});
