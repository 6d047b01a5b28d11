"""`hotpath up`: serves on SQLite in a data dir, prints a UI URL with a read token, stops on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from server.up import collector_blocker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_up(data_dir: Path, port: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "hotpath", "up", "--data-dir", str(data_dir), "--bind",
                             f"127.0.0.1:{port}", "--no-collector"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "HOTPATH_LOG_LEVEL": "WARNING"})
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("Hotpath UI: "):
            return proc, line.split(": ", 1)[1].strip()
        if proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"hotpath up printed no URL: {proc.stderr.read() if proc.stderr else ''}")


def test_up_serves_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc, url = start_up(tmp_path, port)
    try:
        assert url.startswith(f"http://127.0.0.1:{port}/ui/#token=hp_")
        token = url.split("#token=", 1)[1]
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/session", method="POST",
                                     data=json.dumps({"token": token}).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.load(resp)["authenticated"] is True
            assert "HttpOnly" in resp.headers["Set-Cookie"]
        assert (tmp_path / "hotpath.db").is_file()
        assert oct((tmp_path / "collector.token").stat().st_mode & 0o777) == "0o600"
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0
    err = proc.stderr.read() if proc.stderr else ""
    assert "--no-collector given" in err
    with socket.socket() as s:  # the server child is gone too
        assert s.connect_ex(("127.0.0.1", port)) != 0
    proc2, url2 = start_up(tmp_path, free_port())  # tokens are reused across runs
    proc2.send_signal(signal.SIGINT)
    proc2.wait(timeout=30)
    assert url2.split("#token=")[1] == url.split("#token=")[1]


def test_collector_blocker_explains() -> None:
    reason = collector_blocker()
    assert reason is None or isinstance(reason, str) and len(reason) > 10
