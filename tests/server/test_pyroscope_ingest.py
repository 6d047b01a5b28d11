"""Pyroscope's legacy `POST /ingest?name=app.cpu{k=v}`: folded, lines, pprof raw and multipart (with
`sample_type_config`), totals checked against the input and against `go tool pprof -raw`."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.profiler.go_profile import build_go_profile, go_pprof
from tests.server.conftest import bearer
from tests.server.protocol_helpers import gzip_bomb, n_batches, pprof_raw_totals, self_by_function, top


def ingest(client: Any, token: str, query: str, body: bytes | str, **kw: Any) -> Any:
    return client.post(f"/ingest?{query}", data=body, headers=bearer(token), **kw)


@pytest.fixture(scope="module")
def go_profile(go_bin: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    tmp = tmp_path_factory.mktemp("go")
    return go_bin, tmp, build_go_profile(go_bin, tmp)


def test_folded_with_labels_rate_and_window(client: Any, tokens: dict[str, str]) -> None:
    now = int(time.time())
    resp = ingest(client, tokens["ingest"], f"name=legacy.cpu{{env=prod,zone=b}}&from={now - 10}&until={now}"
                  "&sampleRate=100&spyName=pyspy&units=samples&aggregationType=sum", "main;work 30\nmain;idle 10\n")
    assert resp.status_code == 200, resp.data
    got = top(client, tokens["read"], 'cpu{service="legacy", env="prod", zone="b"}')
    assert got["total"] == 40 * 10_000_000
    assert self_by_function(client, tokens["read"], 'cpu{service="legacy"}') == {"work": 300_000_000,
                                                                                "idle": 100_000_000}


def test_lines_format_counts_each_line(client: Any, tokens: dict[str, str]) -> None:
    body = "main;a\nmain;a\nmain;b\n\nmain;a\n"
    assert ingest(client, tokens["ingest"], "name=lines.cpu&format=lines&sampleRate=50", body).status_code == 200
    assert self_by_function(client, tokens["read"], 'cpu{service="lines"}') == {"a": 3 * 20_000_000,
                                                                               "b": 20_000_000}


def test_non_cpu_folded_keeps_its_type_and_unit(client: Any, tokens: dict[str, str]) -> None:
    resp = ingest(client, tokens["ingest"], "name=heapy.inuse_space&units=bytes", "main;alloc 4096\n")
    assert resp.status_code == 200, resp.data
    got = top(client, tokens["read"], 'memory:inuse_space{service="heapy"}')
    assert got["total"] == 4096 and got["unit"] == "bytes"


def test_pprof_raw_and_multipart_equal_go_tool_pprof(client: Any, tokens: dict[str, str],
                                                     go_profile: tuple[str, Path, Path]) -> None:
    go, tmp, path = go_profile
    types, totals, names = pprof_raw_totals(go_pprof(go, tmp, "-raw", str(path)))
    assert types == ["samples/count", "cpu/nanoseconds"] and totals[1] > 0
    data = path.read_bytes()
    resp = ingest(client, tokens["ingest"], "name=gopprof&format=pprof", data,
                  content_type="application/octet-stream")
    assert resp.status_code == 200, resp.data
    raw = top(client, tokens["read"], 'cpu{service="gopprof"}')
    assert raw["total"] == totals[1]
    assert {f["name"] for f in raw["functions"]} == names
    config = json.dumps({"cpu": {"units": "nanoseconds", "aggregation": "sum", "display-name": "cpu",
                                 "sampled": True}})
    resp = client.post(f"/ingest?name=gomulti.cpu&from={int(time.time())}", headers=bearer(tokens["ingest"]),
                       data={"profile": (path.open("rb"), "profile.pprof"),
                             "sample_type_config": (io.BytesIO(config.encode()), "config.json")},
                       content_type="multipart/form-data")
    assert resp.status_code == 200, resp.data
    multi = top(client, tokens["read"], 'cpu{service="gomulti"}')
    assert multi["total"] == totals[1]
    assert {f["name"] for f in multi["functions"]} == names


def test_bad_input_is_a_clear_4xx_and_stores_nothing(app: Any, client: Any, tokens: dict[str, str]) -> None:
    tok = tokens["ingest"]
    before = n_batches(app)

    def refused(status: int, words: str, query: str, body: bytes | str = "a;b 1\n", **kw: Any) -> None:
        resp = client.post(f"/ingest?{query}", data=body, **{"headers": bearer(tok), **kw})
        assert resp.status_code == status, (query, resp.data)
        assert words in resp.get_json()["error"], resp.get_json()

    refused(401, "authentication required", "name=x.cpu", headers={})
    refused(403, "`ingest` scope", "name=x.cpu", headers=bearer(tokens["read"]))
    refused(415, "JFR", "name=x.cpu&format=jfr")
    refused(415, "trie", "name=x.cpu&format=trie")
    refused(400, "expected folded, lines or pprof", "name=x.cpu&format=speedscope")
    refused(400, "`name` is required", "format=folded")
    refused(400, "enclosed", "name=x.cpu{a=b")
    refused(400, "key=value", "name=x.cpu{a}")
    refused(400, "label name", "name=x.cpu{bad-key=1}")
    refused(400, "not an integer", "name=x.cpu&from=yesterday")
    refused(400, "sample_rate", "name=x.cpu&sampleRate=0")
    refused(400, "units", "name=x.cpu&units=parsecs")
    refused(400, "no usable", "name=x.cpu", "no count here\n")
    refused(400, "not valid UTF-8", "name=x.cpu", b"a;\xff 1\n")
    refused(400, "not a valid pprof", "name=x.cpu&format=pprof", b"\x0a\x09garbage")
    refused(413, "decompressed", "name=x.cpu", gzip_bomb(), headers={**bearer(tok), "Content-Encoding": "gzip"})
    refused(413, "exceeds the limit", "name=x.cpu", b"a" * (9 << 20))
    many = "{" + ",".join(f"k{i}=v" for i in range(100_000)) + "}"
    refused(413, "series labels exceed", "name=x.cpu" + many)
    refused(400, "no `profile` part", "name=x.cpu&format=pprof", {"other": "1"}, content_type="multipart/form-data")
    refused(400, "sample_type_config", "name=x.cpu", {"profile": (io.BytesIO(b"x"), "p"),
                                                       "sample_type_config": "[1]"},
            content_type="multipart/form-data")
    assert n_batches(app) == before
    assert client.get("/healthz").status_code == 200
