"""Scrape targets from a Prometheus-shaped `scrape_configs` document (YAML or JSON).

    scrape_configs:
      - job_name: api
        scrape_interval: 15s        # default 15s
        scrape_timeout: 10s         # default: the interval minus 1 s, at most 10 s
        scheme: http
        profiles: [cpu, memory, mutex, block, goroutine]   # default: all five
        static_configs:
          - targets: ["10.0.0.5:6060"]
            labels: {env: prod}

Each target gets the labels `job` and `instance` (host:port) plus its static labels, as in Prometheus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Profile name -> (net/http/pprof path, sample types that count since process start).
PROFILES: dict[str, tuple[str, frozenset[str]]] = {
    "cpu": ("/debug/pprof/profile", frozenset()),
    "memory": ("/debug/pprof/heap", frozenset({"alloc_objects", "alloc_space"})),
    "mutex": ("/debug/pprof/mutex", frozenset({"contentions", "delay"})),
    "block": ("/debug/pprof/block", frozenset({"contentions", "delay"})),
    "goroutine": ("/debug/pprof/goroutine", frozenset()),
}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


class ConfigError(ValueError):
    """The scrape config cannot be used as written (the message says where)."""


@dataclass(frozen=True, slots=True)
class Target:
    job: str
    instance: str  # host:port
    scheme: str
    labels: dict[str, str] = field(hash=False)
    interval_s: float = 15.0
    timeout_s: float = 10.0
    profiles: tuple[str, ...] = tuple(PROFILES)

    def url(self, profile: str) -> str:
        path = PROFILES[profile][0]
        query = f"?seconds={max(1, int(self.timeout_s) - 1)}" if profile == "cpu" else ""
        return f"{self.scheme}://{self.instance}{path}{query}"


def duration(text: Any, where: str) -> float:
    m = _DURATION.match(str(text).strip())
    if not m or int(m.group(1)) <= 0:
        raise ConfigError(f"{where}: {text!r} is not a duration such as 10s, 1m or 500ms")
    return int(m.group(1)) * _UNITS[m.group(2)]


def parse(doc: Any) -> list[Target]:
    """Targets of a parsed `scrape_configs` document."""
    if not isinstance(doc, dict) or not isinstance(doc.get("scrape_configs"), list):
        raise ConfigError("the config must be a mapping with a `scrape_configs` list")
    out: list[Target] = []
    seen: set[tuple[str, str]] = set()
    for i, job in enumerate(doc["scrape_configs"]):
        where = f"scrape_configs[{i}]"
        if not isinstance(job, dict) or not isinstance(job.get("job_name"), str) or not job["job_name"]:
            raise ConfigError(f"{where}: needs a `job_name`")
        interval = duration(job.get("scrape_interval", "15s"), f"{where}.scrape_interval")
        timeout = duration(job.get("scrape_timeout", f"{int(min(max(interval - 1, 1), 10) * 1000)}ms"),
                           f"{where}.scrape_timeout")
        if timeout > interval:
            raise ConfigError(f"{where}: scrape_timeout is longer than scrape_interval")
        scheme = job.get("scheme", "http")
        if scheme not in ("http", "https"):
            raise ConfigError(f"{where}.scheme: http or https, got {scheme!r}")
        profiles = job.get("profiles", list(PROFILES))
        bad = [p for p in profiles if p not in PROFILES] if isinstance(profiles, list) else [profiles]
        if bad or not profiles:
            raise ConfigError(f"{where}.profiles: a list of {', '.join(PROFILES)}; not {bad}")
        for j, static in enumerate(job.get("static_configs") or []):
            labels = static.get("labels") or {} if isinstance(static, dict) else None
            targets = static.get("targets") if isinstance(static, dict) else None
            if not isinstance(targets, list) or not isinstance(labels, dict):
                raise ConfigError(f"{where}.static_configs[{j}]: needs `targets` (a list) and optional `labels`")
            for name in labels:
                if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", str(name)):
                    raise ConfigError(f"{where}.static_configs[{j}].labels: bad label name {name!r}")
            for t in targets:
                parts = urlsplit(f"//{t}")
                if not isinstance(t, str) or not parts.hostname or parts.path or "@" in t:
                    raise ConfigError(f"{where}.static_configs[{j}]: target {t!r} is not host:port")
                if (job["job_name"], t) in seen:
                    raise ConfigError(f"{where}: target {t!r} listed twice in job {job['job_name']!r}")
                seen.add((job["job_name"], t))
                out.append(Target(job["job_name"], t, scheme,
                                  {**{str(k): str(v) for k, v in labels.items()}, "job": job["job_name"], "instance": t},
                                  interval, timeout, tuple(profiles)))
    return out


def load(text: str) -> list[Target]:
    """Targets of a YAML (or JSON) scrape config."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}") from None
    return parse(doc)


def from_urls(urls: list[str], interval_s: float = 15.0) -> list[Target]:
    """Targets for `hotpath up --scrape http://host:port` (job "hotpath-up")."""
    out = []
    for url in urls:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(f"--scrape {url!r}: give http://host:port")
        out.append(Target("hotpath-up", parts.netloc, parts.scheme, {"job": "hotpath-up", "instance": parts.netloc},
                          interval_s, min(max(interval_s - 1, 1), 10)))
    return out


__all__ = ["PROFILES", "ConfigError", "Target", "duration", "from_urls", "load", "parse"]
