"""The gunicorn worker `hotpath server` runs: each request is read whole in the worker's event loop,
and only a complete request takes a thread.

gunicorn's gthread worker gives a connection a thread as soon as its first byte arrives, and the
thread then blocks reading the rest: eight clients sending a header byte every 2 s held every
thread of every worker, and /healthz went unanswered (issue 15). Here the main loop (gunicorn's
selector loop, which already waits on idle keep-alive connections) also receives requests, framed
by server/request_framing.py, with a total deadline for the headers and another for the body;
a slow or idle client costs a socket and its buffered bytes, never a thread. Why not gevent: a
CPU-bound query would then stall every connection of its worker, /healthz included.

Tied to gunicorn's ThreadWorker internals (enqueue_req, murder_pending, TConn): pinned in
pyproject.toml, and tests/server/test_slow_clients.py runs it for real.
"""

from __future__ import annotations

import json
import selectors
import socket
import struct
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from server.heap import IdleTrim
from server.request_framing import Framed, RequestFramer

MAX_HEADER_BYTES = 64 * 1024  # request line + headers; nginx's default allows 32 KiB
_RECV = 256 * 1024
_SWEEP_EVERY_S = 0.25
_LINGER_S = 2.0  # as gunicorn's close_graceful


@dataclass(frozen=True)
class RequestLimits:
    """How long a client may take to send a request, and how large its body may be."""

    header_timeout_s: float = 10.0  # from accept (or the first byte on a kept-alive connection) to the blank line
    body_timeout_s: float = 30.0  # from the end of the headers to the end of the body; also a thread's send/recv stall
    max_body_bytes: int = 8 * 1024 * 1024

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> RequestLimits:
        return cls(float(cfg["HEADER_TIMEOUT_S"]), float(cfg["BODY_TIMEOUT_S"]), int(cfg["MAX_BODY_BYTES"]))


class _Reading:
    __slots__ = ("conn", "deadline", "framer", "gone")

    def __init__(self, conn: Any, framer: RequestFramer, deadline: float) -> None:
        self.conn = conn
        self.framer = framer
        self.deadline = deadline
        self.gone = False  # the client closed before its request was whole


def _reply(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode() + body


class BufferingWorker(ThreadWorker):  # type: ignore[misc]
    """gthread with whole-request buffering in the event loop; also trims the heap when idle.

    serve() sets the class attributes on a subclass."""

    limits = RequestLimits()
    heap_idle_trim_s = 0.0

    def init_process(self) -> None:
        if self.cfg.is_ssl:
            raise RuntimeError("BufferingWorker does not terminate TLS: put a TLS proxy in front")
        self.reading: dict[Any, _Reading] = {}
        self.lingering: dict[Any, float] = {}  # closed connections draining the client's last bytes
        self.busy = 0  # requests handed to the thread pool and not finished
        self.next_sweep = 0.0
        self.idle_trim = IdleTrim(self.heap_idle_trim_s)
        stall = self.limits.body_timeout_s
        self.stall = struct.pack("ll", int(stall), int(stall % 1 * 1e6))
        super().init_process()

    # Accept only while a thread is free: like the sync worker, a busy worker leaves new
    # connections to its siblings (run() calls this whenever the wish to accept changes).
    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled and self.busy < self.cfg.threads)

    def enqueue_req(self, conn: Any) -> None:
        """Start reading a request (new connection, kept-alive one that became readable, or
        bytes of a pipelined request already read)."""
        held = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        reading = _Reading(conn, RequestFramer(MAX_HEADER_BYTES, self.limits.max_body_bytes, held),
                           time.monotonic() + self.limits.header_timeout_s)
        conn.sock.setblocking(False)
        # Most requests are already in the socket buffer: read before waiting on the poller.
        if reading.framer.state is Framed.MORE and self._read(reading) is None:
            self.reading[conn] = reading
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, reading))
        else:
            self._done_reading(reading)

    def _on_readable(self, reading: _Reading, _sock: Any) -> None:
        if self._read(reading) is not None:
            self._stop_reading(reading)
            self._done_reading(reading)

    def _read(self, reading: _Reading) -> bool | None:
        """Receive what is there: None to wait for more, True once framed, False if the client left."""
        conn, framer = reading.conn, reading.framer
        try:
            piece = conn.sock.recv(_RECV)
        except BlockingIOError:
            return None
        except OSError:
            piece = b""
        if not piece:
            reading.gone = True
            return False
        had_headers = framer.headers_done
        state = framer.feed(piece)
        if framer.headers_done and not had_headers:
            reading.deadline = time.monotonic() + self.limits.body_timeout_s
            if framer.expects_continue and state is Framed.MORE:
                self._send_quietly(conn, b"HTTP/1.1 100 Continue\r\n\r\n")
        return None if state is Framed.MORE else True

    def _done_reading(self, reading: _Reading) -> None:
        if reading.gone:
            self._drop(reading.conn)
        else:
            self._framed(reading)

    def _framed(self, reading: _Reading) -> None:
        conn, framer = reading.conn, reading.framer
        if framer.state is Framed.TOO_LARGE:
            self._refuse(conn, _reply(413, "Content Too Large", f"request body exceeds the limit of "
                                      f"{self.limits.max_body_bytes} bytes"))
            return
        if framer.state is Framed.HEADERS_TOO_LARGE:
            self._refuse(conn, _reply(431, "Request Header Fields Too Large",
                                      f"request line and headers exceed {MAX_HEADER_BYTES} bytes"))
            return
        data = framer.without_expect_continue() if framer.expects_continue else bytes(framer.data)
        conn.sock.setblocking(True)
        if not conn.initialized:
            # The thread never waits on a client for a whole request (it is buffered); these bound a
            # client that stops reading its response, or a request framed differently by the parser.
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self.stall)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self.stall)
            conn.init()
        conn.parser.unreader.unread(data)
        conn.data_ready = True
        self.busy += 1
        if self.busy >= self.cfg.threads and self._accepting:
            super().set_accept_enabled(False)
        super().enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.busy -= 1
        self.idle_trim.request_done()
        if fs.cancelled() or fs.exception() is not None or fs.result():
            super().finish_request(conn, fs)  # kept alive (or failed: closed at once)
            return
        # gunicorn closes "gracefully" here, in this loop: it waits up to 2 s for the client to
        # close its side, and every connection of the worker waits with it. Linger in the loop instead.
        self.nr_conns -= 1
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_lingering, conn))
        except OSError:
            conn.close()
            return
        self.lingering[conn] = time.monotonic() + _LINGER_S

    def _on_lingering(self, conn: Any, _sock: Any) -> None:
        try:
            if conn.sock.recv(_RECV):
                return  # a client still sending: drained, up to the linger deadline
        except BlockingIOError:
            return
        except OSError:
            pass
        self._end_linger(conn)

    def _end_linger(self, conn: Any) -> None:
        del self.lingering[conn]
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        conn.close()

    def murder_pending(self) -> None:
        """Close connections past their header or body deadline, trim an idle heap (every loop turn,
        at most ~4x a second)."""
        super().murder_pending()
        now = time.monotonic()
        if now < self.next_sweep and self.alive:
            return
        self.next_sweep = now + _SWEEP_EVERY_S
        self.idle_trim.tick(self.busy)
        for conn in [c for c, deadline in self.lingering.items() if deadline <= now]:
            self._end_linger(conn)
        for reading in list(self.reading.values()):
            started = bool(reading.framer.data.strip(b"\r\n"))
            if reading.deadline <= now or not self.alive and not started:
                self._stop_reading(reading)
                if started:
                    self._refuse(reading.conn, _reply(408, "Request Timeout", "request not received in time"))
                else:
                    self._drop(reading.conn)

    def _stop_reading(self, reading: _Reading) -> None:
        del self.reading[reading.conn]
        try:
            self.poller.unregister(reading.conn.sock)
        except (KeyError, ValueError, OSError):
            pass

    def _refuse(self, conn: Any, response: bytes) -> None:
        self._send_quietly(conn, response)
        self._drop(conn)

    def _send_quietly(self, conn: Any, data: bytes) -> None:
        try:  # small, into an empty socket buffer: a non-blocking send takes it whole or the client is gone
            conn.sock.send(data)
        except OSError:
            pass

    def _drop(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()
