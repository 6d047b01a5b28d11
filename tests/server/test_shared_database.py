"""Several servers on one database (the scale-out story) must agree (issue 15, point 9).

Server B (short retention) drops a day partition that server A still has cached as existing; a late
batch for that day reaching A answered 500 (IntegrityError: no partition of relation "batches"
found for row). A now re-reads the catalog, re-creates the day and stores the batch.
"""

from __future__ import annotations

import time
from typing import Any

from profiler import pprof
from server.storage.partitions import day_name
from tests.server.conftest import bearer, make_app
from tests.server.helpers import cpu_profile


def test_day_dropped_by_another_server_is_recreated(migrated_url: str, tmp_path: Any) -> None:
    from server.auth import create_token

    a = make_app(migrated_url, str(tmp_path / "a"), RETENTION_DAYS=30)
    b = make_app(migrated_url, str(tmp_path / "b"), RETENTION_DAYS=2)
    try:
        store_a = a.extensions["hotpath"].storage
        store_b = b.extensions["hotpath"].storage
        token = create_token(store_a.engine, ["ingest", "read"], "shared-db")
        now = int(time.time())
        old = now - 5 * 86400
        client = a.test_client()

        def send(stack: str, count: int) -> Any:
            body = pprof.encode(cpu_profile({stack: count}, at=old))
            return client.post("/api/v1/ingest?service=shared", data=body, headers=bearer(token),
                               content_type="application/octet-stream")

        assert send("main;first", 2).status_code == 200  # A now caches the day as existing
        dropped = store_b.maintain(now=now)["dropped"]
        day = old - old % 86400
        if store_a.partitions.enabled:
            assert day_name("batches", day) in dropped, dropped
        else:
            assert dropped  # SQLite: B's retention deleted the rows
        resp = send("main;second", 3)
        assert resp.status_code == 200, resp.get_json()
        assert resp.get_json()["status"] == "stored"
        top = client.get("/api/v1/top", query_string={"query": 'cpu{service="shared"}', "from": str(day),
                                                      "until": str(day + 86400)}, headers=bearer(token)).get_json()
        period = cpu_profile({}).period
        assert top["total"] == 3 * period  # the late batch is stored; the first went with B's retention
        # and again: B drops the re-created day, A's next late batch still lands
        store_b.maintain(now=now)
        assert send("main;third", 4).status_code == 200
    finally:
        a.extensions["hotpath"].storage.engine.dispose()
        b.extensions["hotpath"].storage.engine.dispose()
