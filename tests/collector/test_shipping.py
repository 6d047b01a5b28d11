"""Spool and shipper against a real local HTTP server: 2xx, 4xx (rejected), 5xx and refused (retried)."""

from __future__ import annotations

import socket

from collector.ship import Outcome, Shipper
from collector.spool import Spool


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_spool_is_fifo_durable_and_bounded(tmp_path) -> None:
    spool = Spool(tmp_path, max_bytes=250)
    for i in range(5):
        spool.put(bytes([i]) * 100, {"service": "s"}, key=f"k{i}")
    items = spool.items()
    # 100-byte bodies, 250 bytes max: only the two newest fit, three oldest dropped and counted.
    assert [i.key for i in items] == ["k3", "k4"]
    assert spool.dropped_batches == 3
    assert spool.size_bytes() <= 250
    reopened = Spool(tmp_path, max_bytes=250)  # a restart sees the same queue, in order
    assert [i.key for i in reopened.items()] == ["k3", "k4"]
    assert reopened.items()[0].body() == bytes([3]) * 100


def test_interrupted_write_is_ignored(tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.put(b"x", {}, key="good")
    (tmp_path / "000000000099-cpu.pb.gz").write_bytes(b"partial")  # body without metadata
    (tmp_path / "000000000100-cpu.json.tmp").write_text("{")
    assert [i.key for i in Spool(tmp_path).items()] == ["good"]


def test_ship_ok_sends_token_key_and_labels(tmp_path, ingest_server) -> None:
    spool = Spool(tmp_path)
    spool.put(b"body", {"service": "api", "host": "h1"}, key="key-1")
    shipper = Shipper(ingest_server.url, "tok")
    assert shipper.flush(spool) == 1
    assert ingest_server.keys == ["key-1"]
    assert ingest_server.auth == ["Bearer tok"]
    assert "service=api" in ingest_server.queries[0] and "host=h1" in ingest_server.queries[0]
    assert ingest_server.stored["key-1"] == b"body"
    assert spool.items() == []


def test_4xx_is_moved_aside_not_retried(tmp_path, ingest_server) -> None:
    ingest_server.mode = "400"
    spool = Spool(tmp_path)
    spool.put(b"bad", {}, key="bad-1")
    spool.put(b"bad", {}, key="bad-2")
    shipper = Shipper(ingest_server.url, "tok")
    assert shipper.flush(spool) == 0
    assert shipper.stats.rejected == 2 and "400" in shipper.stats.last_error
    assert spool.items() == []
    assert len(list(spool.rejected_dir.glob("*.json"))) == 2
    ingest_server.mode = "ok"
    shipper.flush(spool)
    assert ingest_server.keys == ["bad-1", "bad-2"]  # each sent once, never again


def test_5xx_retries_with_backoff_then_delivers_once(tmp_path, ingest_server) -> None:
    ingest_server.mode = "500"
    clock = FakeClock()
    spool = Spool(tmp_path)
    spool.put(b"a", {}, key="a")
    spool.put(b"b", {}, key="b")
    shipper = Shipper(ingest_server.url, "tok", clock=clock, base_backoff_s=1.0, rand=lambda: 1.0)
    assert shipper.flush(spool) == 0
    assert shipper.next_try == 2.0  # 1s * 2^1, jitter factor at its max
    assert shipper.flush(spool) == 0  # still backing off: nothing sent
    assert ingest_server.keys == ["a"]
    clock.now = 2.0
    shipper.flush(spool)
    assert shipper.next_try == 2.0 + 4.0  # exponential: 1s * 2^2 from now
    ingest_server.mode = "ok"
    clock.now = 10.0
    assert shipper.flush(spool) == 2
    assert list(ingest_server.stored) == ["a", "b"]
    assert shipper.next_try == 0.0


def test_backoff_jitter_is_equal_jitter(tmp_path, ingest_server) -> None:
    # Equal jitter, as ship.py documents: the wait is in [cap/2, cap], never below half the cap.
    ingest_server.mode = "500"
    spool = Spool(tmp_path)
    spool.put(b"a", {}, key="a")
    for rand, wait in ((0.0, 1.0), (0.5, 1.5), (1.0, 2.0)):
        shipper = Shipper(ingest_server.url, "tok", clock=FakeClock(), base_backoff_s=1.0, rand=lambda r=rand: r)
        assert shipper.flush(spool) == 0
        assert shipper.next_try == wait  # cap = 1s * 2^1


def test_connection_refused_is_retried(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    spool = Spool(tmp_path)
    spool.put(b"a", {}, key="a")
    shipper = Shipper(f"http://127.0.0.1:{port}", "tok", timeout_s=2)
    assert shipper.send(spool.items()[0]) is Outcome.RETRY
    assert shipper.flush(spool) == 0
    assert shipper.stats.failures == 1 and len(spool.items()) == 1
