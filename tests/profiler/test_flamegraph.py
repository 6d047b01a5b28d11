"""Flame-graph trees: hand-computed ground truth, trim invariants, diff, wire format, deep stacks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from profiler.flamegraph import (
    OTHER,
    build_tree,
    build_tree_ids,
    diff_to_json,
    diff_trees,
    from_json,
    other_prefix,
    to_json,
    top_functions,
    tree_from_profile,
    trim,
    trim_diff,
)
from profiler.model import Frame, Sample
from profiler.types import new_cpu_profile

A, B, C = Frame("a", "/bin/x"), Frame("b", "/bin/x"), Frame("c", "/lib/y")
STACKS = [((A, B), 3), ((A, C), 2), ((A,), 1), ((B,), 4), ((C, C), 0)]


def by_path(tree) -> dict[tuple[str, ...], tuple[int, int]]:
    out = {}
    for i in range(len(tree)):
        out[tuple(f.function for f in tree.path(i))] = (int(tree.total[i]), int(tree.self_[i]))
    return out


def check_shape(tree) -> None:
    """Layout invariants: levels contiguous, parents one level up, parents non-decreasing."""
    assert tree.parent[0] == -1 and tree.depth[0] == 0
    p = tree.parent[1:]
    assert (tree.depth[1:] == tree.depth[p] + 1).all()
    assert (np.diff(tree.depth) >= 0).all() and (np.diff(p) >= 0).all()


def test_ground_truth_tree() -> None:
    tree = build_tree(STACKS)
    check_shape(tree)
    assert by_path(tree) == {(): (10, 0), ("a",): (6, 1), ("a", "b"): (3, 3), ("a", "c"): (2, 2), ("b",): (4, 4)}


def test_tree_from_profile_picks_value_index() -> None:
    prof = new_cpu_profile(100)
    prof.samples = [Sample((A, B), (1, 10)), Sample((A,), (2, 20))]
    assert by_path(tree_from_profile(prof, 1))[("a",)] == (30, 20)
    assert by_path(tree_from_profile(prof, 0))[("a", "b")] == (1, 1)


def test_empty_inputs_everywhere() -> None:
    tree = build_tree([])
    assert len(tree) == 1 and tree.root_total == 0
    assert len(trim(tree, 10)) == 1
    assert top_functions(tree) == []
    doc = to_json(tree)
    assert doc["numTicks"] == 0 and doc["levels"] == [[0, 0, 0, 0]]
    d = diff_trees(tree, tree)
    assert len(d) == 1 and diff_to_json(d)["leftTicks"] == 0


def test_trim_invariants_and_other_nodes() -> None:
    stacks = [((A, Frame(f"f{i}"), Frame(f"g{i}")), i + 1) for i in range(50)] + [((B,), 7)]
    tree = build_tree(stacks)
    small = trim(tree, 12)
    check_shape(small)
    assert len(small) <= 12 and small.root_total == tree.root_total
    others = np.flatnonzero(small.frame == OTHER)
    assert others.size >= 1
    # every parent's total = self + children's totals, so "other" nodes account exactly for what they hide
    for i in range(len(small)):
        kids = np.flatnonzero(small.parent == i)
        assert small.total[i] == small.self_[i] + small.total[kids].sum()
    hidden_nodes = int(small.hidden[others].sum())
    assert hidden_nodes + len(small) - others.size == len(tree)
    o = int(others[0])
    assert other_prefix(small, o) == [f.function for f in small.path(int(small.parent[o]))]


def test_diff_correctness() -> None:
    left = build_tree(STACKS)
    right = build_tree([((A, B), 1), ((C,), 5)])
    d = diff_trees(left, right)
    got = {tuple(f.function for f in _path(d, i)): (int(d.left_total[i]), int(d.right_total[i]), int(d.left_self[i]),
                                                     int(d.right_self[i])) for i in range(len(d))}
    assert got == {(): (10, 6, 0, 0), ("a",): (6, 1, 1, 0), ("a", "b"): (3, 1, 3, 1), ("a", "c"): (2, 0, 2, 0),
                   ("b",): (4, 0, 4, 0), ("c",): (0, 5, 0, 5)}
    doc = diff_to_json(d, format="wall")
    assert doc["format"] == "wall" and doc["leftTicks"] == 10 and doc["rightTicks"] == 6
    assert all(len(level) % 8 == 0 for level in doc["levels"])
    t = trim_diff(d, 4)
    assert len(t) <= 4 and int(t.left_total[0]) == 10 and int(t.right_total[0]) == 6


def _path(tree, i: int) -> list[Frame]:
    out = []
    while i > 0:
        out.append(tree.frames[int(tree.frame[i])])
        i = int(tree.parent[i])
    return out[::-1]


def test_top_functions_no_double_counting_recursion() -> None:
    tree = build_tree([((A, B, A, B), 3), ((A,), 1), ((C, A), 2)])
    rows = {r.name: (r.self, r.total) for r in top_functions(tree)}
    assert rows == {"a": (1 + 2, 6), "b": (3, 3), "c": (0, 2)}


def assert_same(t1, t2) -> None:
    assert len(t1) == len(t2)
    for name in ("parent", "depth", "total", "self_", "hidden"):
        assert (getattr(t1, name) == getattr(t2, name)).all(), name
    f1 = [t1.frames[f] if f != OTHER else None for f in t1.frame]
    f2 = [t2.frames[f] if f != OTHER else None for f in t2.frame]
    assert f1[1:] == f2[1:]


def test_json_round_trip_and_delta_encoding() -> None:
    tree = build_tree(STACKS)
    doc = to_json(tree, type_name="cpu", unit="nanoseconds", period=10, counters={"missed_stacks": 3})
    assert doc["levels"][1] == [0, 6, 1, 1, 0, 4, 4, 2]  # a at x=0, b at x=6 -> delta 0
    assert doc["counters"] == {"missed_stacks": 3} and doc["numTicks"] == 10 and doc["maxSelf"] == 4
    assert_same(from_json(doc), tree)
    small = trim(tree, 3)
    sdoc = to_json(small)
    assert sdoc["others"] and sdoc["kinds"][sdoc["levels"][1][3]] == "other"
    assert_same(from_json(sdoc), small)


def test_ten_thousand_deep_stack() -> None:
    deep = tuple(Frame(f"f{i % 7}_{i}") for i in range(10_000))
    tree = build_tree([(deep, 5), (deep[:5000], 2), ((A,), 1)])
    assert len(tree) == 10_002 and tree.root_total == 8
    small = trim(tree, 100)
    assert len(small) <= 100 and small.root_total == 8
    doc = to_json(small)
    assert_same(from_json(doc), small)
    assert_same(from_json(to_json(tree)), tree)
    d = diff_trees(tree, small)
    assert int(d.left_total[0]) == 8 and int(d.right_total[0]) == 8
    diff_to_json(trim_diff(d, 50))
    assert top_functions(tree)[0].self == 5


frames = st.sampled_from([Frame(n) for n in "abcdefg"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(frames, max_size=8).map(tuple), st.integers(0, 50)), max_size=30),
       st.integers(2, 20))
def test_trim_conserves_sums(stacks, max_nodes: int) -> None:
    tree = build_tree(stacks)
    assert tree.root_total == sum(v for _, v in stacks)
    small = trim(tree, max_nodes)
    check_shape(small)
    assert len(small) <= max_nodes and small.root_total == tree.root_total
    assert int(small.self_.sum()) == tree.root_total
    assert int(small.hidden.sum()) + len(small) - int((small.frame == OTHER).sum()) == len(tree)
    assert_same(from_json(to_json(small)), small)


def test_uneven_lengths_take_the_unpadded_path_and_agree() -> None:
    deep = tuple(Frame(f"d{i}") for i in range(10_000))
    short = [((A, Frame(f"s{i}")), 1) for i in range(300)]
    tree = build_tree([(deep, 2)] + short)  # 301 x 10,000 padded would be too big: per-level unique path
    check_shape(tree)
    assert tree.root_total == 302 and len(tree) == 1 + 10_000 + 1 + 300
    a_node = int(np.flatnonzero((tree.depth == 1) & (tree.total == 300))[0])
    kids = np.flatnonzero(tree.parent == a_node)
    assert kids.size == 300 and (tree.self_[kids] == 1).all()
    assert tree.frames[int(tree.frame[a_node])] == A


def _reference_tree(frames: list[Frame], stacks: list[tuple[list[int], int]]) -> dict[str, list[int]]:
    """Plain dict trie laid out level by level (parents in order, siblings by frame sort key)."""
    order = sorted(range(len(frames)), key=lambda i: (frames[i].function, frames[i].binary, frames[i].kind.value))
    fid = {old: new + 1 for new, old in enumerate(order)}
    children: dict[int, dict[int, int]] = {0: {}}
    parent, frame, total, self_ = [-1], [0], [0], [0]
    for stack, v in stacks:
        if v <= 0:
            continue
        node = 0
        total[0] += v
        for f in stack:
            kids = children[node]
            nxt = kids.get(fid[f])
            if nxt is None:
                nxt = kids[fid[f]] = len(parent)
                children[nxt] = {}
                parent.append(node), frame.append(fid[f]), total.append(0), self_.append(0)
            node = nxt
            total[node] += v
        self_[node] += v
    out: dict[str, list[int]] = {"parent": [-1], "frame": [0], "depth": [0], "total": [total[0]], "self_": [self_[0]]}
    level, new_id, depth = [0], {0: 0}, 0
    while level:
        depth += 1
        nxt_level = []
        for p in level:
            for f, c in sorted(children[p].items()):
                new_id[c] = len(out["parent"])
                for key, val in (("parent", new_id[p]), ("frame", f), ("depth", depth), ("total", total[c]),
                                 ("self_", self_[c])):
                    out[key].append(val)
                nxt_level.append(c)
        level = nxt_level
    return out


def _reference_trim(t: dict[str, list[int]], max_nodes: int) -> dict[str, list[int]]:
    """Keep the best k nodes by (-total, depth, index), the largest k that leaves room for one
    "other" child per kept parent with dropped children; lay out by (depth, parent, other last)."""
    n = len(t["parent"])
    if n <= max_nodes:
        return {**t, "hidden": [0] * n}
    best = sorted(range(n), key=lambda i: (-t["total"][i], t["depth"][i], i))
    kids: dict[int, list[int]] = {}
    for i in range(1, n):
        kids.setdefault(t["parent"][i], []).append(i)
    for k in range(max_nodes, 0, -1):
        kept = set(best[:k])
        with_other = [p for p in sorted(kept) if any(c not in kept for c in kids.get(p, []))]
        if k + len(with_other) <= max_nodes:
            break

    def size(i: int) -> int:
        todo, count = [i], 0
        while todo:
            x = todo.pop()
            count += 1
            todo.extend(kids.get(x, []))
        return count

    rows = [(t["depth"][i], t["parent"][i], 0, i) for i in sorted(kept)]
    rows += [(t["depth"][p] + 1, p, 1, p) for p in with_other]
    rows.sort()
    pos = {(r[2], r[3]): j for j, r in enumerate(rows)}
    out: dict[str, list[int]] = {key: [] for key in ("parent", "frame", "depth", "total", "self_", "hidden")}
    for d, p, other, i in rows:
        out["parent"].append(pos[(0, p)] if p >= 0 else -1)
        out["depth"].append(d)
        if other:
            dropped = [c for c in kids[p] if c not in kept]
            s = sum(t["total"][c] for c in dropped)
            out["frame"].append(OTHER), out["total"].append(s), out["self_"].append(s)
            out["hidden"].append(sum(size(c) for c in dropped))
        else:
            out["frame"].append(t["frame"][i]), out["total"].append(t["total"][i])
            out["self_"].append(t["self_"][i]), out["hidden"].append(0)
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 5), max_size=9), st.integers(0, 6)), max_size=25),
       st.integers(2, 25))
def test_build_and_trim_match_reference(stacks, max_nodes: int) -> None:
    frames = [Frame(n, b) for n, b in (("b", "/x"), ("a", "/x"), ("c", "/y"), ("a", "/y"), ("d", ""), ("e", ""))]
    flat = np.array([f for s, _ in stacks for f in s], dtype=np.int64)
    lengths = np.array([len(s) for s, _ in stacks], dtype=np.int64)
    values = np.array([v for _, v in stacks], dtype=np.int64)
    tree = build_tree_ids(frames, flat, lengths, values)
    ref = _reference_tree(frames, stacks)
    for key in ("parent", "frame", "depth", "total", "self_"):
        assert getattr(tree, key).tolist() == ref[key], key
    small = trim(tree, max_nodes)
    ref_small = _reference_trim(ref, max_nodes)
    for key in ("parent", "frame", "depth", "total", "self_", "hidden"):
        assert getattr(small, key).tolist() == ref_small[key], key


def test_many_deep_other_nodes_get_their_full_paths() -> None:
    # A 1,500-deep hot chain with a cold side branch under every chain node: trimming keeps the
    # chain and puts one "other" under each chain node, so the paths total ~1.1M names.
    depth = 1500
    chain = tuple(Frame(f"c{i}") for i in range(depth))
    stacks = [(chain, 10**6)] + [(chain[:k] + (Frame(f"side{k}"), Frame(f"leaf{k}")), 1) for k in range(1, depth)]
    tree = build_tree(stacks)
    small = trim(tree, 2 * depth)  # exactly room for root, chain and one "other" per side branch
    doc = to_json(small)
    others = doc["others"]
    assert len(others) == int((small.frame == OTHER).sum()) == depth - 1
    names = [f.function for f in chain]
    lo_of = [lo for lo, _ in small.levels()]
    for o in others:
        node = lo_of[o["level"]] + o["index"]
        assert small.frame[node] == OTHER
        k = o["level"] - 1  # the other's parent is chain node k-1 (0-based), path = chain[:k]
        assert o["path"] == names[:k]
        assert o["hidden_nodes"] == 2 and o["hidden_total"] == 1
    spot = int(np.flatnonzero(small.frame == OTHER)[-1])
    assert doc["others"][-1]["path"] == other_prefix(small, spot)


def test_equal_depth_stacks_match_reference() -> None:
    rng = np.random.default_rng(3)
    frames = [Frame(f"f{i}") for i in range(4)]
    rows = rng.integers(0, 4, size=(40, 6))
    rows[:20, :3] = rows[0, :3]  # shared prefixes, and some exact duplicates below
    rows[30:] = rows[29]
    values = rng.integers(1, 9, size=40)
    tree = build_tree_ids(frames, rows.reshape(-1), np.full(40, 6), values)
    ref = _reference_tree(frames, [(list(r), int(v)) for r, v in zip(rows.tolist(), values.tolist())])
    for key in ("parent", "frame", "depth", "total", "self_"):
        assert getattr(tree, key).tolist() == ref[key], key
    small = trim(tree, 15)
    ref_small = _reference_trim(ref, 15)
    for key in ("parent", "frame", "depth", "total", "self_", "hidden"):
        assert getattr(small, key).tolist() == ref_small[key], key
