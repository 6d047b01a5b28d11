"""Scrape health as Prometheus metrics, read from `scrape_targets` when `/metrics` is scraped.

The scraper is its own process, so its health reaches every server worker through the database,
not through the workers' metric files.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

_LABELS = ["job", "instance", "profile"]


class _Targets:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("hotpath_scrape_target_up", "1 if the last scrape stored (or had nothing new)",
                               labels=_LABELS)
        last = GaugeMetricFamily("hotpath_scrape_last_timestamp_seconds", "Unix time of the last scrape",
                                 labels=_LABELS)
        took = GaugeMetricFamily("hotpath_scrape_duration_seconds", "Duration of the last scrape", labels=_LABELS)
        scrapes = CounterMetricFamily("hotpath_scrapes", "Scrapes attempted", labels=_LABELS)
        errors = CounterMetricFamily("hotpath_scrape_errors", "Failed scrapes by kind", labels=[*_LABELS, "kind"])
        for r in self.rows:
            key = [r["job"], r["instance"], r["profile"]]
            up.add_metric(key, 0 if r["last_error"] else 1)
            last.add_metric(key, r["last_scrape"])
            took.add_metric(key, r["last_duration_ms"] / 1000)
            scrapes.add_metric(key, r["scrapes"])
            for kind, n in sorted(r["errors"].items()):
                errors.add_metric([*key, kind], n)
        yield from (up, last, took, scrapes, errors)


def render(rows: list[dict[str, Any]]) -> bytes:
    """Prometheus text for `targets_health` rows (b"" when nothing is scraped)."""
    if not rows:
        return b""
    registry = CollectorRegistry()
    registry.register(_Targets(rows))  # type: ignore[arg-type]
    return generate_latest(registry)
