"""Flame-graph trees as flat numpy arrays: build from stacks and trim to a node budget.

Per-node Python objects cannot reach 100k stacks x depth 200 in under 2 s, and recursion breaks on
10,000-frame stacks, so a tree is parallel arrays built level by level with vectorized grouping.
Layout invariants every function here relies on and keeps:
  * node 0 is the root (depth 0, frame 0 = the synthetic "total" frame);
  * nodes are ordered by depth, so each level is a contiguous index range;
  * within a level, parents are non-decreasing and siblings are ordered by frame id ("other" last).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from profiler.model import Frame, FrameKind

ROOT_FRAME = Frame("total", "", FrameKind.UNKNOWN)
OTHER = -1  # frame id of a collapsed "other" node


@dataclass(eq=False)
class FlameTree:
    """A merged call tree. `frames[frame[i]]` is node i's frame; `frame[i] == OTHER` marks a
    collapsed node whose `hidden[i]` counts the nodes it stands for."""

    frames: list[Frame]
    parent: np.ndarray
    frame: np.ndarray
    depth: np.ndarray
    total: np.ndarray
    self_: np.ndarray
    hidden: np.ndarray

    def __len__(self) -> int:
        return int(self.parent.size)

    @property
    def root_total(self) -> int:
        return int(self.total[0])

    def levels(self) -> list[tuple[int, int]]:
        """Index range `[lo, hi)` of each depth."""
        return level_ranges(self.depth)

    def path(self, node: int) -> list[Frame]:
        """Frames from the root's child down to `node` (iterative: stacks may be 10,000 deep)."""
        out: list[Frame] = []
        while node > 0:
            f = int(self.frame[node])
            out.append(self.frames[f] if f != OTHER else Frame(f"other ({int(self.hidden[node])} frames)"))
            node = int(self.parent[node])
        out.reverse()
        return out


def level_ranges(depth: np.ndarray) -> list[tuple[int, int]]:
    if depth.size == 0:
        return []
    bounds = np.flatnonzero(np.diff(depth)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [depth.size]))
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def empty_tree() -> FlameTree:
    z = np.zeros(1, dtype=np.int64)
    return FlameTree([ROOT_FRAME], np.array([-1], dtype=np.int64), z.copy(), z.copy(), z.copy(), z.copy(), z.copy())


def _frame_sort_key(frame: Frame) -> tuple[str, str, str]:
    return (frame.function, frame.binary, frame.kind.value if isinstance(frame.kind, FrameKind) else str(frame.kind))


def build_tree(stacks: Iterable[tuple[Sequence[Frame], int]]) -> FlameTree:
    """Merge (root-first stack, value) pairs into a tree; negative values raise ValueError."""
    table: dict[Frame, int] = {}
    by_obj: dict[int, tuple[int, Frame]] = {}
    frames: list[Frame] = []
    flat: list[int] = []
    lengths: list[int] = []
    values: list[int] = []
    for stack, value in stacks:
        v = int(value)
        if v < 0:
            raise ValueError(f"negative sample value {v}")
        if v == 0:
            continue  # contributes nothing to any total; keeping it would make zero-width nodes
        for f in stack:
            # Frame's hash goes through FrameKind (a Python-level Enum hash): look the same object
            # up by identity first. Holding `f` in the value keeps its id from being reused.
            hit = by_obj.get(id(f))
            if hit is None:
                fid = table.get(f)
                if fid is None:
                    fid = table[f] = len(frames)
                    frames.append(f)
                by_obj[id(f)] = (fid, f)
            else:
                fid = hit[0]
            flat.append(fid)
        lengths.append(len(stack))
        values.append(v)
    return build_tree_ids(frames, np.asarray(flat, dtype=np.int64), np.asarray(lengths, dtype=np.int64),
                          np.asarray(values, dtype=np.int64))


def build_tree_ids(frames: Sequence[Frame], flat: np.ndarray, lengths: np.ndarray, values: np.ndarray) -> FlameTree:
    """Build from interned stacks: `flat` holds every stack's frame ids back to back (root first).

    The fast path (storage already has interned stacks): one `np.unique` per depth over the
    stacks still active there, keyed by (parent node, frame id).
    """
    flat = np.asarray(flat, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    values = np.asarray(values, dtype=np.int64)
    keep = values > 0
    if not keep.all():
        flat, lengths, values = flat[np.repeat(keep, lengths)], lengths[keep], values[keep]
    if values.size == 0:
        return empty_tree()
    # Frame ids sorted by name so siblings come out alphabetically (stable, readable, diff-friendly).
    order = sorted(range(len(frames)), key=lambda i: _frame_sort_key(frames[i]))
    remap = np.empty(len(frames), dtype=np.int64)
    remap[np.asarray(order, dtype=np.int64)] = np.arange(1, len(frames) + 1)
    table = [ROOT_FRAME] + [frames[i] for i in order]
    flat = remap[flat] if flat.size else flat
    nframes = len(table)

    max_depth = int(lengths.max())
    if max_depth == 0:  # only empty stacks: all value is the root's own
        t = empty_tree()
        t.total[0] = t.self_[0] = int(values.sum())
        return t
    if lengths.size * max_depth <= 4 * flat.size + (1 << 20):
        parent, frame, self_, total = _build_sorted(flat, lengths, values, max_depth)
    else:  # very uneven lengths (one deep stack among many short ones): padding would explode
        parent, frame, self_, total = _build_unique(flat, lengths, values, nframes, max_depth)
    depth = _depths(parent)
    return FlameTree(table, parent, frame, depth, total, self_, np.zeros(parent.size, dtype=np.int64))


def _build_sorted(flat: np.ndarray, lengths: np.ndarray, values: np.ndarray, max_depth: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort the padded stacks once (rows as big-endian bytes sort like their numbers), then each
    level's nodes are runs of equal (parent, frame) among the stacks still active: no per-level sort."""
    n = lengths.size
    rows = np.zeros((n, max_depth), dtype=">u4")  # 0 pads: frame id 0 is the root, never in a stack
    rows[np.arange(max_depth)[None, :] < lengths[:, None]] = flat  # row-major order = stack order
    order = np.argsort(rows.view(np.dtype((np.void, 4 * max_depth))).ravel(), kind="stable")
    cols = np.ascontiguousarray(rows[order].T).astype(np.int64)  # cols[d] = frame at depth d per stack
    del rows
    lengths, values = lengths[order], values[order]
    parents, fids, totals = [np.array([-1], dtype=np.int64)], [np.array([0], dtype=np.int64)], [
        np.array([values.sum()], dtype=np.int64)]
    node_of = np.zeros(n, dtype=np.int64)
    idx: np.ndarray | None = None  # None while every stack is still active (plain slices are cheaper)
    base = 1
    for d in range(max_depth):
        if idx is not None or int(lengths.min()) <= d:
            idx = np.flatnonzero(lengths > d) if idx is None else idx[lengths[idx] > d]
            f, pn, vals = cols[d][idx], node_of[idx], values[idx]
        else:
            f, pn, vals = cols[d], node_of, values
        new = np.empty(f.size, dtype=bool)
        new[0] = True
        np.not_equal(pn[1:], pn[:-1], out=new[1:])
        new[1:] |= f[1:] != f[:-1]
        starts = np.flatnonzero(new)
        parents.append(pn[starts])
        fids.append(f[starts])
        totals.append(np.add.reduceat(vals, starts))
        ids = np.cumsum(new)
        ids += base - 1
        if idx is None:
            node_of = ids
        else:
            node_of[idx] = ids
        base += starts.size
    parent, frame, total = np.concatenate(parents), np.concatenate(fids), np.concatenate(totals)
    self_ = np.zeros(parent.size, dtype=np.int64)
    np.add.at(self_, node_of, values)  # after the loop each stack's node is its leaf
    return parent, frame, self_, total


def _build_unique(flat: np.ndarray, lengths: np.ndarray, values: np.ndarray, nframes: int, max_depth: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per level `np.unique` over (parent, frame) keys of the active stacks: cost follows the
    total frame count, so one very deep stack among many short ones stays cheap."""
    raw_off = np.cumsum(lengths) - lengths
    by_len = np.argsort(-lengths, kind="stable")  # stacks active at depth d are then a prefix
    lengths, values, offsets = lengths[by_len], values[by_len], raw_off[by_len]
    counts = np.searchsorted(-lengths, -np.arange(1, max_depth + 1), side="right")  # stacks with length > d
    parents = [np.array([-1], dtype=np.int64)]
    fids = [np.array([0], dtype=np.int64)]
    node_of = np.zeros(values.size, dtype=np.int64)
    base = 1
    for d in range(max_depth):
        k = int(counts[d])
        key = node_of[:k] * nframes + flat[offsets[:k] + d]
        uniq, inv = np.unique(key, return_inverse=True)
        parents.append(uniq // nframes)
        fids.append(uniq % nframes)
        node_of[:k] = base + inv
        base += uniq.size
    parent = np.concatenate(parents)
    frame = np.concatenate(fids)
    self_ = np.zeros(parent.size, dtype=np.int64)
    np.add.at(self_, node_of, values)
    return parent, frame, self_, _totals_from_self(parent, _depths(parent), self_)


def _depths(parent: np.ndarray) -> np.ndarray:
    """Depth of each node; parents precede children, so one pass per level suffices."""
    depth = np.zeros(parent.size, dtype=np.int64)
    lo = 0
    hi = 1
    while hi < parent.size:
        # nodes whose parent lies in [lo, hi) are the next level; they are contiguous after hi
        nxt = hi + int(np.searchsorted(parent[hi:], hi, side="left"))
        if nxt == hi:
            raise ValueError("malformed tree: parents must precede children level by level")
        depth[hi:nxt] = depth[lo] + 1
        lo, hi = hi, nxt
    return depth


def _totals_from_self(parent: np.ndarray, depth: np.ndarray, self_: np.ndarray) -> np.ndarray:
    """Sum selves up the tree one level at a time, deepest first (exact int64, no recursion)."""
    return _sum_up(parent, depth, self_.astype(np.int64, copy=True))


def subtree_sizes(parent: np.ndarray, depth: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Per node, the (weighted) count of nodes in its subtree; "other" nodes weigh what they hide."""
    size = np.ones(parent.size, dtype=np.int64) if weight is None else weight.astype(np.int64, copy=True)
    return _sum_up(parent, depth, size)


def _sum_up(parent: np.ndarray, depth: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Add every node's value into its parent, deepest level first (in place, exact int64).

    Within a level parents are non-decreasing, so each parent's children form one run: reduceat.
    """
    for lo, hi in reversed(level_ranges(depth)[1:]):
        par = parent[lo:hi]
        starts = np.flatnonzero(np.concatenate(([True], par[1:] != par[:-1])))
        acc[par[starts]] += np.add.reduceat(acc[lo:hi], starts)
    return acc


def _top_order(rank: np.ndarray, depth: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` best nodes: larger rank first, then shallower, then lower index
    (a parent never ranks after its child, so every prefix of this order is a connected tree)."""
    if rank.size > count:
        thr = np.partition(rank, rank.size - count)[rank.size - count]
        cand = np.flatnonzero(rank >= thr)
    else:
        cand = np.arange(rank.size)
    order = cand[np.lexsort((cand, depth[cand], -rank[cand]))]
    return order[:count]


def trim_arrays(parent: np.ndarray, frame: np.ndarray, depth: np.ndarray, hidden: np.ndarray,
                rank: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]], max_nodes: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Keep the top nodes by `rank` (a total: monotone down the tree, so the kept set is
    connected) and give each kept parent of dropped children one "other" child holding their sums.
    `pairs` are (total, self) columns carried along; the node count never exceeds `max_nodes`."""
    n = parent.size
    if max_nodes < 2:
        raise ValueError("max_nodes must be at least 2 (the root and one other node)")
    if n <= max_nodes:
        return parent, frame, depth, hidden, pairs
    order = _top_order(rank, depth, max_nodes)  # best max_nodes nodes, best first
    pos = np.full(n, max_nodes, dtype=np.int64)  # rank position; max_nodes = "not in the top"
    pos[order] = np.arange(order.size)
    # Parent p gets an "other" child when keeping the first k nodes iff pos[p] < k <= max child pos.
    in_top_child = pos[np.maximum(parent, 0)] < max_nodes
    in_top_child[0] = False
    ch = np.flatnonzero(in_top_child)
    maxc = np.full(order.size, -1, dtype=np.int64)
    np.maximum.at(maxc, pos[parent[ch]], pos[ch])
    sweep = np.zeros(max_nodes + 2, dtype=np.int64)
    has = maxc >= 0
    np.add.at(sweep, np.arange(order.size)[has] + 1, 1)
    np.add.at(sweep, np.minimum(maxc[has], max_nodes) + 1, -1)
    n_other = np.cumsum(sweep)[: max_nodes + 1]  # n_other[k] for k = 0..max_nodes
    fits = np.flatnonzero(np.arange(max_nodes + 1) + n_other <= max_nodes)
    k = int(fits[fits >= 1].max())  # k = 1 (root + one other) always fits when max_nodes >= 2
    kept = pos < k
    dropped_child = np.zeros(n, dtype=bool)
    dropped_child[ch] = ~kept[ch] & kept[parent[ch]]
    size = subtree_sizes(parent, depth, np.where(frame == OTHER, hidden, 1))
    dc = np.flatnonzero(dropped_child)
    op, inv = np.unique(parent[dc], return_inverse=True)  # parents that get an "other" child
    kidx = np.flatnonzero(kept)
    newid = np.full(n, -1, dtype=np.int64)
    newid[kidx] = np.arange(kidx.size)
    m = op.size
    o_hidden = np.zeros(m, dtype=np.int64)
    np.add.at(o_hidden, inv, size[dc])
    # Assemble: kept nodes then others; then sort into layout order (depth, parent, frame, other last).
    p_all = np.concatenate((newid[parent[kidx[1:]]], newid[op]))
    p_all = np.concatenate(([-1], p_all))
    f_all = np.concatenate((frame[kidx], np.full(m, OTHER, dtype=np.int64)))
    d_all = np.concatenate((depth[kidx], depth[op] + 1))
    h_all = np.concatenate((hidden[kidx], o_hidden))
    is_other = np.concatenate((np.zeros(kidx.size, dtype=bool), np.ones(m, dtype=bool)))
    new_pairs_raw = []
    for tot, slf in pairs:
        o_tot = np.zeros(m, dtype=np.int64)
        np.add.at(o_tot, inv, tot[dc])
        new_pairs_raw.append((np.concatenate((tot[kidx], o_tot)), np.concatenate((slf[kidx], o_tot))))
    # Parent ids refer to positions in the kept list, which is already depth/parent ordered, so
    # sorting by (depth, parent, other-last, old position) keeps every level's invariants.
    pos = np.arange(p_all.size)
    perm = np.lexsort((pos, is_other, p_all, d_all))
    back = np.empty_like(perm)
    back[perm] = np.arange(perm.size)
    p_new = p_all[perm]
    p_new[1:] = back[p_new[1:]]
    out_pairs = [(t[perm], s[perm]) for t, s in new_pairs_raw]
    return p_new, f_all[perm], d_all[perm], h_all[perm], out_pairs


def trim(tree: FlameTree, max_nodes: int) -> FlameTree:
    """At most `max_nodes` nodes; root total and every parent's total are preserved exactly."""
    p, f, d, h, pairs = trim_arrays(tree.parent, tree.frame, tree.depth, tree.hidden, tree.total,
                                    [(tree.total, tree.self_)], max_nodes)
    return FlameTree(tree.frames, p, f, d, pairs[0][0], pairs[0][1], h)


def other_prefix(tree: FlameTree, node: int) -> list[str]:
    """Function names from the root's child down to an "other" node's parent: the `prefix=` to
    re-query so the UI can drill into what the other node hides."""
    return [fr.function for fr in tree.path(int(tree.parent[node]))] if node > 0 else []
