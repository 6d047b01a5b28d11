"""Prometheus metrics, one registry per app (so several apps can live in one test process).

Under gunicorn (server/gunicorn_app.py) PROMETHEUS_MULTIPROC_DIR is set before any worker imports
prometheus_client, so every metric value lives in a per-pid file there and `render` sums all workers;
without it (tests with create_app, embedding) the per-process registry is the whole truth.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from server.config import MULTIPROC_ENV


class Metrics:
    def __init__(self, engine: Any | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ingest_batches = Counter("hotpath_ingest_batches_total", "Profiles stored", ["status"], registry=r)
        self.ingest_bytes = Counter("hotpath_ingest_bytes_total", "Compressed ingest body bytes accepted",
                                    registry=r)
        self.ingest_samples = Counter("hotpath_ingest_samples_total", "Samples stored", registry=r)
        self.ingest_rejects = Counter("hotpath_ingest_rejects_total", "Ingest requests refused", ["reason"],
                                      registry=r)
        self.ingest_repairs = Counter("hotpath_ingest_repairs_total", "Names and label values stored repaired "
                                      "(truncated_names, truncated_labels, invalid_utf8_frames)", ["what"],
                                      registry=r)
        self.ingest_protocol_requests = Counter(
            "hotpath_ingest_protocol_requests_total", "Ingest requests by protocol (native, pyroscope_push, "
            "pyroscope_ingest, otlp) and outcome (stored, duplicate, partial, rejected)", ["protocol", "outcome"],
            registry=r)
        self.ingest_seconds = Histogram("hotpath_ingest_seconds", "Ingest request latency", registry=r,
                                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.query_seconds = Histogram("hotpath_query_seconds", "Query latency by endpoint", ["endpoint"],
                                       registry=r, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.requests = Counter("hotpath_http_requests_total", "HTTP requests", ["endpoint", "status"], registry=r)
        # "livesum": each worker has its own pool, so the server's connections in use (and its capacity)
        # are the sum over the workers alive now; a dead worker's connections are gone with it
        # (child_exit marks it dead). Both are kept current by pool events in every worker, not only
        # in the one answering the scrape, so the sum is never made of stale values.
        self.pool_checked_out = Gauge("hotpath_db_pool_checked_out", "Database connections in use", registry=r,
                                      multiprocess_mode="livesum")
        self.pool_size = Gauge("hotpath_db_pool_size", "Database pool size", registry=r,
                               multiprocess_mode="livesum")
        if engine is not None:
            self.track_pool(engine)

    def track_pool(self, engine: Any) -> None:
        """Follow the engine's pool: connections in use by checkout/checkin events, the configured size."""
        from sqlalchemy import event

        size = getattr(engine.pool, "size", None)
        if callable(size):  # NullPool (SQLite) has no fixed size
            self.pool_size.set(size())
        event.listen(engine, "checkout", lambda *_: self.pool_checked_out.inc())
        event.listen(engine, "checkin", lambda *_: self.pool_checked_out.dec())

    def render(self) -> bytes:
        path = os.environ.get(MULTIPROC_ENV)
        if not path:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        # A fresh registry per scrape: the collector reads every worker's files at collect time.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry)
