"""Benchmark: build a flame-graph tree from 100k unique stacks of depth 200, trim to 10k nodes, serialize.

Target (issue 2 acceptance): build + trim in under 2 s. Baseline in the same run: a naive pure-Python
dict trie over a 1% subset, extrapolated linearly, so the ratio survives a noisy shared machine.
Run: .venv/bin/python bench/tree_build_trim.py [--stacks N] [--depth D] [--max-nodes M] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profiler.flamegraph import build_tree, build_tree_ids, to_json, trim
from profiler.model import Frame, FrameKind


def make_stacks(n: int, depth: int, seed: int = 7) -> tuple[list[Frame], np.ndarray, np.ndarray, np.ndarray]:
    """Realistic shape: Zipf-chosen shared prefixes (a few hot call paths) plus unique random tails."""
    rng = np.random.default_rng(seed)
    nframes = 20_000
    frames = [Frame(f"fn_{i}", f"/usr/lib/lib{i % 37}.so", FrameKind.NATIVE) for i in range(nframes)]
    n_prefixes = 2_000
    prefixes = rng.zipf(1.3, size=(n_prefixes, depth)) % nframes
    which = (rng.zipf(1.2, size=n) - 1) % n_prefixes
    cut = rng.integers(depth // 4, depth - 5, size=n)  # shared part length
    rows = prefixes[which]
    tails = rng.integers(0, nframes, size=(n, depth))
    mask = np.arange(depth)[None, :] >= cut[:, None]
    rows = np.where(mask, tails, rows)
    lengths = np.full(n, depth, dtype=np.int64)
    values = rng.integers(1, 100, size=n).astype(np.int64)
    return frames, rows.reshape(-1).astype(np.int64), lengths, values


def naive_trie(stacks: list[tuple[tuple[Frame, ...], int]]) -> int:
    """The baseline: a dict-of-dicts trie, one Python insertion per frame."""
    root: dict = {}
    nodes = 0
    for stack, value in stacks:
        node = root
        for f in stack:
            child = node.get(f)
            if child is None:
                child = node[f] = [0, {}]
                nodes += 1
            child[0] += value
            node = child[1]
    return nodes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stacks", type=int, default=100_000)
    ap.add_argument("--depth", type=int, default=200)
    ap.add_argument("--max-nodes", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (best and median reported)")
    args = ap.parse_args()
    frames, flat, lengths, values = make_stacks(args.stacks, args.depth)
    # Same data handed over as Frame tuples (what build_tree takes): includes interning per frame.
    rows = flat.reshape(args.stacks, args.depth)
    subset = max(args.stacks // 100, 1)
    tuples = [(tuple(frames[i] for i in r), int(v)) for r, v in zip(rows[:subset].tolist(), values[:subset])]
    scale = args.stacks / subset

    builds, trims, jsons, totals, cpus, naives, frame_builds = [], [], [], [], [], [], []
    for _ in range(args.rounds):  # interleaved: a noisy neighbour hits both sides of the ratio alike
        c0 = time.process_time()
        t0 = time.perf_counter()
        tree = build_tree_ids(frames, flat, lengths, values)
        t1 = time.perf_counter()
        trimmed = trim(tree, args.max_nodes)
        t2 = time.perf_counter()
        cpus.append(time.process_time() - c0)
        doc = json.dumps(to_json(trimmed), separators=(",", ":"))
        t3 = time.perf_counter()
        builds.append(t1 - t0)
        trims.append(t2 - t1)
        jsons.append(t3 - t2)
        totals.append(t2 - t0)
        n_nodes, n_trimmed, conserved = len(tree), len(trimmed), int(trimmed.total[0]) == int(tree.total[0])
        del tree
        t4 = time.perf_counter()
        build_tree(tuples)
        t5 = time.perf_counter()
        naive_trie(tuples)
        t6 = time.perf_counter()
        frame_builds.append((t5 - t4) * scale)
        naives.append((t6 - t5) * scale)

    def fmt(xs: list[float]) -> str:
        return f"best {min(xs):7.3f} s  median {statistics.median(xs):7.3f} s  worst {max(xs):7.3f} s"

    best = min(totals)
    print(f"stacks={args.stacks} depth={args.depth} frames={args.stacks * args.depth:,} tree_nodes={n_nodes:,} "
          f"rounds={args.rounds}")
    print(f"build (interned ids)      {fmt(builds)}")
    print(f"trim to {args.max_nodes} nodes     {fmt(trims)}  -> {n_trimmed} nodes, root total conserved: {conserved}")
    print(f"to_json + dumps           {fmt(jsons)}  ({len(doc):,} bytes)")
    print(f"build+trim                {fmt(totals)}  target < 2 s: "
          f"{'MET' if statistics.median(totals) < 2 else 'NOT MET'} (median)")
    print(f"build+trim CPU time       {fmt(cpus)}  (process CPU time: excludes waiting for a shared core)")
    print(f"build_tree from Frame tuples (incl. per-frame interning), {subset} stacks x{scale:.0f}: "
          f"{fmt(frame_builds)} extrapolated")
    print(f"baseline: naive Python dict trie, {subset} stacks x{scale:.0f}: {fmt(naives)} extrapolated")
    print(f"ratio baseline / build+trim (medians): {statistics.median(naives) / statistics.median(totals):.1f}x, "
          f"(bests): {min(naives) / best:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
