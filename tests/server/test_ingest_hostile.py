"""Hostile ingest (issue 15, points 5-7): gzip member bombs, huge names and labels, values the
database cannot hold. Each answer is a precise 4xx or a counted repair; never a 500 (retried for
ever by collectors) and never a worker held for minutes."""

from __future__ import annotations

import gzip
import random
import time
from typing import Any

from flask import Blueprint
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from profiler import pprof
from profiler.model import Frame, FrameKind, Sample, ValueType
from server.ingest_limits import TRUNCATED
from server.models import functions, sample_labels
from tests.server.conftest import bearer, make_app
from tests.server.helpers import cpu_profile
from tests.server.test_ingest import n_batches, post


def test_gzip_member_bomb_is_refused_at_once(app: Any, client: Any, tokens: dict[str, str]) -> None:
    """8 MiB of 419,430 empty gzip members: the old inflater copied the rest of the body once per
    member (minutes of CPU); now the member cap answers 413 after 1,024 members."""
    bomb = gzip.compress(b"", mtime=0) * 419_430
    assert len(bomb) <= 8 * 1024 * 1024
    before = n_batches(app)
    started = time.perf_counter()
    resp = post(client, tokens["ingest"], bomb)
    elapsed = time.perf_counter() - started
    assert resp.status_code == 413, resp.get_json()
    assert "more than 1024 members" in resp.get_json()["error"]
    assert elapsed < 30  # loose: the old code took minutes; the real guard is the member count above
    assert n_batches(app) == before
    # a few members are fine: `cat a.pb.gz b.pb.gz` style bodies still decode
    raw = pprof.encode(cpu_profile({"main;gz": 2}), compress=False)
    body = gzip.compress(raw[:100]) + gzip.compress(raw[100:])
    assert post(client, tokens["ingest"], body, "service=members").status_code == 200


def test_huge_names_are_cut_marked_and_counted(app: Any, client: Any, tokens: dict[str, str]) -> None:
    """A few KB of gzip can carry a many-MB function name (it was stored whole, and served whole
    in every flame graph); names are cut to MAX_FRAME_NAME_LEN with a marker and counted."""
    huge = "f" * 8_000_000
    prof = cpu_profile({"main": 1})
    prof.samples = [Sample((Frame("main", "/bin/app", FrameKind.NATIVE),
                            Frame(huge, "/lib/" + "b" * 9000, FrameKind.NATIVE, filename="s" * 9000)),
                           (3, 3 * prof.period))]
    body = pprof.encode(prof)
    assert len(body) < 64 * 1024
    resp = post(client, tokens["ingest"], body, "service=hugename")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["repaired"] == {"truncated_names": 1}
    fg = client.get('/api/v1/flamegraph?query=cpu{service="hugename"}&from=now-1h', headers=bearer(tokens["read"]))
    assert fg.status_code == 200
    assert len(fg.get_data()) < 64 * 1024  # was 8 MB and more
    assert any(name.endswith(TRUNCATED) and len(name) == 4096 for name in fg.get_json()["names"])
    with app.extensions["hotpath"].storage.engine.connect() as conn:
        stored = conn.execute(select(functions.c.name, functions.c.binary)
                              .where(functions.c.name.like("fff%"))).all()
    assert [(len(n), len(b)) for n, b in stored] == [(4096, 4096)]
    assert all(n.endswith(TRUNCATED) and b.endswith(TRUNCATED) for n, b in stored)
    assert fg.get_json().get("counters", {}).get("truncated_names") == 1
    metrics = client.get("/metrics", headers=bearer(tokens["read"])).get_data(as_text=True)
    assert 'hotpath_ingest_repairs_total{what="truncated_names"} 1.0' in metrics


def test_four_byte_label_is_stored_cut_not_500(app: Any, client: Any, tokens: dict[str, str]) -> None:
    """1,024 four-byte characters pass the 1,024-character check but make a 4 KiB btree row:
    PostgreSQL refused it (index row size 3,080 > 2,704) and ingest answered 500."""
    rng = random.Random(15)
    value = "".join(chr(rng.randrange(0x10000, 0x10FFFF)) for _ in range(1024))  # incompressible (no TOAST)
    prof = cpu_profile({"main;lab": 1, "main;other": 2}, labels={"main;lab": {"thread": value}})
    resp = post(client, tokens["ingest"], pprof.encode(prof), "service=widelabel")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["repaired"] == {"truncated_labels": 1}
    with app.extensions["hotpath"].storage.engine.connect() as conn:
        stored = conn.execute(select(sample_labels.c.value).where(sample_labels.c.name == "thread")).scalars().all()
    assert len(stored) == 1 and stored[0].endswith(TRUNCATED) and value.startswith(stored[0][:-len(TRUNCATED)])
    assert len(stored[0].encode()) <= 2048
    values = client.get("/api/v1/labels/thread/values", headers=bearer(tokens["read"])).get_json()["values"]
    assert values == stored
    top = client.get('/api/v1/top?query=cpu{service="widelabel"}', headers=bearer(tokens["read"])).get_json()
    assert top["total"] == 3 * prof.period  # nothing lost
    # the same value as a series label: within MAX_LABEL_VALUE_LEN characters, and its index keys a hash
    resp = client.post("/api/v1/ingest", query_string={"service": "widelabel", "thread": value},
                       data=pprof.encode(cpu_profile({"main;series": 1})), headers=bearer(tokens["ingest"]),
                       content_type="application/octet-stream")
    assert resp.status_code == 200, resp.get_json()


def test_long_profile_type_is_400(app: Any, client: Any, tokens: dict[str, str]) -> None:
    """A sample type over 64 characters overflowed `series.profile_type varchar(64)`: a 500 on PostgreSQL."""
    prof = cpu_profile({"main": 1})
    kind = "t" * 65
    prof.sample_types = (ValueType(kind, "count"),)
    prof.default_sample_type = kind
    prof.samples = [Sample(s.stack, s.values[:1], s.labels) for s in prof.samples]
    before = n_batches(app)
    resp = post(client, tokens["ingest"], pprof.encode(prof), "service=longtype")
    assert resp.status_code == 400, resp.get_json()
    assert "65 characters exceeds 64" in resp.get_json()["error"]
    assert n_batches(app) == before


def test_absurd_times_are_400(client: Any, tokens: dict[str, str]) -> None:
    """`from=now-99999999999999w` was a DataError on PostgreSQL and an OverflowError on SQLite (500)."""
    for params in ({"from": "now-99999999999999w"}, {"from": "now-99999999999999w", "until": "now"},
                   {"from": "0001-01-01T00:00:00Z"}, {"until": "now+99999999999999w"}):
        for path in ("/api/v1/flamegraph", "/api/v1/series", "/api/v1/labels"):
            resp = client.get(path, query_string={"query": "cpu{}", **params}, headers=bearer(tokens["read"]))
            assert resp.status_code == 400, (path, params, resp.get_json())
            assert "out of range" in resp.get_json()["error"]


def test_database_value_errors_are_400_faults_stay_500(migrated_url: str, tmp_path: Any) -> None:
    """The generic guard: a value the database refuses (SQLSTATE 22xxx, 54000) is the request's
    fault (400); a constraint violation or any other database error is still a 500."""
    app = make_app(migrated_url, str(tmp_path), AUTH=False)
    engine = app.extensions["hotpath"].storage.engine
    probe = Blueprint("probe", __name__)

    @probe.get("/probe/<what>")
    def run(what: str) -> str:
        with engine.connect() as conn:
            if what == "value":
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT CAST(:v AS smallint)"), {"v": 10**6})
                else:  # SQLite keeps any value; raise the DBAPI's DataError the same way a driver does
                    from sqlalchemy.exc import DataError
                    raise DataError("SELECT 1", {}, ValueError("value out of range"))
            else:
                conn.execute(text("INSERT INTO tokens (name, token_hash, scopes, created_at, revoked) "
                                  "VALUES ('a', 'same', 'read', 0, false)"))
                conn.execute(text("INSERT INTO tokens (name, token_hash, scopes, created_at, revoked) "
                                  "VALUES ('b', 'same', 'read', 0, false)"))
        return "unreachable"

    app.register_blueprint(probe)
    client = app.test_client()
    resp = client.get("/probe/value")
    assert resp.status_code == 400 and "out of range" in resp.get_json()["error"]
    resp = client.get("/probe/unique")
    assert resp.status_code == 500 and "IntegrityError" in resp.get_json()["error"]
    engine.dispose()
    assert IntegrityError  # the type the 500 names
