"""Prometheus metrics, one registry per app (so several apps can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ingest_batches = Counter("hotpath_ingest_batches_total", "Profiles stored", ["status"], registry=r)
        self.ingest_bytes = Counter("hotpath_ingest_bytes_total", "Compressed ingest body bytes accepted",
                                    registry=r)
        self.ingest_samples = Counter("hotpath_ingest_samples_total", "Samples stored", registry=r)
        self.ingest_rejects = Counter("hotpath_ingest_rejects_total", "Ingest requests refused", ["reason"],
                                      registry=r)
        self.ingest_seconds = Histogram("hotpath_ingest_seconds", "Ingest request latency", registry=r,
                                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.query_seconds = Histogram("hotpath_query_seconds", "Query latency by endpoint", ["endpoint"],
                                       registry=r, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.requests = Counter("hotpath_http_requests_total", "HTTP requests", ["endpoint", "status"], registry=r)
        self.pool_checked_out = Gauge("hotpath_db_pool_checked_out", "Database connections in use", registry=r)
        self.pool_size = Gauge("hotpath_db_pool_size", "Database pool size", registry=r)

    def render(self, engine: object | None = None) -> bytes:
        pool = getattr(engine, "pool", None)
        if pool is not None and hasattr(pool, "checkedout"):
            self.pool_checked_out.set(pool.checkedout())
            self.pool_size.set(pool.size())
        return generate_latest(self.registry)
