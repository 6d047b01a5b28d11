"""Prometheus metrics of the collector itself (samples, stacks, missed, shipped, spool)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

if TYPE_CHECKING:
    from collector.batch import Batch
    from collector.ship import Shipper
    from collector.spool import Spool


class Metrics:
    """A private registry so several agents (tests) never collide on metric names."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.samples = Counter("hotpath_collector_samples", "On-CPU samples collected", registry=r)
        self.stacks = Counter("hotpath_collector_unique_stacks", "Unique stacks per interval, summed", registry=r)
        self.missed = Counter("hotpath_collector_missed_stacks", "Samples with a missed stack", registry=r)
        self.unsymbolized = Counter("hotpath_collector_unsymbolized_frames", "Frames left unsymbolized",
                                    registry=r)
        self.shipped = Counter("hotpath_collector_shipped_batches", "Batches stored by the server", registry=r)
        self.rejected = Gauge("hotpath_collector_rejected_batches", "Batches refused by the server (4xx)",
                              registry=r)
        self.spooled = Gauge("hotpath_collector_spooled_batches", "Batches waiting on disk", registry=r)
        self.dropped = Gauge("hotpath_collector_spool_dropped_batches", "Batches dropped (spool full)",
                             registry=r)
        self.intervals = Counter("hotpath_collector_intervals", "Intervals completed", registry=r)

    def observe(self, batch: Batch, shipped: int, spooled: int, spool: Spool, shipper: Shipper) -> None:
        self.samples.inc(batch.samples)
        self.stacks.inc(batch.unique_stacks)
        self.missed.inc(batch.missed)
        self.unsymbolized.inc(batch.cpu.counters.get("unsymbolized_frames", 0))
        self.shipped.inc(shipped)
        self.rejected.set(shipper.stats.rejected)
        self.spooled.set(spooled)
        self.dropped.set(spool.dropped_batches)
        self.intervals.inc()

    def serve(self, addr: str) -> None:
        host, _, port = addr.rpartition(":")
        start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)
