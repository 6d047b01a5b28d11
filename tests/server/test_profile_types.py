"""Every sample type of a pprof is its own profile type; gauges average over a range, counters add up.

Synthetic heap snapshots through Storage (raw batches and rollups), and the HTTP API's answers:
`/api/v1/profile-types`, top, flame graph and series agreeing on the average.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import func, select

from profiler import pprof
from profiler.model import Profile, Sample, ValueType
from profiler.selector import parse_selector
from server import db
from server.models import batches, stacks
from server.storage import Storage
from tests.server.conftest import bearer
from tests.server.helpers import frame

HEAP_TYPES = (ValueType("alloc_objects", "count"), ValueType("alloc_space", "bytes"),
              ValueType("inuse_objects", "count"), ValueType("inuse_space", "bytes"))
MIB = 1 << 20


def heap_snapshot(at: int, live: dict[str, int], allocated: dict[str, int]) -> Profile:
    """A Go-shaped heap profile: per stack (alloc_objects, alloc_space, inuse_objects, inuse_space)."""
    prof = Profile(sample_types=HEAP_TYPES, period_type=ValueType("space", "bytes"), period=512 * 1024,
                   time_nanos=at * 1_000_000_000)
    for key in sorted(set(live) | set(allocated)):
        stack = tuple(frame(n) for n in key.split(";"))
        alloc, inuse = allocated.get(key, 0), live.get(key, 0)
        prof.samples.append(Sample(stack, (alloc // 1024, alloc, inuse // 1024, inuse)))
    return prof


@pytest.fixture(scope="module")
def storage(migrated_url: str) -> Any:
    engine = db.make_engine(migrated_url)
    yield Storage(engine, retention_days=30, rollup_grace_s=0)
    engine.dispose()


def total(storage: Storage, query: str, t0: int, t1: int) -> tuple[int, str]:
    sel = storage.select(parse_selector(query), t0, t1, all_columns=False)
    return (int(sel.values[:, sel.main].sum()) if sel.values.size else 0), sel.aggregation


def test_heap_gauges_average_and_counters_add_through_rollups(storage: Storage) -> None:
    start = int(time.time()) - 4 * 3600
    start -= start % 3600
    # 3 hosts x 12 snapshots, 10 s apart: host h holds (h+1)*64 MiB under main;hold, allocates 1 MiB per snapshot.
    for h in range(3):
        for i in range(12):
            snap = heap_snapshot(start + 10 * i, {"main;hold": (h + 1) * 64 * MIB, "main;tmp": 4096 * (i % 2)},
                                 {"main;churn": MIB})
            assert storage.ingest(snap, {"service": "gauge", "host": f"h{h}"}).status == "stored"
    with storage.engine.connect() as conn:
        n_stacks = conn.execute(select(func.count()).select_from(stacks)).scalar()
        n_rows = conn.execute(select(func.count()).select_from(batches)).scalar()
    t0, t1 = start, start + 120
    live, agg = total(storage, 'memory:inuse_space{service="gauge"}', t0, t1)
    assert agg == "average"
    assert live == (1 + 2 + 3) * 64 * MIB + 3 * 2048  # each host's mean, added across hosts
    assert total(storage, 'memory:inuse_space{host="h1"}', t0, t1) == (128 * MIB + 2048, "average")
    assert total(storage, 'memory:alloc_space{service="gauge"}', t0, t1) == (36 * MIB, "sum")
    assert total(storage, 'memory{service="gauge"}', t0, t1)[0] == live  # the bare name reads inuse_space
    # rolled up into minutes (and the hour), the answer stays the same
    assert storage.rollup(now=start + 7200) > 0
    assert total(storage, 'memory:inuse_space{service="gauge"}', t0, start + 3600) == (live, "average")
    assert total(storage, 'memory:alloc_space{service="gauge"}', t0, start + 3600) == (36 * MIB, "sum")
    # one row per profile, whatever its number of sample types
    with storage.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(batches)).scalar() == n_rows
        assert conn.execute(select(func.count()).select_from(stacks)).scalar() == n_stacks
    tl = storage.timeline(parse_selector('memory:inuse_space{service="gauge"}'), t0, t1, 60)
    assert tl.aggregation == "average" and tl.unit == "bytes"
    assert [v for _ts, v in tl.series[0]["points"]] == [live, live]
    by_host = storage.timeline(parse_selector('memory:inuse_space{service="gauge"}'), t0, t1, 120, "host")
    assert {s["labels"]["host"]: s["points"][0][1] for s in by_host.series} == {
        f"h{h}": (h + 1) * 64 * MIB + 2048 for h in range(3)}
    alloc = storage.timeline(parse_selector('memory:alloc_space{service="gauge"}'), t0, t1, 60)
    assert alloc.aggregation == "sum" and [v for _ts, v in alloc.series[0]["points"]] == [18 * MIB, 18 * MIB]


def test_http_profile_types_and_agreeing_answers(client: Any, tokens: dict[str, str]) -> None:
    at = int(time.time()) - 300
    for i in range(4):
        body = pprof.encode(heap_snapshot(at + 10 * i, {"main;hold": 64 * MIB}, {"main;churn": MIB}), compress=True)
        resp = client.post("/api/v1/ingest?service=httpgauge", data=body, headers=bearer(tokens["ingest"]),
                           content_type="application/octet-stream")
        assert resp.status_code == 200, resp.get_json()
    types = client.get("/api/v1/profile-types", headers=bearer(tokens["read"])).get_json()["types"]
    by_name = {t["name"]: t for t in types}
    assert by_name["memory:inuse_space"] == {"name": "memory:inuse_space", "sample_type": "inuse_space",
                                             "unit": "bytes", "aggregation": "average"}
    assert by_name["memory:alloc_objects"]["aggregation"] == "sum" and by_name["memory:alloc_objects"]["unit"] == "count"
    assert by_name["cpu"] == {"name": "cpu", "sample_type": "cpu", "unit": "nanoseconds", "aggregation": "sum"}
    window = {"from": str(at - 60), "until": str(at + 60)}
    q = {"query": 'memory:inuse_space{service="httpgauge"}', **window}
    top = client.get("/api/v1/top", query_string=q, headers=bearer(tokens["read"])).get_json()
    assert top["total"] == 64 * MIB and top["aggregation"] == "average" and top["unit"] == "bytes"
    fg = client.get("/api/v1/flamegraph", query_string=q, headers=bearer(tokens["read"])).get_json()
    assert fg["numTicks"] == 64 * MIB and fg["aggregation"] == "average"
    ser = client.get("/api/v1/series", query_string={**q, "step": "120"}, headers=bearer(tokens["read"])).get_json()
    assert ser["aggregation"] == "average" and ser["unit"] == "bytes"
    assert [v for _ts, v in ser["series"][0]["points"] if v] == [64 * MIB]
    q["query"] = 'memory:alloc_space{service="httpgauge"}'
    top = client.get("/api/v1/top", query_string=q, headers=bearer(tokens["read"])).get_json()
    assert top["total"] == 4 * MIB and top["aggregation"] == "sum"
    bad = client.post("/api/v1/ingest?type=Bad-Name", data=body, headers=bearer(tokens["ingest"]),
                      content_type="application/octet-stream")
    assert bad.status_code == 400 and "profile name" in bad.get_json()["error"]
    wrong = client.post("/api/v1/ingest?type=cpu", data=body, headers=bearer(tokens["ingest"]),
                        content_type="application/octet-stream")
    assert wrong.status_code == 400
