"""The UI's decoder (web/layout.js, run in node) reads the core's wire format (profiler.flamegraph)
exactly: every path's total and self, the "other" nodes with their drill-in paths, and diffs."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

from profiler import flamegraph
from profiler.model import Frame, FrameKind
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
DECODE = """
import { decode, pathOf } from "./web/layout.js";
let text = "";
process.stdin.on("data", (d) => { text += d; });
process.stdin.on("end", () => {
  const m = decode(JSON.parse(text));
  const out = {};
  for (let i = 1; i < m.n; i++) {
    out[pathOf(m, i).join(";")] = m.isDiff ? [m.w[i], m.self[i], m.lt[i], m.rt[i]] : [m.w[i], m.self[i]];
  }
  const others = [];
  for (let i = 0; i < m.n; i++) if (m.isOther[i]) others.push(pathOf(m, m.parent[i]));
  process.stdout.write(JSON.stringify({ paths: out, others, orphans: m.orphans, root: m.w[0] }));
});
"""


def _node_decode(doc: dict) -> dict:
    node = shutil.which("node")
    require(node is not None, "node (v20+) for the web UI's decoder")
    proc = subprocess.run([node, "--input-type=module", "-e", DECODE], cwd=ROOT, input=json.dumps(doc),
                          check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _stacks(seed: int, n: int) -> list[tuple[tuple[Frame, ...], int]]:
    rng = random.Random(seed)
    funcs = [Frame(f"f{k}", "/bin/app", FrameKind.NATIVE) for k in range(30)]
    kernel = [Frame(f"k{k}", "[kernel.kallsyms]", FrameKind.KERNEL) for k in range(5)]
    out = []
    for _ in range(n):
        depth = rng.randint(1, 12)
        stack = tuple(rng.choice(funcs[:8] if d < 3 else funcs) for d in range(depth))
        if rng.random() < 0.2:
            stack += (rng.choice(kernel),)
        out.append((stack, rng.randint(1, 50)))
    return out


def _expected(stacks: list[tuple[tuple[Frame, ...], int]]) -> dict[str, list[int]]:
    exp: dict[str, list[int]] = {}
    for stack, v in stacks:
        for d in range(1, len(stack) + 1):
            key = ";".join(f.function for f in stack[:d])
            row = exp.setdefault(key, [0, 0])
            row[0] += v
            if d == len(stack):
                row[1] += v
    return exp


def test_decoder_matches_core_tree_exactly() -> None:
    stacks = _stacks(1, 400)
    doc = flamegraph.to_json(flamegraph.build_tree(stacks))
    got = _node_decode(doc)
    assert got["orphans"] == 0
    assert got["paths"] == _expected(stacks)
    assert got["root"] == sum(v for _, v in stacks)


def test_decoder_keeps_other_nodes_and_their_paths() -> None:
    stacks = _stacks(2, 600)
    doc = flamegraph.to_json(flamegraph.trim(flamegraph.build_tree(stacks), 60))
    got = _node_decode(doc)
    assert got["orphans"] == 0
    assert got["root"] == sum(v for _, v in stacks), "trimming moves value into 'other', never drops it"
    assert len(got["others"]) == len(doc["others"]) > 0
    assert sorted(map(tuple, got["others"])) == sorted(tuple(o["path"]) for o in doc["others"])


def test_decoder_reads_diff_format() -> None:
    left, right = _stacks(3, 200), _stacks(4, 200)
    doc = flamegraph.diff_to_json(flamegraph.diff_trees(flamegraph.build_tree(left), flamegraph.build_tree(right)))
    got = _node_decode(doc)
    el, er = _expected(left), _expected(right)
    for key in set(el) | set(er):
        w, _self, lt, rt = got["paths"][key]
        assert (lt, rt) == (el.get(key, [0, 0])[0], er.get(key, [0, 0])[0]), key
        assert w == lt + rt
