"""Server configuration: defaults, then an optional config file, then `HOTPATH_*` environment variables.

Nothing is read at import time: `load_config()` is called by `create_app` and the CLI, so tests can
build apps with their own settings side by side.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# prometheus_client's own variable, named here because both sides need it: gunicorn_app sets it before
# any worker imports prometheus_client, server.metrics (which imports prometheus_client) reads it.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

DEFAULTS: dict[str, Any] = {
    "DATA_DIR": "~/.local/share/hotpath",
    "DATABASE_URL": "",  # empty: SQLite file `hotpath.db` in DATA_DIR
    "BIND": "127.0.0.1:4040",
    "AUTH": True,
    "AUTO_UPGRADE": False,  # upgrade the schema at start instead of refusing to run when behind
    "RETENTION_DAYS": 30,
    "PARTITION_AHEAD_DAYS": 2,
    "MAINTENANCE_INTERVAL_S": 60,  # 0 disables the background rollup/retention/partition thread
    "ROLLUP_GRACE_S": 120,  # a minute/hour is rolled up only once this long has passed after it
    "MAX_BODY_BYTES": 8 * 1024 * 1024,
    "MAX_DECOMPRESSED_BYTES": 64 * 1024 * 1024,
    "MAX_GZIP_MEMBERS": 1024,
    "MAX_SAMPLES": 200_000,
    "MAX_LABELS_PER_SAMPLE": 32,
    "MAX_SERIES_LABELS": 32,
    "MAX_DISTINCT_LABEL_SETS": 20_000,
    "MAX_LABEL_NAME_LEN": 128,
    "MAX_LABEL_VALUE_LEN": 1024,  # series labels: longer is a 400; per-sample: cut and counted (max 1024)
    "MAX_STACK_DEPTH": 4096,
    "MAX_FRAME_NAME_LEN": 4096,  # function, binary and file names: longer ones are cut and counted
    "MAX_NODES_DEFAULT": 2048,
    "MAX_NODES_CAP": 200_000,
    "QUERY_TIMEOUT_S": 30.0,  # a query past this answers 503 (SQL stopped by the database, loops by checks)
    "QUERY_MAX_STACKS": 1_000_000,  # distinct stacks one query may merge and resolve (memory); past it: 422
    "QUERY_MAX_GROUPS": 100,  # /series group_by: the largest groups by total, the rest summed as "other"
    "DICT_CACHE_ENTRIES": 1_000_000,  # per-worker function/stack cache entries (a limit costs time, not answers)
    "SESSION_TTL_S": 12 * 3600,
    "AUTH_CACHE_S": 5,  # a revoked token stops within this many seconds (per-worker positive cache)
    "MAX_SESSIONS_PER_TOKEN": 10,  # a new browser login ends the token's oldest session past this
    "LOGIN_FAILURES_PER_MIN": 10,  # failed token checks per client address per worker; 0: no limit
    "METRICS_PUBLIC": False,  # /metrics without a token (else it needs a read or admin token)
    "POOL_SIZE": 5,
    "WORKERS": 1,
    "THREADS": 4,  # threads per worker (requests waiting on the database overlap)
    "HEADER_TIMEOUT_S": 10,  # a request's line and headers must arrive within this (else 408, closed)
    "BODY_TIMEOUT_S": 30,  # its body within this after the headers; also a response's longest send stall
    "HEAP_IDLE_TRIM_S": 10,  # a worker idle this long gives its freed heap back (0: keeps up to 1 GiB)
    "WEB_DIR": "",  # empty: the repository's `web/` folder
    "LOG_LEVEL": "INFO",
}

_BOOL_TRUE = {"1", "true", "yes", "on"}
_BOOL_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


def _coerce(key: str, raw: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _BOOL_TRUE:
            return True
        if text in _BOOL_FALSE:
            return False
        raise ConfigError(f"{key}: expected a boolean, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {raw!r}") from None
    if isinstance(default, float):
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise ConfigError(f"{key}: expected a positive number, got {raw!r}")
        return value
    return str(raw)


def load_config(
    overrides: Mapping[str, Any] | None = None,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Defaults ← JSON config file (`HOTPATH_CONFIG` or `config_file`) ← `HOTPATH_*` env ← overrides."""
    env = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    path = config_file or env.get("HOTPATH_CONFIG")
    if path:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path}: expected a JSON object")
        for key, value in data.items():
            _set(config, key.upper(), value)
    for key in DEFAULTS:
        if f"HOTPATH_{key}" in env:
            _set(config, key, env[f"HOTPATH_{key}"])
    for key, value in (overrides or {}).items():
        _set(config, key.upper(), value)
    return config


def _set(config: dict[str, Any], key: str, value: Any) -> None:
    if key in DEFAULTS:
        config[key] = _coerce(key, value, DEFAULTS[key])
    else:
        config[key] = value  # Flask's own keys (TESTING, ...) pass through


def data_dir(config: Mapping[str, Any]) -> Path:
    return Path(os.path.expanduser(str(config["DATA_DIR"])))


def database_url(config: Mapping[str, Any]) -> str:
    """The SQLAlchemy URL: the configured one, or the embedded SQLite file in the data dir."""
    url = str(config.get("DATABASE_URL") or "")
    if url:
        if url.startswith(("postgresql://", "postgres://")):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, not psycopg2
        return url
    return f"sqlite:///{data_dir(config) / 'hotpath.db'}"


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--bind {bind!r}: expected HOST:PORT, e.g. 127.0.0.1:4040")
    return host.strip("[]") or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False


def check_bind(bind: str, auth: bool) -> tuple[str, int]:
    """Refuse to serve without auth on anything but loopback (the message says how to fix it)."""
    host, port = parse_bind(bind)
    if not auth and not is_loopback(host):
        raise ValueError(f"refusing to serve without authentication on non-loopback address {host}: "
                         "drop --no-auth (and use tokens) or bind 127.0.0.1")
    return host, port
