"""Where one HTTP/1.x request ends in a byte stream, found without blocking (pure; fed piece by piece).

The serving worker (server/buffering_worker.py) buffers each request whole in its event loop
and only then gives it to a thread, so a client that sends slowly costs a socket, never a thread.
This module decides when "whole" is reached. It does not validate: anything it cannot frame
is handed on at once (`Framed.PASS`) for gunicorn's parser to refuse with a 400.
"""

from __future__ import annotations

import enum
import re

_HEADER_END = b"\r\n\r\n"
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect:[ \t]*100-continue[ \t]*(?=\r\n)", re.IGNORECASE)
_HEX = frozenset(b"0123456789abcdefABCDEF")
_CHUNK_LINE_MAX = 1024  # a chunk-size line (hex size + extensions); longer is not a real client


class Framed(enum.Enum):
    MORE = "more"  # the request is not complete yet
    COMPLETE = "complete"  # `request_end` bytes hold one whole request
    PASS = "pass"  # cannot be framed (malformed framing headers): the parser answers it with a 400
    TOO_LARGE = "too_large"  # the body is over the limit: answer 413 without reading it
    HEADERS_TOO_LARGE = "headers_too_large"  # request line + headers (or trailers) over the limit: 431


class RequestFramer:
    """Feed bytes as they arrive; `state` says whether one whole request is buffered.

    `max_header_bytes` bounds the request line plus headers, `max_body_bytes` the body (declared by
    Content-Length, or the chunked encoding's data so far). Bytes past the request end (a pipelined
    next request) stay in `data`."""

    def __init__(self, max_header_bytes: int, max_body_bytes: int, data: bytes = b"") -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.data = bytearray()
        self.state = Framed.MORE
        self.header_end = -1  # offset just past the blank line, once seen
        self.expects_continue = False
        self.request_end = -1
        self._length: int | None = None  # Content-Length body, or None when chunked
        self._chunk_pos = -1  # chunked: offset of the next chunk-size (or trailer) line
        self._chunk_data = 0  # chunked: data bytes announced so far
        self._in_trailers = False
        self._trailers_from = -1
        if data:
            self.feed(data)

    @property
    def headers_done(self) -> bool:
        return self.header_end >= 0

    def feed(self, piece: bytes) -> Framed:
        self.data += piece
        if self.state is not Framed.MORE:
            return self.state
        if self.header_end < 0:
            self._find_header_end(len(piece))
            if self.state is not Framed.MORE or self.header_end < 0:
                return self.state
        if self._length is not None:
            if len(self.data) >= self.header_end + self._length:
                self.request_end = self.header_end + self._length
                self.state = Framed.COMPLETE
        else:
            self._scan_chunks()
        return self.state

    def _find_header_end(self, fed: int) -> None:
        # Empty lines before a request line are allowed (RFC 9112 2.2) and skipped by the parser;
        # they must not pass for the blank line that ends the headers.
        lead = len(self.data) - len(self.data.lstrip(b"\r\n"))
        at = self.data.find(_HEADER_END, max(lead, len(self.data) - fed - 3))
        if at < 0:
            if len(self.data) > self.max_header_bytes:
                self.state = Framed.HEADERS_TOO_LARGE
            return
        if at + 4 > self.max_header_bytes:
            self.state = Framed.HEADERS_TOO_LARGE
            return
        self.header_end = at + 4
        self._frame_body(bytes(self.data[lead:at]))

    def _frame_body(self, head: bytes) -> None:
        lengths, codings = [], []
        for line in head.split(b"\r\n")[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip().lower()
            if name == b"content-length":
                lengths.append(value.strip())
            elif name == b"transfer-encoding":
                codings += [c.strip().lower() for c in value.split(b",")]
            elif name == b"expect" and value.strip().lower() == b"100-continue":
                self.expects_continue = True
        if codings:
            if codings[-1] != b"chunked" or lengths:
                self.state = Framed.PASS  # not framable by RFC 9112 6.3: the parser refuses it
                return
            self._chunk_pos = self.header_end
            return
        if len(lengths) > 1 and len(set(lengths)) > 1 or lengths and not lengths[0].isdigit():
            self.state = Framed.PASS
            return
        length = int(lengths[0]) if lengths else 0
        if length > self.max_body_bytes:
            self.state = Framed.TOO_LARGE
            return
        self._length = length

    def _scan_chunks(self) -> None:
        data = self.data
        while True:
            end = data.find(b"\r\n", self._chunk_pos, self._chunk_pos + _CHUNK_LINE_MAX)
            if end < 0:
                if len(data) - self._chunk_pos >= _CHUNK_LINE_MAX:
                    self.state = Framed.PASS
                return
            line = bytes(data[self._chunk_pos:end])
            self._chunk_pos = end + 2
            if self._in_trailers:  # after the last chunk: trailer fields up to an empty line
                if not line:
                    self.request_end = self._chunk_pos
                    self.state = Framed.COMPLETE
                    return
                if self._chunk_pos - self._trailers_from > self.max_header_bytes:
                    self.state = Framed.HEADERS_TOO_LARGE
                    return
                continue
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or any(c not in _HEX for c in size_text):
                self.state = Framed.PASS
                return
            size = int(size_text, 16)
            if size == 0:
                self._in_trailers = True
                self._trailers_from = self._chunk_pos
                continue
            self._chunk_data += size
            if self._chunk_data > self.max_body_bytes:
                self.state = Framed.TOO_LARGE
                return
            if len(data) < self._chunk_pos + size + 2:
                self._chunk_pos = end - len(line)  # re-read this size line once its data is here
                self._chunk_data -= size
                return
            self._chunk_pos += size + 2

    def without_expect_continue(self) -> bytes:
        """The buffered bytes with an `Expect: 100-continue` header dropped: the worker answered it
        before buffering the body, and the parser would otherwise answer it a second time."""
        head = bytes(self.data[:self.header_end - 2])
        return _EXPECT_CONTINUE.sub(b"", head) + bytes(self.data[self.header_end - 2:])
