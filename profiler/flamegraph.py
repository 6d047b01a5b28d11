"""Flame-graph operations the server calls: build, trim, diff, top functions, JSON wire format.

Trees live in `profiler.flametree` (flat arrays), the wire format in `profiler.flamejson`; this
module adds the diff and the per-function table and re-exports the public API in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from profiler.flamejson import diff_to_json, from_json, to_json
from profiler.flametree import (
    OTHER,
    DiffTree,
    FlameTree,
    build_tree,
    build_tree_ids,
    frame_sort_key,
    level_ranges,
    other_prefix,
    subtree_sizes,
    trim,
    trim_arrays,
)
from profiler.model import FrameKind, Profile

__all__ = [
    "DiffTree", "FlameTree", "FunctionRow", "build_tree", "build_tree_ids", "diff_to_json", "diff_trees",
    "from_json", "other_prefix", "to_json", "top_functions", "tree_from_profile", "trim", "trim_diff",
]


def tree_from_profile(profile: Profile, value_index: int = 0) -> FlameTree:
    """Merge a profile's samples by one of its sample types."""
    if profile.samples and not 0 <= value_index < len(profile.sample_types):
        raise ValueError(f"value_index {value_index} out of range for {len(profile.sample_types)} sample types")
    return build_tree((s.stack, s.values[value_index]) for s in profile.samples)


def diff_trees(left: FlameTree, right: FlameTree) -> DiffTree:
    """Align two trees by path, level by level (one `np.unique` per depth, no recursion)."""
    frames = list(left.frames)
    index = {f: i for i, f in enumerate(frames)}
    rmap = np.empty(len(right.frames), dtype=np.int64)
    for i, f in enumerate(right.frames):
        j = index.get(f)
        if j is None:
            j = index[f] = len(frames)
            frames.append(f)
        rmap[i] = j
    # Keep siblings alphabetical in the union, as build_tree does.
    order = sorted(range(1, len(frames)), key=lambda i: frame_sort_key(frames[i]))
    rank = np.empty(len(frames), dtype=np.int64)
    rank[0] = 0
    rank[np.asarray(order, dtype=np.int64)] = np.arange(1, len(frames)) if order else rank[:0]
    frames = [frames[0]] + [frames[i] for i in order]
    lf = np.where(left.frame == OTHER, OTHER, rank[np.maximum(left.frame, 0)])
    rf_raw = np.where(right.frame == OTHER, 0, rmap[np.maximum(right.frame, 0)])
    rf = np.where(right.frame == OTHER, OTHER, rank[rf_raw])
    nf = len(frames) + 1  # +1 so OTHER (-1) maps to key slot len(frames)

    lnew = np.zeros(len(left), dtype=np.int64)
    rnew = np.zeros(len(right), dtype=np.int64)
    parents, fids = [np.array([-1], dtype=np.int64)], [np.array([0], dtype=np.int64)]
    lsrc, rsrc = [np.array([0])], [np.array([0])]
    base = 1
    llev, rlev = level_ranges(left.depth), level_ranges(right.depth)
    for d in range(1, max(len(llev), len(rlev))):
        lo, hi = llev[d] if d < len(llev) else (0, 0)
        ro, rh = rlev[d] if d < len(rlev) else (0, 0)
        kl = lnew[left.parent[lo:hi]] * nf + (lf[lo:hi] % nf)
        kr = rnew[right.parent[ro:rh]] * nf + (rf[ro:rh] % nf)
        uniq, inv = np.unique(np.concatenate((kl, kr)), return_inverse=True)
        lnew[lo:hi] = base + inv[:kl.size]
        rnew[ro:rh] = base + inv[kl.size:]
        parents.append(uniq // nf)
        f = uniq % nf
        fids.append(np.where(f == nf - 1, OTHER, f))
        lsrc.append(np.arange(lo, hi))
        rsrc.append(np.arange(ro, rh))
        base += uniq.size
    n = base
    parent, frame = np.concatenate(parents), np.concatenate(fids)
    depth = np.repeat(np.arange(len(parents), dtype=np.int64), [p.size for p in parents])
    lt, ls, rt, rs, hid = (np.zeros(n, dtype=np.int64) for _ in range(5))
    li, ri = np.concatenate(lsrc), np.concatenate(rsrc)
    lt[lnew[li]], ls[lnew[li]] = left.total[li], left.self_[li]
    rt[rnew[ri]], rs[rnew[ri]] = right.total[ri], right.self_[ri]
    np.add.at(hid, lnew[li], left.hidden[li])
    np.add.at(hid, rnew[ri], right.hidden[ri])
    return DiffTree(frames, parent, frame, depth, hid, lt, ls, rt, rs)


def trim_diff(diff: DiffTree, max_nodes: int) -> DiffTree:
    """Trim a diff by combined total; both sides' sums are conserved in the "other" nodes."""
    p, f, d, h, pairs = trim_arrays(diff.parent, diff.frame, diff.depth, diff.hidden, diff.total,
                                    [(diff.left_total, diff.left_self), (diff.right_total, diff.right_self)],
                                    max_nodes)
    return DiffTree(diff.frames, p, f, d, h, pairs[0][0], pairs[0][1], pairs[1][0], pairs[1][1])


@dataclass(frozen=True)
class FunctionRow:
    """One function's share: self (in its own code) and total (on the stack at all)."""

    name: str
    binary: str
    kind: FrameKind | str
    self: int
    total: int


def _preorder(tree: FlameTree) -> np.ndarray:
    """Depth-first preorder index of each node, computed top-down per level (no recursion)."""
    size = subtree_sizes(tree.parent, tree.depth)
    pre = np.zeros(len(tree), dtype=np.int64)
    for lo, hi in level_ranges(tree.depth)[1:]:
        par = tree.parent[lo:hi]
        csum = np.cumsum(size[lo:hi]) - size[lo:hi]  # exclusive running sum over the level
        first = np.concatenate(([True], par[1:] != par[:-1]))
        group_start = np.maximum.accumulate(np.where(first, np.arange(hi - lo), 0))
        pre[lo:hi] = pre[par] + 1 + csum - csum[group_start]
    return pre


def top_functions(tree: FlameTree) -> list[FunctionRow]:
    """Per function self and total, total counting a recursive function once per stack."""
    n = len(tree)
    if n <= 1:
        return []
    real = np.flatnonzero(tree.frame > 0)
    fr = tree.frame[real]
    nfr = len(tree.frames)
    self_sum = np.bincount(fr, weights=tree.self_[real], minlength=nfr)
    # A node counts toward its function's total only if no ancestor has the same frame: within
    # each frame's nodes in preorder, it is nested iff an earlier node's subtree range covers it.
    pre = _preorder(tree)[real]
    end = pre + subtree_sizes(tree.parent, tree.depth)[real]
    order = np.lexsort((pre, fr))
    fr_s, pre_s, end_s = fr[order], pre[order], end[order]
    big = np.int64(n + 1)
    shifted_end = end_s + fr_s * big
    prev_max = np.maximum.accumulate(shifted_end)
    prev_max = np.concatenate(([np.int64(-1)], prev_max[:-1]))
    nested = prev_max > pre_s + fr_s * big
    outer = real[order][~nested]
    total_sum = np.zeros(nfr, dtype=np.int64)
    np.add.at(total_sum, tree.frame[outer], tree.total[outer])
    self_exact = np.zeros(nfr, dtype=np.int64)
    np.add.at(self_exact, fr, tree.self_[real])
    del self_sum
    rows = [FunctionRow(tree.frames[i].function, tree.frames[i].binary, tree.frames[i].kind,
                        int(self_exact[i]), int(total_sum[i]))
            for i in np.flatnonzero(total_sum)]
    rows.sort(key=lambda r: (-r.self, -r.total, r.name, r.binary))
    return rows
