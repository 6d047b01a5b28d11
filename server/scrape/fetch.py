"""One scrape: an HTTP GET with a deadline, a size cap, and redirects only within the target's host."""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from profiler.errors import ProfileError
from profiler.gunzip import GzipError, GzipTooLarge, gunzip
from profiler.model import ProfileTable
from profiler.pprof import decode_table

_CHUNK = 1 << 16


class ScrapeError(Exception):
    """A failed scrape; `kind` is the counted reason (refused, timeout, http_status, too_large, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _SameHost(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            raise ScrapeError("redirect", f"redirect to another host refused: {newurl[:200]}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SameHost)


def fetch(url: str, timeout_s: float, max_bytes: int) -> bytes:
    """The body at `url`, read within `timeout_s` in total and at most `max_bytes` (else ScrapeError)."""
    deadline = time.monotonic() + timeout_s
    try:
        with _OPENER.open(urllib.request.Request(url, headers={"User-Agent": "hotpath-scraper"}),
                          timeout=timeout_s) as resp:
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ScrapeError("too_large", f"body of {declared} bytes exceeds {max_bytes}")
            parts, total = [], 0
            while chunk := resp.read(_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise ScrapeError("too_large", f"body exceeds {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise ScrapeError("timeout", f"body not read within {timeout_s:g} s")
                parts.append(chunk)
            return b"".join(parts)
    except ScrapeError:
        raise
    except urllib.error.HTTPError as exc:
        raise ScrapeError("http_status", f"HTTP {exc.code} from {url}") from None
    except (TimeoutError, http.client.RemoteDisconnected) as exc:
        raise ScrapeError("timeout", f"{type(exc).__name__}: {exc}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        kind = "timeout" if isinstance(reason, TimeoutError) else "refused" if isinstance(
            reason, ConnectionRefusedError) else "connect"
        raise ScrapeError(kind, f"{url}: {reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ScrapeError("connect", f"{url}: {type(exc).__name__}: {exc}") from None


def decode(body: bytes, max_bytes: int) -> ProfileTable:
    """A scraped body as a profile table (gzipped or raw pprof), else ScrapeError("not_pprof")."""
    try:
        data = gunzip(body, max_bytes) if body[:2] == b"\x1f\x8b" else body
        table = decode_table(data)
    except GzipTooLarge as exc:
        raise ScrapeError("too_large", f"decompressed body: {exc}") from None
    except (GzipError, ProfileError) as exc:
        raise ScrapeError("not_pprof", f"not a pprof profile: {exc}") from None
    if not table.sample_types:
        raise ScrapeError("not_pprof", "not a pprof profile: no sample types")
    return table
