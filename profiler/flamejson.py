"""The flame-graph wire format (docs/contracts.md section 2): encode trees, decode for tests.

Flamebearer-style per-level flat int arrays with delta-encoded x offsets gzip ~10x better than
nested JSON; "others" entries tell the UI which prefix to re-query to drill into a collapsed node.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from profiler.flametree import OTHER, ROOT_FRAME, DiffTree, FlameTree, level_ranges
from profiler.model import Frame, FrameKind


def _x_positions(parent: np.ndarray, depth: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Left edge of every node: children packed from their parent's left edge, in order."""
    x = np.zeros(parent.size, dtype=np.int64)
    for lo, hi in level_ranges(depth)[1:]:
        par = parent[lo:hi]
        csum = np.cumsum(total[lo:hi]) - total[lo:hi]
        first = np.concatenate(([True], par[1:] != par[:-1]))
        group_start = np.maximum.accumulate(np.where(first, np.arange(hi - lo), 0))
        x[lo:hi] = x[par] + csum - csum[group_start]
    return x


def _tables(frames: list[Frame], frame: np.ndarray, hidden: np.ndarray
            ) -> tuple[list[str], list[str], list[str], np.ndarray]:
    """Names/binaries/kinds tables and each node's index into them ("other" names appended)."""
    # Only frames some node uses: a trimmed tree must not ship the whole frame table.
    used = np.unique(frame[frame > 0])
    remap = np.zeros(len(frames), dtype=np.int64)
    remap[used] = np.arange(1, used.size + 1)
    table = [frames[int(i)] for i in used]
    names = ["total"] + [f.function for f in table]
    binaries = [""] + [f.binary for f in table]
    kinds = [""] + [f.kind.value if isinstance(f.kind, FrameKind) else str(f.kind) for f in table]
    idx = np.where(frame >= 0, remap[np.maximum(frame, 0)], OTHER)
    others = np.flatnonzero(frame == OTHER)
    seen: dict[int, int] = {}
    for i in others.tolist():
        h = int(hidden[i])
        j = seen.get(h)
        if j is None:
            j = seen[h] = len(names)
            names.append(f"other ({h} frames)")
            binaries.append("")
            kinds.append("other")
        idx[i] = j
    return names, binaries, kinds, idx


def _other_paths(parent: np.ndarray, frame: np.ndarray, frames: list[Frame], names: list[str], idx: np.ndarray,
                 nodes: list[int]) -> dict[int, list[str]]:
    """Function names from the root's child down to each node's parent, for all `nodes` at once.

    Walks plain Python lists (not numpy scalars) and stops at the nearest ancestor whose path is
    already known (parents precede children, so handling nodes in index order finds it), copying
    that prefix at C speed: the work is the size of the output, and iterative (10,000-deep paths).
    """
    if not nodes:
        return {}
    par = parent.tolist()
    fr = frame.tolist()
    fn = [f.function for f in frames]
    ix = idx.tolist()
    known: dict[int, list[str]] = {0: []}  # node -> names from the root's child down to the node
    out: dict[int, list[str]] = {}
    for node in sorted(nodes):
        start = par[node]
        segment: list[str] = []
        p = start
        while p not in known:
            f = fr[p]
            segment.append(fn[f] if f != OTHER else names[ix[p]])
            p = par[p]
        segment.reverse()
        path = known[p] + segment
        known[start] = path
        out[node] = path
    return out


def _encode(parent: np.ndarray, frame: np.ndarray, depth: np.ndarray, hidden: np.ndarray, frames: list[Frame],
            cols: list[np.ndarray]) -> tuple[dict[str, Any], list[list[int]]]:
    """Shared body: `cols[0]` is the layout total, `cols[1]` self, the rest ride along."""
    total = cols[0]
    x = _x_positions(parent, depth, total)
    names, binaries, kinds, idx = _tables(frames, frame, hidden)
    levels: list[list[int]] = []
    others: list[dict[str, Any]] = []
    level_of_other: dict[int, tuple[int, int]] = {}
    for lv, (lo, hi) in enumerate(level_ranges(depth)):
        xs, ts = x[lo:hi], total[lo:hi]
        prev_end = np.concatenate(([0], xs[:-1] + ts[:-1]))
        block = np.stack([xs - prev_end, ts, cols[1][lo:hi], idx[lo:hi]] + [c[lo:hi] for c in cols[2:]], axis=1)
        levels.append(block.reshape(-1).tolist())
        for i in np.flatnonzero(frame[lo:hi] == OTHER).tolist():
            level_of_other[lo + i] = (lv, i)
    paths = _other_paths(parent, frame, frames, names, idx, list(level_of_other))
    for node, (lv, i) in level_of_other.items():
        others.append({"level": lv, "index": i, "path": paths[node], "hidden_nodes": int(hidden[node]),
                       "hidden_total": int(total[node])})
    head = {"version": 1, "names": names, "binaries": binaries, "kinds": kinds,
            "numTicks": int(total[0]) if total.size else 0,
            "maxSelf": int(cols[1].max()) if cols[1].size else 0, "others": others}
    return head, levels


def to_json(tree: FlameTree, *, type_name: str = "cpu", unit: str = "nanoseconds", period: int = 0,
            counters: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The single-tree wire format as a JSON-ready dict (stride 4)."""
    head, levels = _encode(tree.parent, tree.frame, tree.depth, tree.hidden, tree.frames, [tree.total, tree.self_])
    out = {"version": 1, "type": type_name, "unit": unit, "period": int(period)}
    out.update(head)
    out["levels"] = levels
    out["counters"] = {k: int(v) for k, v in (counters or {}).items()}
    return out


def diff_to_json(diff: DiffTree, *, type_name: str = "cpu", unit: str = "nanoseconds", left_period: int = 0,
                 right_period: int = 0, counters: Mapping[str, int] | None = None,
                 format: str = "diff") -> dict[str, Any]:
    """The diff (or wall-clock, `format="wall"`) wire format, stride 8."""
    if format not in ("diff", "wall"):
        raise ValueError(f"format must be 'diff' or 'wall', not {format!r}")
    head, levels = _encode(diff.parent, diff.frame, diff.depth, diff.hidden, diff.frames,
                           [diff.total, diff.self_, diff.left_total, diff.left_self, diff.right_total,
                            diff.right_self])
    out = {"version": 1, "format": format, "type": type_name if format == "diff" else "wall", "unit": unit,
           "period": int(left_period)}
    out.update(head)
    out.update(levels=levels, leftTicks=int(diff.left_total[0]) if len(diff) else 0,
               rightTicks=int(diff.right_total[0]) if len(diff) else 0, leftPeriod=int(left_period),
               rightPeriod=int(right_period), counters={k: int(v) for k, v in (counters or {}).items()})
    return out


def from_json(doc: Mapping[str, Any]) -> FlameTree | DiffTree:
    """Decode the wire format back into a tree (tests, and the server if it caches JSON).

    A node's parent is the node on the level above whose [x, x+total) holds its x.
    """
    stride = 8 if doc.get("format") in ("diff", "wall") else 4
    names, binaries, kinds = doc["names"], doc["binaries"], doc["kinds"]
    frames: list[Frame] = [ROOT_FRAME]
    fmap = np.full(len(names), OTHER, dtype=np.int64)
    for i in range(1, len(names)):
        if kinds[i] == "other":
            continue
        fmap[i] = len(frames)
        frames.append(Frame(names[i], binaries[i], FrameKind(kinds[i]) if kinds[i] else FrameKind.UNKNOWN))
    fmap[0] = 0
    par, fr, dep, cols = [], [], [], []
    prev_x = prev_t = None
    base = 0
    prev_base = 0
    for d, flat in enumerate(doc["levels"]):
        a = np.asarray(flat, dtype=np.int64).reshape(-1, stride)
        t = a[:, 1]
        widths = np.concatenate(([0], t[:-1]))
        x = np.cumsum(a[:, 0] + widths)
        if d == 0:
            par.append(np.full(a.shape[0], -1, dtype=np.int64))
        else:
            assert prev_x is not None and prev_t is not None
            p = np.searchsorted(prev_x, x, side="right") - 1
            par.append(prev_base + p)
        fr.append(fmap[a[:, 3]])
        dep.append(np.full(a.shape[0], d, dtype=np.int64))
        cols.append(a)
        prev_x, prev_t, prev_base = x, t, base
        base += a.shape[0]
    allc = np.concatenate(cols) if cols else np.zeros((0, stride), dtype=np.int64)
    parent, frame, depth = np.concatenate(par), np.concatenate(fr), np.concatenate(dep)
    hidden = np.zeros(parent.size, dtype=np.int64)
    for o in doc.get("others", []):
        lo, _ = level_ranges(depth)[o["level"]]
        hidden[lo + o["index"]] = o["hidden_nodes"]
    if stride == 4:
        return FlameTree(frames, parent, frame, depth, allc[:, 1].copy(), allc[:, 2].copy(), hidden)
    return DiffTree(frames, parent, frame, depth, hidden, allc[:, 4].copy(), allc[:, 5].copy(), allc[:, 6].copy(),
                    allc[:, 7].copy())
