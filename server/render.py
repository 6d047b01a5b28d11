"""Turning a storage `Selection` into the wire formats, through the profile core.

The server never re-implements core logic: trees, trimming, diffs, top tables, pprof and folded
output all come from `profiler.*`; this module only feeds them and adds the series' metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from profiler.model import Profile, Sample
from profiler.types import CPU, CPU_NANOS
from server.storage import Selection, Storage


def selection_profile(storage: Storage, sel: Selection, t0: int = 0, t1: int = 0) -> Profile:
    """The merged selection as a `Profile` with every value column (for pprof and folded output)."""
    frames = storage.resolve(sel.stack_ids.tolist())
    samples = [Sample(frames[s], tuple(v)) for s, v in zip(sel.stack_ids.tolist(), sel.values.tolist())
               if s in frames]
    main = sel.sample_types[sel.main] if sel.sample_types else None
    return Profile(
        sample_types=tuple(sel.sample_types),
        samples=samples,
        period_type=CPU_NANOS if sel.profile_type == CPU else None,
        period=sel.period if sel.profile_type == CPU else 0,
        time_nanos=t0 * 1_000_000_000,
        duration_nanos=max(t1 - t0, 0) * 1_000_000_000,
        default_sample_type=main.type if main else "",
        counters=dict(sel.counters),
    )


def flame_json(storage: Storage, sel: Selection, max_nodes: int, prefix: Sequence[str] | None) -> dict[str, Any]:
    from profiler import flamegraph

    tree = flamegraph.trim(storage.tree(sel, prefix), max_nodes)
    out = flamegraph.to_json(tree, type_name=sel.profile_type, unit=sel.unit or "nanoseconds",
                             period=int(sel.period), counters=sel.counters)
    out["aggregation"] = sel.aggregation
    if prefix:
        out["prefix"] = list(prefix)
    return out


def diff_json(storage: Storage, left: Selection, right: Selection, max_nodes: int,
              prefix: Sequence[str] | None, fmt: str = "diff") -> dict[str, Any]:
    from profiler import flamegraph

    diff = flamegraph.diff_trees(storage.tree(left, prefix), storage.tree(right, prefix))
    counters = {k: left.counters.get(k, 0) + right.counters.get(k, 0) for k in set(left.counters) | set(right.counters)}
    out = flamegraph.diff_to_json(flamegraph.trim_diff(diff, max_nodes), type_name=left.profile_type,
                                  unit=left.unit or right.unit or "nanoseconds", left_period=int(left.period),
                                  right_period=int(right.period), counters=counters, format=fmt)
    if prefix:
        out["prefix"] = list(prefix)
    return out


def top_json(storage: Storage, sel: Selection, limit: int) -> dict[str, Any]:
    from profiler import flamegraph

    every = flamegraph.top_functions(storage.tree(sel))
    functions = [{"name": r.name, "binary": r.binary, "kind": getattr(r.kind, "value", r.kind),
                  "self": int(r.self), "total": int(r.total)} for r in every[:limit]]
    total = int(sel.values[:, sel.main].sum()) if sel.values.size else 0
    # `count`: how many functions there are in all, so a client can say when `limit` cut the list.
    return {"type": sel.profile_type, "unit": sel.unit or "nanoseconds", "aggregation": sel.aggregation,
            "total": total, "count": len(every), "functions": functions}
