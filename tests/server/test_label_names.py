"""One rule for label names (profiler/selector.LABEL_NAME_CHARS): what /api/v1/ingest stores, the
selector and the label APIs accept -- dotted OpenTelemetry-style names included -- and what ingest
refuses, they refuse too. On both databases."""

from __future__ import annotations

from typing import Any

from profiler import pprof
from profiler.selector import LABEL_NAME
from server.ingest_limits import LABEL_NAME as INGEST_LABEL_NAME
from tests.server.conftest import bearer
from tests.server.helpers import cpu_profile

RANGE = {"from": "now-1h", "until": "now+5m"}


def _self(client: Any, token: str, query: str) -> dict[str, int]:
    resp = client.get("/api/v1/top", query_string={"query": query, **RANGE}, headers=bearer(token))
    assert resp.status_code == 200, resp.get_json()
    # in samples (cpu self time is nanoseconds at 19 Hz)
    return {f["name"]: round(f["self"] * 19 / 1e9) for f in resp.get_json()["functions"] if f["self"]}


def test_dotted_names_stored_by_native_ingest_are_queryable(client: Any, tokens: dict[str, str]) -> None:
    prof = cpu_profile({"main;hot": 5, "main;cold": 2},
                       labels={"main;hot": {"thread.name": "worker-1"}, "main;cold": {"thread.name": "io"}})
    resp = client.post("/api/v1/ingest?service=dots&k8s.namespace.name=prod", data=pprof.encode(prof),
                       headers=bearer(tokens["ingest"]), content_type="application/octet-stream")
    assert resp.status_code == 200, resp.get_json()
    read = tokens["read"]
    assert _self(client, read, 'cpu{service="dots", k8s.namespace.name="prod"}') == {"hot": 5, "cold": 2}
    assert _self(client, read, 'cpu{service="dots", k8s.namespace.name="dev"}') == {}
    assert _self(client, read, 'cpu{service="dots", thread.name=~"work.*"}') == {"hot": 5}
    assert _self(client, read, 'cpu{service="dots", thread.name!="worker-1"}') == {"cold": 2}
    names = client.get("/api/v1/labels", query_string=RANGE, headers=bearer(read)).get_json()["labels"]
    assert {"k8s.namespace.name", "thread.name"} <= set(names)
    values = client.get("/api/v1/labels/k8s.namespace.name/values", query_string=RANGE, headers=bearer(read))
    assert values.status_code == 200 and values.get_json()["values"] == ["prod"]


def test_names_ingest_refuses_are_refused_everywhere(client: Any, tokens: dict[str, str]) -> None:
    for name in (".lead", "9lives", "a-b", "a b"):
        assert not LABEL_NAME.fullmatch(name) and not INGEST_LABEL_NAME.match(name)
        resp = client.post("/api/v1/ingest", query_string={"service": "dots", name: "x"},
                           data=pprof.encode(cpu_profile({"main;x": 1})), headers=bearer(tokens["ingest"]),
                           content_type="application/octet-stream")
        assert resp.status_code == 400 and "label name" in resp.get_json()["error"], resp.get_json()
        top = client.get("/api/v1/top", query_string={"query": f'cpu{{{name}="x"}}', **RANGE},
                         headers=bearer(tokens["read"]))
        assert top.status_code == 400, top.get_json()
        values = client.get(f"/api/v1/labels/{name}/values", query_string=RANGE, headers=bearer(tokens["read"]))
        assert values.status_code in (400, 404), values.status_code
    for name in ("k8s.namespace.name", "_x", "a.b_c9"):
        assert LABEL_NAME.fullmatch(name) and INGEST_LABEL_NAME.match(name)
