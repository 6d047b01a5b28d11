import { test } from "node:test";
import assert from "node:assert/strict";
import { pickCap, syntheticWire } from "../calibrate.js";
import { decode } from "../layout.js";

test("pickCap: the largest choice within the budget, never below the old fixed cap", () => {
  assert.equal(pickCap(16 / 100000, 16), 65536); // 100k nodes per frame -> 65,536 (131,072 does not fit)
  assert.equal(pickCap(16 / 1000, 16), 16384); // a slow machine keeps the floor
  assert.equal(pickCap(1e-9, 16), 200000);
  assert.equal(pickCap(0, 16), 16384);
});

test("syntheticWire decodes to the asked node count, all parented", () => {
  const m = decode(syntheticWire(5000));
  assert.equal(m.n, 5000);
  assert.equal(m.orphans, 0);
});
