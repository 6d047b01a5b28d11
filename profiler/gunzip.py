"""Capped gzip inflation for untrusted input: linear in input and output, with a member cap.

Why not `gzip.decompress` or a loop over `decompressobj().unused_data`: each member's leftover
input is copied again (`unused_data` is a fresh bytes of everything after the member), so N tiny
members cost O(N x input): 8 MiB of empty members kept a worker busy for minutes. Here the input is
fed in growing slices of a memoryview (each copy is at most one slice; a member's slices sum to
under twice its size plus 256 bytes), and output is pulled in bounded pieces, so a bomb is
stopped after at most `max_out` + one piece.
"""

from __future__ import annotations

import zlib

from profiler.errors import ProfileError

GZIP_MAGIC = b"\x1f\x8b"
MAX_MEMBERS = 1024  # real senders write one member; `cat a.gz b.gz` a few
_IN = 16 * 1024  # largest input slice: bounds the per-call copy (unconsumed_tail, unused_data)
_FIRST_IN = 256  # a member's first slice; slices double up to _IN, so a tiny member costs little
_OUT = 64 * 1024  # output piece per call


class GzipError(ProfileError):
    """gzip data that is corrupt or truncated (bad input: HTTP 400)."""


class GzipTooLarge(GzipError):
    """gzip data that inflates past the cap, or has too many members (HTTP 413)."""


def gunzip(data: bytes | bytearray | memoryview, max_out: int, max_members: int = MAX_MEMBERS) -> bytes:
    """Inflate every gzip member of `data` into at most `max_out` bytes.

    Trailing bytes after a member that do not start another member are ignored, as gzip(1) does.
    Raises `GzipTooLarge` past `max_out` bytes or `max_members` members, `GzipError` on corrupt or
    truncated data; nothing else.
    """
    view = memoryview(data).cast("B")
    size = len(view)
    out: list[bytes] = []
    total = 0
    pos = 0  # start of the current member in `view`
    members = 0
    while pos < size and view[pos:pos + 2] == GZIP_MAGIC:
        members += 1
        if members > max_members:
            raise GzipTooLarge(f"gzip data has more than {max_members} members")
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        fed = pos  # input consumed up to here, counting what the inflater holds
        pending: bytes | memoryview = b""
        step = _FIRST_IN
        try:
            while not inflater.eof:
                if not pending:
                    if fed >= size:
                        # Drain what the inflater still holds, then the member is truncated.
                        piece = inflater.decompress(b"", _OUT)
                        if not piece:
                            raise GzipError("truncated gzip data (it ends before its end marker)")
                    else:
                        pending = view[fed:fed + step]
                        fed += len(pending)
                        step = min(2 * step, _IN)
                        continue
                else:
                    piece = inflater.decompress(pending, _OUT)
                    pending = inflater.unconsumed_tail
                total += len(piece)
                if total > max_out:
                    raise GzipTooLarge(f"gzip data inflates past the limit of {max_out} bytes")
                if piece:
                    out.append(piece)
        except zlib.error as exc:
            raise GzipError(f"corrupt gzip data: {exc}") from None
        # The member ended inside the last slice fed: what it did not use is where the next begins.
        pos = fed - len(pending) - len(inflater.unused_data)
    if members == 0:
        raise GzipError("not gzip data (no gzip header)")
    return b"".join(out)
