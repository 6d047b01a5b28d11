"""Issue 15 points 13-14 with real sockets: a redirect never carries the token elsewhere nor counts
as a store; a malformed, huge or dripping answer ends in a retry within the deadline, and the
agent runs on."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from collector.agent import Agent, AgentConfig
from collector.ship import Outcome, Shipper
from collector.source import FakeSource
from collector.spool import Spool
from tests.collector.test_agent import drains, make_symbolizer


class Recorder(http.server.ThreadingHTTPServer):
    """Answers every request with `status` (and a Location for redirects); records what came."""

    def __init__(self, status: int = 200, location: str = "") -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.status = status
        self.location = location
        self.seen: list[tuple[str, str, str]] = []  # (method, path, Authorization)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        self.send_response(self.server.status)
        if self.server.location:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer


@pytest.fixture()
def servers() -> Iterator[Callable[..., Recorder]]:
    started: list[Recorder] = []

    def start(status: int = 200, location: str = "") -> Recorder:
        srv = Recorder(status, location)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_not_followed_token_stays_home_batch_kept(tmp_path, servers, status) -> None:
    elsewhere = servers(200)
    home = servers(status, location=f"{elsewhere.url}/steal")
    spool = Spool(tmp_path / "spool")
    spool.put(b"body", {"service": "s"}, key="k1")
    shipper = Shipper(home.url, "secret-ingest-token")
    assert shipper.flush(spool) == 0
    assert elsewhere.seen == []  # nothing, least of all the token, went to the other origin
    assert [s[:1] for s in home.seen] == [("POST",)]
    assert [i.key for i in spool.items()] == ["k1"]  # a redirect's answer is no store
    assert f"redirect to {elsewhere.url}/steal not followed" in shipper.stats.last_error
    home.status, home.location = 200, ""
    shipper.next_try = 0.0
    assert shipper.flush(spool) == 1 and spool.items() == []  # the configured server stored it


def raw_server(answer: Callable[[socket.socket], None]) -> tuple[str, threading.Event]:
    """A TCP server that reads a request and then runs `answer` on the connection (each in a thread)."""
    lsock = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        lsock.settimeout(0.2)
        while not done.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
        lsock.close()

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                conn.recv(65536)
                answer(conn)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{lsock.getsockname()[1]}", done


def garbage(conn: socket.socket) -> None:
    conn.sendall(b"GARBAGE NOT HTTP\r\n\r\n")


def long_header(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (70 * 1024) + b"\r\nContent-Length: 0\r\n\r\n")


def drip(conn: socket.socket) -> None:
    # One byte every 0.3 s: each read arrives well within the socket timeout. Stops after ~12 s,
    # so a shipper without a total deadline fails the test instead of hanging it.
    for byte in (b"HTTP/1.1 200 OK\r\nX-Slow: " + b"z" * 40):
        conn.sendall(bytes([byte]))
        time.sleep(0.3)


@pytest.mark.parametrize("answer", [garbage, long_header, drip], ids=["garbage", "long_header", "drip"])
def test_bad_answers_are_retried_within_the_deadline(tmp_path, answer) -> None:
    url, done = raw_server(answer)
    spool = Spool(tmp_path / "spool")
    item = spool.put(b"body", {}, key="k1")
    shipper = Shipper(url, "t", timeout_s=1.5)
    try:
        t0 = time.monotonic()
        outcome = shipper.send(item)
        elapsed = time.monotonic() - t0
    finally:
        done.set()
    assert outcome is Outcome.RETRY and shipper.stats.last_error
    assert elapsed < 1.5 + 1.0, f"send took {elapsed:.1f}s with a 1.5 s deadline"
    assert [i.key for i in spool.items()] == ["k1"]


def test_agent_runs_on_through_bad_answers(tmp_path) -> None:
    """The real loop (real clock and wait) against a server that answers garbage: no exception
    escapes `run()`, intervals keep coming, every batch stays spooled."""
    url, done = raw_server(garbage)
    config = AgentConfig(server=url, token="t", interval_s=0.2, service="svc", host="h")
    agent = Agent(config, FakeSource(drains), make_symbolizer(tmp_path), Spool(tmp_path / "spool"),
                  Shipper(url, "t", timeout_s=1.0, base_backoff_s=0.01, max_backoff_s=0.02),
                  out=lambda _l: None)
    result: list[object] = []
    runner = threading.Thread(target=lambda: result.append(agent.run()), daemon=True)
    runner.start()
    try:
        time.sleep(2.0)
        alive = runner.is_alive()
    finally:
        agent.stop.set()
        runner.join(10)
        done.set()
    assert alive, "Agent.run() returned or raised on a garbage answer"
    assert result == [0] and agent.intervals >= 3
    assert len(agent.spool.items()) == 2 * agent.intervals  # cpu + offcpu each, none lost
    assert agent.shipper.stats.failures >= 3

