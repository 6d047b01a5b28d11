"""RequestFramer finds where a request ends however the bytes are split; gunicorn's own parser is the oracle."""

from __future__ import annotations

import io

from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from hypothesis import given, settings
from hypothesis import strategies as st

from server.request_framing import Framed, RequestFramer

LIMIT_H, LIMIT_B = 4096, 1000


def framed(data: bytes, cuts: list[int] | None = None) -> RequestFramer:
    framer = RequestFramer(LIMIT_H, LIMIT_B)
    at = 0
    for cut in sorted(cuts or []) + [len(data)]:
        framer.feed(data[at:cut])
        at = cut
    return framer


def parser_end(data: bytes) -> int:
    """Where gunicorn's parser says the first request ends (its body read to the end)."""
    stream = io.BytesIO(data)
    parser = RequestParser(Config(), iter(lambda: stream.read(7), b""), ("127.0.0.1", 1))
    req = next(parser)
    while req.body.read(5):
        pass
    return len(data) - len(parser.unreader.take_buffered()) - len(stream.read())


def content_length(body: bytes) -> bytes:
    return b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def chunked(pieces: list[bytes], trailers: bytes = b"") -> bytes:
    out = b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    for p in pieces:
        out += b"%x;e=1\r\n" % len(p) + p + b"\r\n"
    return out + b"0\r\n" + trailers + b"\r\n"


requests = st.one_of(
    st.builds(content_length, st.binary(max_size=300)),
    st.builds(chunked, st.lists(st.binary(min_size=1, max_size=60), max_size=5),
              st.sampled_from([b"", b"X-Sum: 1\r\n", b"A: 1\r\nB: 2\r\n"])),
    st.just(b"\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"),
)


@settings(max_examples=300, deadline=None)
@given(requests, st.lists(st.integers(0, 400), max_size=6), st.binary(max_size=20))
def test_request_end_matches_gunicorn_however_split(request: bytes, cuts: list[int], after: bytes) -> None:
    data = request + after  # `after`: the start of a pipelined request
    framer = framed(data, [c for c in cuts if c <= len(data)])
    assert framer.state is Framed.COMPLETE
    assert framer.request_end == len(request) == parser_end(data)
    assert bytes(framer.data) == data  # nothing lost or reordered


def test_incomplete_until_the_last_byte() -> None:
    for data in (content_length(b"abc"), chunked([b"abc", b"de"], b"T: 1\r\n")):
        framer = RequestFramer(LIMIT_H, LIMIT_B)
        for i in range(len(data) - 1):
            assert framer.feed(data[i:i + 1]) is Framed.MORE, (data, i)
        assert framer.feed(data[-1:]) is Framed.COMPLETE


def test_limits() -> None:
    assert framed(content_length(b"x" * (LIMIT_B + 1))[:80]).state is Framed.TOO_LARGE  # declared: body unread
    assert framed(chunked([b"x" * 600, b"y" * 600])[:-10]).state is Framed.TOO_LARGE
    assert framed(b"GET / HTTP/1.1\r\nA: " + b"a" * LIMIT_H).state is Framed.HEADERS_TOO_LARGE
    assert framed(b"x" * (LIMIT_H + 1)).state is Framed.HEADERS_TOO_LARGE
    assert framed(content_length(b"x" * LIMIT_B)).state is Framed.COMPLETE


def test_unframable_requests_pass_to_the_parser() -> None:
    head = b"POST /x HTTP/1.1\r\nHost: a\r\n"
    for extra in (b"Content-Length: 1x\r\n", b"Content-Length: 1\r\nContent-Length: 2\r\n",
                  b"Transfer-Encoding: gzip\r\n", b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n"):
        assert framed(head + extra + b"\r\n").state is Framed.PASS, extra
    assert framed(head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n").state is Framed.PASS


def test_expect_continue_is_dropped_from_what_the_parser_sees() -> None:
    data = b"POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nok"
    framer = framed(data)
    assert framer.expects_continue and framer.state is Framed.COMPLETE
    assert framer.without_expect_continue() == b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok"
