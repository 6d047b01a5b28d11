"""Hostile or huge queries (issue 15, points 1, 3, 4, 10): linear regexes, deadlines, budgets, bounded
ranges, a small dictionary cache that still answers right, series found through the label index, capped
group-by. Each test failed (or hung) on the code before these limits."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import text

from profiler import pprof
from profiler.flamejson import from_json
from server import db, deadline
from tests.server.conftest import bearer, make_app
from tests.server.helpers import cpu_profile

PERIOD = cpu_profile({}).period


def get(client: Any, tokens: dict[str, str], path: str, **params: Any) -> Any:
    return client.get(path, query_string=params, headers=bearer(tokens["read"]))


def flame_total(doc: dict[str, Any]) -> int:
    tree = from_json(doc)
    return int(sum(tree.self_[1:]))


def series_total(doc: dict[str, Any]) -> int:
    return sum(v for s in doc["series"] for _, v in s["points"])


@pytest.fixture(scope="module")
def regex_data(app: Any) -> int:
    now = int(time.time())
    app.extensions["hotpath"].storage.ingest(cpu_profile({"main;spin": 3}, at=now - 30),
                                             {"service": "regex", "l": "a" * 1024})
    return now


# Python's backtracking `re` held a worker for minutes here; pytest-timeout turns that into a failure.
@pytest.mark.timeout(60)
def test_pathological_regexes_answer_fast(client: Any, tokens: dict[str, str], regex_data: int) -> None:
    started = time.monotonic()
    fg = get(client, tokens, "/api/v1/flamegraph", query='cpu{service="regex", l=~"(a+)+b"}', **{"from": "now-5m"})
    assert fg.status_code == 200 and fg.get_json()["numTicks"] == 0
    ser = get(client, tokens, "/api/v1/series", query='cpu{l=~"(.*a){25}"}', step=60, **{"from": "now-5m"})
    assert ser.status_code == 200 and series_total(ser.get_json()) == 3 * PERIOD
    neg = get(client, tokens, "/api/v1/top", query='cpu{service="regex", l!~"(a|a)*b"}', **{"from": "now-5m"})
    assert neg.get_json()["total"] == 3 * PERIOD
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(("pattern", "named"), [("(a)\\\\1", "backreferences"), ("a(?=b)", "lookahead"),
                                                ("(?<!a)b", "lookbehind"), ("a++", "possessive")])
def test_unsupported_regex_is_400_naming_re2(client: Any, tokens: dict[str, str], pattern: str, named: str) -> None:
    resp = get(client, tokens, "/api/v1/flamegraph", query=f'cpu{{l=~"{pattern}"}}')
    assert resp.status_code == 400
    body = resp.get_json()
    assert "RE2" in body["error"] and named in body["error"] and body["reason"] == "selector"


def test_query_deadline_answers_503(migrated_url: str, tmp_path: Any, tokens: dict[str, str],
                                    regex_data: int) -> None:
    quick = make_app(migrated_url, str(tmp_path), QUERY_TIMEOUT_S=1e-6)
    try:
        c = quick.test_client()
        for path in ("/api/v1/flamegraph", "/api/v1/series", "/api/v1/top", "/api/v1/labels"):
            resp = get(c, tokens, path, query='cpu{service="regex"}')
            assert resp.status_code == 503, path
            assert resp.get_json()["reason"] == "timeout" and "QUERY_TIMEOUT_S" in resp.get_json()["error"]
        assert c.get("/healthz").status_code == 200
    finally:
        quick.extensions["hotpath"].storage.engine.dispose()


@pytest.mark.timeout(60)
def test_sql_stops_at_the_deadline(migrated_url: str) -> None:
    """The database itself stops: statement_timeout on PostgreSQL, a progress handler on SQLite."""
    engine = db.make_engine(migrated_url)
    slow = ("SELECT pg_sleep(20)" if db.is_postgres(engine) else
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000000000) "
            "SELECT count(*) FROM c")
    started = time.monotonic()
    with pytest.raises(deadline.QueryTimeout), deadline.limits(0.5, 1000), db.read(engine) as conn:
        conn.execute(text(slow)).all()
    assert time.monotonic() - started < 10
    with db.read(engine) as conn:  # outside the limits nothing is left behind on the connection
        assert conn.execute(text("SELECT 1")).scalar() == 1
    engine.dispose()


def test_small_dictionary_cache_answers_like_series(migrated_url: str, tmp_path: Any,
                                                     tokens: dict[str, str]) -> None:
    """A cache limit below a query's stacks once emptied the cache under the answer (numTicks 0)."""
    small = make_app(migrated_url, str(tmp_path), DICT_CACHE_ENTRIES=8)
    try:
        storage = small.extensions["hotpath"].storage
        now = int(time.time())
        stacks = {f"main;mid{i % 7};leaf{i}": i + 1 for i in range(60)}
        storage.ingest(cpu_profile(stacks, at=now - 20), {"service": "cache"})
        expected = sum(stacks.values()) * PERIOD
        c = small.test_client()
        q = {"query": 'cpu{service="cache"}', "from": "now-5m"}
        for _ in range(2):  # cold, then with the (small) cache filled by the first round
            assert series_total(get(c, tokens, "/api/v1/series", step=60, **q).get_json()) == expected
            fg = get(c, tokens, "/api/v1/flamegraph", max_nodes=100_000, **q).get_json()
            assert fg["numTicks"] == expected and flame_total(fg) == expected
            top = get(c, tokens, "/api/v1/top", limit=1000, **q).get_json()
            assert sum(f["self"] for f in top["functions"]) == expected
            prof = pprof.decode(get(c, tokens, "/api/v1/pprof", **q).data)
            assert sum(s.values[1] for s in prof.samples) == expected and len(prof.samples) == 60
            text_out = get(c, tokens, "/api/v1/folded", **q).get_data(as_text=True)
            assert sum(int(line.rsplit(" ", 1)[1]) for line in text_out.splitlines()) == expected
        assert len(storage.dictionary.stack_rows) <= 8 and len(storage.dictionary.function_rows) <= 8
    finally:
        small.extensions["hotpath"].storage.engine.dispose()


@pytest.fixture(scope="module")
def rolled(app: Any) -> int:
    """Data in a past, rolled-up hour: the plan then walks rollup tiers (where `from=0` exploded)."""
    storage = app.extensions["hotpath"].storage
    now = int(time.time())
    hour = now - now % 3600 - 3600
    storage.ingest(cpu_profile({"main;old;work": 4}, at=hour + 125), {"service": "ranges"}, now=now)
    storage.ingest(cpu_profile({"main;old;more": 2}, at=hour + 1900), {"service": "ranges"}, now=now)
    storage.rollup_grace_s = 0
    assert storage.rollup(now=now) > 0
    return hour


@pytest.mark.timeout(120)
@pytest.mark.parametrize("bounds", [{"from": "0"}, {"from": "0", "until": "4102444800"},
                                    {"from": "0", "until": "99999999999"}, {"until": "9999-12-31T00:00:00Z",
                                                                            "from": "1970-01-02T00:00:00Z"}])
def test_unbounded_ranges_are_clamped(client: Any, tokens: dict[str, str], rolled: int,
                                      bounds: dict[str, str]) -> None:
    q = 'cpu{service="ranges"}'
    fg = get(client, tokens, "/api/v1/flamegraph", query=q, **bounds)
    assert fg.status_code == 200 and fg.get_json()["numTicks"] == 6 * PERIOD
    top = get(client, tokens, "/api/v1/top", query=q, **bounds).get_json()
    assert top["total"] == 6 * PERIOD


@pytest.mark.parametrize("bounds", [{"from": "now-99999999999999w"}, {"until": "now+99999999999999w"},
                                    {"from": "now-" + "9" * 5000 + "s"}, {"from": "0001-01-01T00:00:00+01:00"},
                                    {"until": "1e300"}])
def test_absurd_times_are_400(client: Any, tokens: dict[str, str], bounds: dict[str, str]) -> None:
    for path in ("/api/v1/flamegraph", "/api/v1/series", "/api/v1/labels"):
        resp = get(client, tokens, path, query="cpu{}", **bounds)
        assert resp.status_code == 400, (path, resp.get_json())
        assert "range" in resp.get_json()["error"]


def test_over_budget_query_is_422(migrated_url: str, tmp_path: Any, tokens: dict[str, str], regex_data: int) -> None:
    storage_app = make_app(migrated_url, str(tmp_path), QUERY_MAX_STACKS=5)
    try:
        storage = storage_app.extensions["hotpath"].storage
        storage.ingest(cpu_profile({f"main;b{i}": 1 for i in range(20)}, at=time.time() - 10), {"service": "budget"})
        c = storage_app.test_client()
        resp = get(c, tokens, "/api/v1/flamegraph", query='cpu{service="budget"}', **{"from": "now-5m"})
        assert resp.status_code == 422
        assert resp.get_json()["reason"] == "budget" and "QUERY_MAX_STACKS" in resp.get_json()["error"]
        ok = get(c, tokens, "/api/v1/flamegraph", query='cpu{service="regex"}', **{"from": "now-5m"})
        assert ok.status_code == 200 and ok.get_json()["numTicks"] == 3 * PERIOD
    finally:
        storage_app.extensions["hotpath"].storage.engine.dispose()


def test_series_seen_hours_apart_stay_selectable(app: Any, client: Any, tokens: dict[str, str]) -> None:
    """One process storing a series every 50 minutes once left its last_seen at the first batch, and a
    query five hours later found no series (an empty answer for stored data)."""
    storage = app.extensions["hotpath"].storage
    now = int(time.time())
    base = now - 5 * 3600
    for k in range(7):
        storage.ingest(cpu_profile({"main;late": 1}, at=base + k * 3000), {"service": "lastseen"}, now=now)
    t = base + 6 * 3000
    fg = get(client, tokens, "/api/v1/flamegraph", query='cpu{service="lastseen"}', **{"from": str(t - 5),
                                                                                        "until": str(t + 5)})
    assert fg.get_json()["numTicks"] == PERIOD


@pytest.fixture(scope="module")
def fleet(app: Any) -> int:
    """150 hosts of one service (host 0 has 150 samples, host 149 one), a per-sample `pid` label on one."""
    storage = app.extensions["hotpath"].storage
    now = int(time.time())
    for h in range(150):
        labels = {"main;fleet;work": {"pid": "42"}} if h == 0 else None
        storage.ingest(cpu_profile({"main;fleet;work": 150 - h}, labels=labels, at=now - 40),
                       {"service": "fleet", "host": f"h-{h:03d}"})
    return now


def test_selection_reads_only_indexed_series(app: Any, client: Any, tokens: dict[str, str], fleet: int,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from server.storage import series_index

    loaded: list[int] = []
    original = series_index._rows

    def counting(conn: Any, query: Any) -> list[Any]:
        out = original(conn, query)
        loaded.append(len(out))
        return out

    monkeypatch.setattr(series_index, "_rows", counting)
    cases = [('cpu{service="fleet", host="h-007"}', 143, 1), ('cpu{host=~"h-00[0-4]"}', 150 + 149 + 148 + 147 + 146, 5),
             ('cpu{service="fleet", host=~"h-00[0-4]", host!="h-000"}', 149 + 148 + 147 + 146, 5),
             ('cpu{host="h-000", pid="42"}', 150, 1), ('cpu{service="fleet", pid="42"}', 150, 150)]
    for query, ticks, series_read in cases:
        loaded.clear()
        fg = get(client, tokens, "/api/v1/flamegraph", query=query, **{"from": "now-5m"}).get_json()
        assert fg["numTicks"] == ticks * PERIOD, query
        assert sum(loaded) == series_read, query  # `pid` is per-sample: it cannot narrow series


def test_group_by_is_capped_with_other(client: Any, tokens: dict[str, str], fleet: int) -> None:
    q = {"query": 'cpu{service="fleet"}', "from": "now-5m", "step": 60}
    whole = series_total(get(client, tokens, "/api/v1/series", **q).get_json())
    assert whole == sum(range(1, 151)) * PERIOD
    doc = get(client, tokens, "/api/v1/series", group_by="host", **q).get_json()
    assert doc["groups"] == {"total": 150, "shown": 100, "other": 50}
    shown = [s for s in doc["series"] if not s.get("other")]
    other = [s for s in doc["series"] if s.get("other")]
    assert len(shown) == 100 and len(other) == 1 and other[0]["groups"] == 50
    assert {s["labels"]["host"] for s in shown} == {f"h-{h:03d}" for h in range(100)}  # the largest
    assert series_total({"series": other}) == sum(range(1, 51)) * PERIOD
    assert series_total(doc) == whole
    few = get(client, tokens, "/api/v1/series", group_by="host", **{**q, "query": 'cpu{host=~"h-00[12]"}'}).get_json()
    assert few["groups"] == {"total": 2, "shown": 2, "other": 0} and len(few["series"]) == 2


def test_write_cache_emptied_between_plan_and_fill(migrated_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bounded cache emptied by another request between `plan` and `fill` once made `fill` raise
    KeyError (a 500 for the batch); the hashes it lost are read back from the table."""
    from server.storage import Storage
    from server.storage.dictionary import Dictionary, stack_hash

    storage = Storage(db.make_engine(migrated_url), cache_entries=4)
    now = time.time()
    storage.ingest(cpu_profile({"main;kf;a": 1}, at=now - 5), {"service": "kf"})
    original = Dictionary.fill

    def emptied_first(self: Dictionary, conn: Any, a: Any, stacks_in: Any) -> None:
        self.function_hashes.clear()  # what a concurrent `committed` over the limit does
        original(self, conn, a, stacks_in)

    monkeypatch.setattr(Dictionary, "fill", emptied_first)
    stored = storage.ingest(cpu_profile({"main;kf;b": 2, "main;kf": 1}, at=now - 4), {"service": "kf"})
    assert stored.status == "stored"
    with db.read(storage.engine) as conn:
        rows = conn.execute(text("SELECT hash, function_ids FROM stacks")).all()
        fhash = dict(conn.execute(text("SELECT id, hash FROM functions")).all())
    from server.storage.dictionary import unpack_function_ids

    for h, packed in rows:  # every stack's content hash is the one its functions give
        assert bytes(h) == stack_hash(bytes(fhash[f]) for f in unpack_function_ids(bytes(packed)))
    storage.engine.dispose()
