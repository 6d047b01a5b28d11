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

from profiler.arrays import ranges
from profiler.model import Frame, FrameInterner, FrameKind

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


@dataclass(eq=False)
class DiffTree:
    """Union of two trees by path; per node the left and right totals and selves."""

    frames: list[Frame]
    parent: np.ndarray
    frame: np.ndarray
    depth: np.ndarray
    hidden: np.ndarray
    left_total: np.ndarray
    left_self: np.ndarray
    right_total: np.ndarray
    right_self: np.ndarray

    def __len__(self) -> int:
        return int(self.parent.size)

    @property
    def total(self) -> np.ndarray:
        return self.left_total + self.right_total

    @property
    def self_(self) -> np.ndarray:
        return self.left_self + self.right_self


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


def frame_sort_key(frame: Frame) -> tuple[str, str, str]:
    """Siblings' order in every tree (built or diffed): by name, then binary, then kind."""
    return (frame.function, frame.binary, frame.kind.value if isinstance(frame.kind, FrameKind) else str(frame.kind))


def build_tree(stacks: Iterable[tuple[Sequence[Frame], int]]) -> FlameTree:
    """Merge (root-first stack, value) pairs into a tree; negative values raise ValueError."""
    interner = FrameInterner()
    flat: list[int] = []
    lengths: list[int] = []
    values: list[int] = []
    for stack, value in stacks:
        v = int(value)
        if v < 0:
            raise ValueError(f"negative sample value {v}")
        if v == 0:
            continue  # contributes nothing to any total; keeping it would make zero-width nodes
        flat.extend(interner.ids(stack))
        lengths.append(len(stack))
        values.append(v)
    return build_tree_ids(interner.frames, np.asarray(flat, dtype=np.int64), np.asarray(lengths, dtype=np.int64),
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
    order = sorted(range(len(frames)), key=lambda i: frame_sort_key(frames[i]))
    remap = np.empty(len(frames), dtype=np.int64)
    remap[np.asarray(order, dtype=np.int64)] = np.arange(1, len(frames) + 1)
    table = [ROOT_FRAME] + [frames[i] for i in order]
    nframes = len(table)

    max_depth = int(lengths.max())
    if max_depth == 0:  # only empty stacks: all value is the root's own
        t = empty_tree()
        t.total[0] = t.self_[0] = int(values.sum())
        return t
    if lengths.size * max_depth <= 4 * flat.size + (1 << 20):
        # remapped straight into the sort's big-endian u4 rows: no int64 copy of every frame
        parent, frame, self_, total, depth = _build_sorted(remap.astype(">u4")[flat], lengths, values, max_depth)
    else:  # very uneven lengths (one deep stack among many short ones): padding would explode
        parent, frame, self_, total = _build_unique(remap[flat], lengths, values, nframes, max_depth)
        depth = _depths(parent)
    return FlameTree(table, parent, frame, depth, total, self_, np.zeros(parent.size, dtype=np.int64))


def _build_sorted(flat: np.ndarray, lengths: np.ndarray, values: np.ndarray, max_depth: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort the padded stacks once (rows as big-endian bytes sort like their numbers); then the
    longest common prefix (LCP) of sorted neighbours gives the whole tree with no grouping per level.

    Stack i (sorted) creates the nodes at depths lcp[i]..len[i]-1; the node it makes at depth d
    covers the sorted stacks up to the next one with lcp <= d, so its total is a difference of
    prefix sums, and its parent is its own node one level up (or, for its first node, the node
    one level up holding stack i-1). Sorted order already puts each level's nodes by (parent,
    frame id). Work per level is over the stacks, never per node, and the output arrays are
    written once in place (at 8M nodes, allocation and copies cost more than the arithmetic).
    """
    n = lengths.size
    if int(lengths.min()) == max_depth:  # equal depths: the frames already are the padded rows
        rows = flat.astype(">u4", copy=False).reshape(n, max_depth)
    else:
        rows = np.zeros((n, max_depth), dtype=">u4")  # 0 pads: frame id 0 (the root) is never in a stack
        rows[np.arange(max_depth)[None, :] < lengths[:, None]] = flat  # row-major order = stack order
    order = np.argsort(rows.view(np.dtype((np.void, 4 * max_depth))).ravel(), kind="stable")
    rows = rows[order]
    lengths, values = lengths[order], values[order]
    lcp = np.zeros(n, dtype=np.int64)
    if n > 1:
        native = rows.view("<u4")  # byte-swapped numbers, but equality is all the LCP needs
        neq = native[1:] != native[:-1]
        first = neq.argmax(axis=1)
        same = ~neq[np.arange(n - 1), first]  # equal rows (pads included): duplicate stacks
        del neq
        lcp[1:] = np.where(same, max_depth, first)
        np.minimum(lcp, lengths, out=lcp)
    size = 1 + int((lengths - lcp).sum())
    parent = np.empty(size, dtype=np.int64)
    frame = np.empty(size, dtype=np.int64)
    total = np.empty(size, dtype=np.int64)
    csum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(values, out=csum[1:])
    parent[0], frame[0], total[0] = -1, 0, csum[-1]
    by_len = np.argsort(lengths, kind="stable")  # stacks ending at depth d: one slice per d
    len_bounds = np.searchsorted(lengths[by_len], np.arange(max_depth + 2))
    by_lcp = np.argsort(lcp, kind="stable")  # stacks whose first own node is at depth d
    lcp_bounds = np.searchsorted(lcp[by_lcp], np.arange(max_depth + 1))
    leaf = np.zeros(n, dtype=np.int64)  # node each stack ends at (empty stacks end at the root)
    node_at = np.zeros(n, dtype=np.int64)  # per stack, its node on the level last built
    starts = np.empty(n + 1, dtype=np.int64)
    prev = np.zeros(0, dtype=np.int64)
    prev_base, base = 0, 1
    counts = [1]  # nodes per level, the root's first
    # Column-major copy: each level then gathers its frames from one short row, not one cache
    # line per stack from the row-major matrix.
    cols = np.ascontiguousarray(rows.T)
    del rows
    shortest = int(lengths.min())
    for d in range(max_depth):
        b = np.flatnonzero(lcp <= d)  # stacks that begin a new prefix of length d+1 (or end before)
        starts[: b.size - 1] = b[1:]
        starts[b.size - 1] = n
        if d < shortest:  # every stack is still live: each of them makes a node here
            creators, ends = b, starts[: b.size]
        else:
            cpos = np.flatnonzero(lengths[b] > d)
            creators, ends = b[cpos], starts[cpos]
        k = creators.size
        if k == 0:
            break
        hi = base + k
        np.subtract(csum[ends], csum[creators], out=total[base:hi])
        frame[base:hi] = cols[d][creators]
        par = parent[base:hi]
        if d == 0:
            par[:] = 0
        else:
            par[:] = node_at[creators]  # right for stacks that had a node one level up
            fresh = by_lcp[lcp_bounds[d]:lcp_bounds[d + 1]]  # their first node is here
            fresh = fresh[lengths[fresh] > d]
            if fresh.size:
                pos = np.searchsorted(creators, fresh)
                par[pos] = prev_base + np.searchsorted(prev, fresh, side="right") - 1
        node_at[creators] = np.arange(base, hi)
        enders = by_len[len_bounds[d + 1]:len_bounds[d + 2]]
        if enders.size:
            leaf[enders] = base + np.searchsorted(creators, enders, side="right") - 1
        prev, prev_base, base = creators, base, hi
        counts.append(k)
    self_ = np.zeros(size, dtype=np.int64)
    np.add.at(self_, leaf, values)
    return parent, frame, self_, total, np.repeat(np.arange(len(counts), dtype=np.int64), counts)


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
    """Per node, the (weighted) count of nodes in its subtree; "other" nodes weigh what they hide.

    Counts stay far below 2**53, so a float `bincount` per level is exact and much cheaper than
    `reduceat` (this runs over every node of 8M-node trees on each trim)."""
    size = np.ones(parent.size, dtype=np.int64) if weight is None else weight.astype(np.int64, copy=True)
    for lo, hi in reversed(level_ranges(depth)[1:]):
        par = parent[lo:hi]
        plo, phi = int(par[0]), int(par[-1]) + 1
        size[plo:phi] += np.bincount(par - plo, weights=size[lo:hi], minlength=phi - plo).astype(np.int64)
    return size


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


def _children_of(parent: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """All children of `nodes` (sorted ids), ascending. Layout: `parent[1:]` is non-decreasing."""
    lo = np.searchsorted(parent, nodes, side="left")
    hi = np.searchsorted(parent, nodes, side="right")
    return ranges(lo, hi)



def trim_arrays(parent: np.ndarray, frame: np.ndarray, depth: np.ndarray, hidden: np.ndarray,
                rank: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]], max_nodes: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Keep the top nodes by `rank` (a total: monotone down the tree, so the kept set is
    connected) and give each kept parent of dropped children one "other" child holding their sums.
    `pairs` are (total, self) columns carried along; the node count never exceeds `max_nodes`.

    Apart from ranking all nodes once, the work is over the top nodes and their children only
    (a 10k-node answer from an 8M-node tree must not pay several passes over 8M nodes).
    """
    n = parent.size
    if max_nodes < 2:
        raise ValueError("max_nodes must be at least 2 (the root and one other node)")
    if n <= max_nodes:
        return parent, frame, depth, hidden, pairs
    order = _top_order(rank, depth, max_nodes)  # best max_nodes nodes, best first
    top = np.sort(order)
    rank_of_top = np.empty(order.size, dtype=np.int64)  # position in `order`, indexed like `top`
    rank_of_top[np.searchsorted(top, order)] = np.arange(order.size)

    def pos_of(ids: np.ndarray) -> np.ndarray:
        """Rank position of each id; max_nodes when not among the top."""
        i = np.minimum(np.searchsorted(top, ids), top.size - 1)
        return np.where(top[i] == ids, rank_of_top[i], max_nodes)

    ch = _children_of(parent, top)  # nodes whose parent is in the top (never the root)
    ch_par = parent[ch]
    ch_pos, par_pos = pos_of(ch), pos_of(ch_par)
    # Parent p gets an "other" child when keeping the first k nodes iff pos[p] < k <= max child pos.
    maxc = np.full(order.size, -1, dtype=np.int64)
    np.maximum.at(maxc, par_pos, ch_pos)
    sweep = np.zeros(max_nodes + 2, dtype=np.int64)
    has = maxc >= 0
    np.add.at(sweep, np.arange(order.size)[has] + 1, 1)
    np.add.at(sweep, np.minimum(maxc[has], max_nodes) + 1, -1)
    n_other = np.cumsum(sweep)[: max_nodes + 1]  # n_other[k] for k = 0..max_nodes
    fits = np.flatnonzero(np.arange(max_nodes + 1) + n_other <= max_nodes)
    k = int(fits[fits >= 1].max())  # k = 1 (root + one other) always fits when max_nodes >= 2
    kidx = np.sort(order[:k])  # kept nodes, ascending
    dc = ch[(ch_pos >= k) & (par_pos < k)]  # dropped children of kept parents, ascending
    size = subtree_sizes(parent, depth, np.where(frame == OTHER, hidden, 1))[dc]
    op, inv = np.unique(parent[dc], return_inverse=True)  # parents that get an "other" child
    m = op.size
    o_hidden = np.zeros(m, dtype=np.int64)
    np.add.at(o_hidden, inv, size)
    # Assemble: kept nodes then others; then sort into layout order (depth, parent, frame, other last).
    p_all = np.concatenate(([-1], np.searchsorted(kidx, parent[kidx[1:]]), np.searchsorted(kidx, op)))
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
