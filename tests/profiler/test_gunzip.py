"""profiler.gunzip: the one capped inflater (pprof decoding and the server's ingest both use it)."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest

from profiler import gunzip as gz
from profiler.gunzip import GzipError, GzipTooLarge, gunzip


def test_members_concatenate_and_trailing_garbage_is_ignored() -> None:
    data = gzip.compress(b"a" * 100) + gzip.compress(b"") + gzip.compress(b"b" * 50)
    assert gunzip(data, 1000) == b"a" * 100 + b"b" * 50
    assert gunzip(data + b"\x00" * 7, 1000) == b"a" * 100 + b"b" * 50
    big = bytes(range(256)) * 4000  # members spanning many input slices
    assert gunzip(gzip.compress(big, 0) * 3, 10 << 20) == big * 3


@pytest.mark.parametrize("data, error, needle", [
    (gzip.compress(b"x" * 1000)[:-12], GzipError, "truncated"),
    (b"\x1f\x8b" + b"\xff" * 40, GzipError, "corrupt"),
    (b"plain", GzipError, "not gzip"),
    (gzip.compress(bytes(5000)), GzipTooLarge, "limit of 1000"),
    (gzip.compress(b"") * 1025, GzipTooLarge, "more than 1024 members"),
])
def test_bad_input_is_one_error_type(data: bytes, error: type, needle: str) -> None:
    with pytest.raises(error, match=needle):
        gunzip(data, 1000)


def test_bomb_stops_at_the_cap() -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb = b"".join(comp.compress(bytes(1 << 20)) for _ in range(256)) + comp.flush()  # 256 MiB of zeros
    with pytest.raises(GzipTooLarge):
        gunzip(bomb, 1 << 20)


def test_work_is_linear_in_members(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes handed to zlib grow linearly with the member count (the old loop copied the rest of
    the input once per member: 419,430 empty members in 8 MiB took minutes)."""
    fed = [0]
    real = zlib.decompressobj

    class Counting:
        def __init__(self, *args: Any) -> None:
            self._d = real(*args)

        def decompress(self, data: Any, max_length: int = 0) -> bytes:
            fed[0] += len(data)
            return self._d.decompress(data, max_length)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._d, name)

    monkeypatch.setattr(gz.zlib, "decompressobj", Counting)
    member = gzip.compress(b"", mtime=0)
    for n in (1000, 4000):
        fed[0] = 0
        assert gunzip(member * n, 1000, max_members=n) == b""
        # each member is fed slices summing to < 2x its size + the first slice, never the rest of the input
        assert fed[0] <= n * (2 * len(member) + gz._FIRST_IN), (n, fed[0])
    huge = member * 419_430  # the reported 8 MiB bomb: refused at the member cap, after 1024 members
    fed[0] = 0
    with pytest.raises(GzipTooLarge, match="members"):
        gunzip(huge, 64 << 20)
    assert fed[0] <= 1025 * (2 * len(member) + gz._FIRST_IN)
