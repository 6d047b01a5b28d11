"""Query API: selectors, label filters, time ranges, flame graph + drill-down, diff, wall-clock, top, series."""

from __future__ import annotations

import time
from typing import Any

import pytest

from profiler.flamejson import from_json
from tests.server.conftest import bearer
from tests.server.helpers import cpu_profile, offcpu_profile

NOW = T_OLD = 0  # set by the `loaded` fixture: modules are imported long before they run
PERIOD = cpu_profile({}).period


@pytest.fixture(scope="module")
def loaded(app: Any) -> Any:
    global NOW, T_OLD
    NOW = int(time.time())
    T_OLD = NOW - 1800  # a batch 30 minutes ago
    storage = app.extensions["hotpath"].storage
    lab = {"main;api;handle": {"pid": "10", "process": "api"}, "main;api;gc": {"pid": "11", "process": "java"}}
    storage.ingest(cpu_profile({"main;api;handle": 6, "main;api;gc": 4}, labels=lab, at=NOW - 60),
                   {"service": "api", "host": "web-1"})
    storage.ingest(cpu_profile({"main;api;handle": 2}, at=NOW - 50), {"service": "api", "host": "web-2"})
    storage.ingest(cpu_profile({"main;db;scan": 5}, at=NOW - 40), {"service": "db", "host": "db-1"})
    storage.ingest(cpu_profile({"main;api;old": 9}, at=T_OLD), {"service": "api", "host": "web-1"})
    storage.ingest(offcpu_profile({"main;api;handle;read": 3_000_000}, at=NOW - 60), {"service": "api", "host": "web-1"})
    return storage


def get(client: Any, tokens: dict[str, str], path: str, **params: Any) -> Any:
    return client.get(path, query_string=params, headers=bearer(tokens["read"]))


def leaves(doc: dict[str, Any]) -> dict[str, int]:
    """Function path -> total, from the wire format via the core's decoder."""
    tree = from_json(doc)
    out = {}
    for node in range(1, len(tree)):
        if tree.self_[node]:
            out[";".join(f.function for f in tree.path(node))] = int(tree.self_[node])
    return out


def test_selectors_and_ranges(client: Any, tokens: dict[str, str], loaded: Any) -> None:
    fg = get(client, tokens, "/api/v1/flamegraph", query='cpu{service="api"}', **{"from": "now-5m"}).get_json()
    assert fg["numTicks"] == 12 * PERIOD and fg["type"] == "cpu" and fg["unit"] == "nanoseconds"
    assert fg["period"] == PERIOD
    assert leaves(fg) == {"main;api;handle": 8 * PERIOD, "main;api;gc": 4 * PERIOD}
    fg = get(client, tokens, "/api/v1/flamegraph", query='cpu{service="api", process!="java"}',
             **{"from": "now-5m"}).get_json()
    assert leaves(fg) == {"main;api;handle": 8 * PERIOD}
    fg = get(client, tokens, "/api/v1/flamegraph", query='cpu{host=~"web-.*"}', **{"from": "now-1h"}).get_json()
    assert fg["numTicks"] == 21 * PERIOD  # includes the 30-minute-old batch
    fg = get(client, tokens, "/api/v1/flamegraph", query='cpu{host!~"web-.*"}', **{"from": "now-1h"}).get_json()
    assert leaves(fg) == {"main;db;scan": 5 * PERIOD}
    # explicit RFC 3339 and unix-second ranges pick only the old batch
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T_OLD - 5))
    fg = get(client, tokens, "/api/v1/flamegraph", query="cpu{}", **{"from": iso, "until": str(T_OLD + 5)}).get_json()
    assert leaves(fg) == {"main;api;old": 9 * PERIOD}
    empty = get(client, tokens, "/api/v1/flamegraph", query='cpu{service="nope"}').get_json()
    assert empty["numTicks"] == 0


@pytest.mark.parametrize(("query", "position"), [('cpu{service="api"', 17), ("cpu{service=api}", 12),
                                                 ('cpu{service=~"("}', 13)])
def test_malformed_selector_is_400_with_position(client: Any, tokens: dict[str, str], query: str,
                                                 position: int) -> None:
    resp = get(client, tokens, "/api/v1/flamegraph", query=query)
    assert resp.status_code == 400
    # The 0-based position of the mistake, so the UI can point at it (not just the word "position").
    assert f"at position {position}" in resp.get_json()["error"]


def test_bad_params(client: Any, tokens: dict[str, str], loaded: Any) -> None:
    for params in ({"from": "yesterday"}, {"from": "now", "until": "now-1h"}, {"max_nodes": "0"},
                   {"max_nodes": "abc"}, {"prefix": "not json"}, {"max_nodes": "999999999"}):
        resp = get(client, tokens, "/api/v1/flamegraph", query="cpu{}", **params)
        assert resp.status_code == 400, params
        assert resp.get_json()["error"]


def test_max_nodes_and_drill_into_other(client: Any, tokens: dict[str, str], app: Any, loaded: Any) -> None:
    storage = app.extensions["hotpath"].storage
    stacks = {f"main;wide;leaf{i:03d}": 100 - i for i in range(60)}
    storage.ingest(cpu_profile(stacks, at=NOW - 30), {"service": "wide"})
    fg = get(client, tokens, "/api/v1/flamegraph", query='cpu{service="wide"}', max_nodes=10).get_json()
    assert sum(len(level) // 4 for level in fg["levels"]) <= 10
    assert fg["numTicks"] == sum(stacks.values()) * PERIOD
    assert fg["others"], "a collapsed node must be described"
    other = fg["others"][0]
    assert other["path"] == ["main", "wide"] and other["hidden_total"] > 0
    drill = get(client, tokens, "/api/v1/flamegraph", query='cpu{service="wide"}', max_nodes=100,
                prefix='["main", "wide"]').get_json()
    assert len(leaves(drill)) == 60 and drill["prefix"] == ["main", "wide"]
    none = get(client, tokens, "/api/v1/flamegraph", query='cpu{service="wide"}', prefix='["nope"]').get_json()
    assert none["numTicks"] == 0


def test_diff_wallclock_top_series_labels(client: Any, tokens: dict[str, str], loaded: Any) -> None:
    d = get(client, tokens, "/api/v1/diff", left='cpu{host="web-1"}', right='cpu{host="web-2"}',
            **{"from": "now-5m"}).get_json()
    assert d["format"] == "diff" and d["leftTicks"] == 10 * PERIOD and d["rightTicks"] == 2 * PERIOD
    d2 = get(client, tokens, "/api/v1/diff", left='cpu{service="api"}', right='cpu{service="api"}',
             left_from=str(T_OLD - 5), left_until=str(T_OLD + 5), right_from="now-5m").get_json()
    assert d2["leftTicks"] == 9 * PERIOD and d2["rightTicks"] == 12 * PERIOD
    w = get(client, tokens, "/api/v1/wallclock", query='{service="api", host="web-1"}', **{"from": "now-5m"}).get_json()
    assert w["format"] == "wall" and w["leftTicks"] == 10 * PERIOD and w["rightTicks"] == 3_000_000
    top = get(client, tokens, "/api/v1/top", query='cpu{service="api"}', **{"from": "now-5m"}).get_json()
    rows = {f["name"]: f for f in top["functions"]}
    assert top["total"] == 12 * PERIOD
    assert rows["handle"]["self"] == 8 * PERIOD and rows["main"]["total"] == 12 * PERIOD
    assert rows["main"]["self"] == 0 and rows["handle"]["binary"] == "/usr/bin/app"
    ser = get(client, tokens, "/api/v1/series", query='cpu{service="api"}', step=60, group_by="host",
              **{"from": "now-2h"}).get_json()
    by_host = {s["labels"]["host"]: sum(v for _, v in s["points"]) for s in ser["series"]}
    assert by_host == {"web-1": 19 * PERIOD, "web-2": 2 * PERIOD}
    ser = get(client, tokens, "/api/v1/series", query='cpu{service="api", process="java"}', step=60,
              **{"from": "now-2h"}).get_json()
    assert sum(v for _, v in ser["series"][0]["points"]) == 4 * PERIOD
    names = get(client, tokens, "/api/v1/labels").get_json()["labels"]
    assert {"service", "host", "pid", "process"} <= set(names)
    values = get(client, tokens, "/api/v1/labels/service/values").get_json()["values"]
    assert {"api", "db"} <= set(values)
    values = get(client, tokens, "/api/v1/labels/host/values", query='cpu{service="db"}').get_json()["values"]
    assert values == ["db-1"]
    types = {t["name"] for t in get(client, tokens, "/api/v1/profile-types").get_json()["types"]}
    assert {"cpu", "offcpu"} <= types


def test_health_and_metrics(client: Any, tokens: dict[str, str], loaded: Any) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json()["status"] == "ready"
    get(client, tokens, "/api/v1/flamegraph", query="cpu{}")
    text = get(client, tokens, "/metrics").get_data(as_text=True)
    assert 'hotpath_query_seconds_count{endpoint="flamegraph"}' in text
    assert "hotpath_db_pool_checked_out" in text
    resp = client.get("/healthz", headers={"X-Request-Id": "abc123"})
    assert resp.headers["X-Request-Id"] == "abc123"
    assert len(client.get("/healthz").headers["X-Request-Id"]) == 16
