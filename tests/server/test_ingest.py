"""Ingest over HTTP: pprof and folded, idempotency, and every kind of bad input (clear 4xx, nothing stored)."""

from __future__ import annotations

import gzip
import io
import os
import threading
import zlib
from typing import Any

import pytest
from sqlalchemy import func, select

from profiler import pprof
from profiler.model import Sample
from server.api.common import ApiError
from server.config import DEFAULTS
from server.ingest_limits import gunzip_body, read_body
from server.models import batches
from tests.pprof_raw import raw_profile
from tests.server.conftest import bearer
from tests.server.helpers import cpu_profile, frame


@pytest.fixture(scope="session")
def gzip_bomb() -> bytes:
    """~1 MiB of gzip that inflates to 1 GiB of zeros."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    parts = [comp.compress(chunk) for _ in range(1024)]
    parts.append(comp.flush())
    return b"".join(parts)


def n_batches(app: Any) -> int:
    with app.extensions["hotpath"].storage.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(batches)).scalar() or 0)


def post(client: Any, token: str, body: bytes, query: str = "service=t", **headers: str) -> Any:
    return client.post(f"/api/v1/ingest?{query}", data=body, headers={**bearer(token), **headers},
                       content_type=headers.pop("content_type", "application/octet-stream"))


def test_ingest_pprof_and_duplicate(client: Any, tokens: dict[str, str]) -> None:
    body = pprof.encode(cpu_profile({"main;work": 4}), compress=True)
    resp = post(client, tokens["ingest"], body, "service=ing&host=a", **{"Idempotency-Key": "k-1"})
    assert resp.status_code == 200, resp.get_json()
    got = resp.get_json()
    assert got["status"] == "stored" and got["samples"] == 1 and isinstance(got["id"], int)
    again = post(client, tokens["ingest"], body, "service=ing&host=a", **{"Idempotency-Key": "k-1"})
    assert again.get_json() == {"status": "duplicate"}
    raw = post(client, tokens["ingest"], pprof.encode(cpu_profile({"main;raw": 1}), compress=False), "service=ing")
    assert raw.status_code == 200


def test_empty_profile_is_stored_with_its_counters(client: Any, tokens: dict[str, str]) -> None:
    """A quiet interval (no samples, maybe only counters) is data too: stored, not a 500."""
    prof = cpu_profile({})
    prof.counters["missed_stacks"] = 3
    resp = post(client, tokens["ingest"], pprof.encode(prof), "service=quiet", **{"Idempotency-Key": "empty-1"})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["status"] == "stored" and resp.get_json()["samples"] == 0


def test_ingest_folded(client: Any, tokens: dict[str, str]) -> None:
    resp = client.post("/api/v1/ingest?service=folded&type=cpu&sample_rate=100", data="main;a;b 3\nmain;c 2\n",
                       headers=bearer(tokens["ingest"]), content_type="text/plain")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["samples"] == 2
    top = client.get('/api/v1/top?query=cpu{service="folded"}', headers=bearer(tokens["read"])).get_json()
    assert top["total"] == 5 * 10_000_000  # 5 samples at 100 Hz
    bad = client.post("/api/v1/ingest?service=folded&type=cpu&sample_rate=0", data="a 1\n",
                      headers=bearer(tokens["ingest"]), content_type="text/plain")
    assert bad.status_code == 400 and "sample_rate" in bad.get_json()["error"]
    bad = client.post("/api/v1/ingest?service=folded", data="no numbers here\n",
                      headers=bearer(tokens["ingest"]), content_type="text/plain")
    assert bad.status_code == 400
    for text in ("main 9223372036854775808\n", "main 4611686018427387904\nmain 4611686018427387904\n",
                 "main 9223372036854775\n"):  # over int64: the count, a stack's sum, count x period (ns)
        bad = client.post("/api/v1/ingest?service=folded&type=cpu&sample_rate=100", data=text,
                          headers=bearer(tokens["ingest"]), content_type="text/plain")
        assert bad.status_code == 400 and "64 bits" in bad.get_json()["error"], text


def test_bad_input_is_a_clear_4xx_and_stores_nothing(app: Any, client: Any, tokens: dict[str, str],
                                                     gzip_bomb: bytes) -> None:
    tok = tokens["ingest"]
    before = n_batches(app)
    valid = pprof.encode(cpu_profile({"main;x": 1}), compress=False)
    cases = [
        (valid[: len(valid) // 2], 400, "pprof"),  # truncated
        (gzip.compress(valid)[:-12], 400, "gzip"),  # truncated gzip
        (os.urandom(4096), 400, "pprof"),  # garbage
        (b"", 400, "empty"),
        (gzip_bomb, 413, "decompressed"),
        (bytes(9 * 1024 * 1024), 413, "exceeds the limit"),  # over MAX_BODY_BYTES (8 MiB)
    ]
    for body, status, needle in cases:
        resp = post(client, tok, body)
        assert resp.status_code == status, (needle, resp.get_json())
        assert needle in resp.get_json()["error"], resp.get_json()
    assert len(gzip_bomb) < 2 * 1024 * 1024
    # 100k per-sample labels on one sample; 100k distinct label sets; 100k series labels
    prof = cpu_profile({"main;y": 1})
    prof.samples = [Sample(prof.samples[0].stack, prof.samples[0].values,
                           tuple((f"l{i}", "v") for i in range(100_000)))]
    resp = post(client, tok, pprof.encode(prof))
    assert resp.status_code == 413 and "labels" in resp.get_json()["error"]
    prof = cpu_profile({"main;y": 1})
    base = prof.samples[0]
    prof.samples = [Sample(base.stack, base.values, (("pid", str(i)),)) for i in range(100_000)]
    resp = post(client, tok, pprof.encode(prof))
    assert resp.status_code == 413 and "label sets" in resp.get_json()["error"]
    resp = post(client, tok, valid, "&".join(f"l{i}=v" for i in range(100_000)))
    assert resp.status_code == 413 and "series labels" in resp.get_json()["error"]
    resp = post(client, tok, valid, "service=" + "x" * 5000)
    assert resp.status_code == 400 and "exceeds" in resp.get_json()["error"]
    resp = post(client, tok, valid, "bad-name=1")
    assert resp.status_code == 400 and "invalid" in resp.get_json()["error"]
    assert n_batches(app) == before
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics", headers=bearer(tokens["read"])).get_data(as_text=True)
    assert 'hotpath_ingest_rejects_total{reason="decompressed_too_large"} 1.0' in metrics
    assert 'hotpath_ingest_rejects_total{reason="body_too_large"} 1.0' in metrics


def test_invalid_utf8_function_names_refuse_the_batch(app: Any, client: Any, tokens: dict[str, str]) -> None:
    # pprof strings are protobuf `string` fields: the decoder refuses bad UTF-8, so the whole batch is a
    # clear 400 (the sender keeps it) rather than a guess at what the bytes meant.
    before = n_batches(app)
    body = raw_profile([b"good_fn", b"bad_\xff\xfe_fn"], [3, 4])
    resp = post(client, tokens["ingest"], body, "service=utf8")
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["reason"] == "bad_profile" and "UTF-8" in resp.get_json()["error"]
    assert n_batches(app) == before


def test_nul_in_function_names_is_repaired_and_counted(app: Any, client: Any, tokens: dict[str, str]) -> None:
    # Valid UTF-8 that a database cannot store (NUL) is the repair path: replaced, stored, counted.
    body = raw_profile([b"good_fn", b"nul\x00fn"], [3, 5])
    resp = post(client, tokens["ingest"], body, "service=nul")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["repaired"] == {"invalid_utf8_frames": 1}
    top = client.get('/api/v1/top?query=cpu{service="nul"}', headers=bearer(tokens["read"])).get_json()
    assert {f["name"] for f in top["functions"]} == {"good_fn", "nul\ufffdfn"}
    assert top["total"] == 8 * 10_000_000
    metrics = client.get("/metrics", headers=bearer(tokens["read"])).get_data(as_text=True)
    assert 'hotpath_ingest_repairs_total{what="invalid_utf8_frames"} 1.0' in metrics


def test_concurrent_duplicate_idempotency_keys(app: Any, tokens: dict[str, str]) -> None:
    body = pprof.encode(cpu_profile({"main;conc": 7}))
    barrier = threading.Barrier(6)
    answers: list[dict[str, Any]] = []

    def send() -> None:
        c = app.test_client()
        barrier.wait()
        answers.append(post(c, tokens["ingest"], body, "service=conc", **{"Idempotency-Key": "same"}).get_json())

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a["status"] for a in answers) == ["duplicate"] * 5 + ["stored"]
    top = app.test_client().get('/api/v1/top?query=cpu{service="conc"}', headers=bearer(tokens["read"])).get_json()
    assert top["total"] == 7 * cpu_profile({}).period


def test_stream_guards_without_content_length() -> None:
    with pytest.raises(ApiError) as err:
        read_body(io.BytesIO(bytes(2000)), None, 1000)
    assert err.value.status == 413
    assert read_body(io.BytesIO(b"abc"), None, 1000) == b"abc"
    small = {**DEFAULTS, "MAX_DECOMPRESSED_BYTES": 1000}
    assert gunzip_body(gzip.compress(b"a" * 100) + gzip.compress(b"b" * 50), small) == b"a" * 100 + b"b" * 50
    with pytest.raises(ApiError) as err:
        gunzip_body(gzip.compress(bytes(5000)), small)
    assert err.value.status == 413


def test_unknown_frames_kind_and_deep_stack(client: Any, tokens: dict[str, str]) -> None:
    prof = cpu_profile({"main": 1})
    prof.samples = [Sample(tuple(frame(f"f{i % 50}") for i in range(3000)), (2, 2 * prof.period))]
    resp = post(client, tokens["ingest"], pprof.encode(prof), "service=deep")
    assert resp.status_code == 200, resp.get_json()
    fg = client.get('/api/v1/flamegraph?query=cpu{service="deep"}&max_nodes=100000',
                    headers=bearer(tokens["read"])).get_json()
    assert len(fg["levels"]) == 3001 and fg["numTicks"] == 2 * prof.period
