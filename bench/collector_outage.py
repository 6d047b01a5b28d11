"""Durability run: the real `hotpath collector` while the server fails for a full outage window.

A local HTTP ingest sink answers 503 for `--outage` seconds (default 120), then 200. Afterwards
the agent gets SIGTERM; the script checks that every interval arrived exactly once (unique
Idempotency-Keys stored == 2 x status lines, none left in the spool) and prints the figures.

Usage: .venv/bin/python bench/collector_outage.py [--outage 120] [--interval 10s] [--after 30]
"""

from __future__ import annotations

import argparse
import http.server
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Sink(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.failing = True
        self.attempts = 0
        self.stored: dict[str, int] = {}
        self.lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    server: Sink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.attempts += 1
            code = 503 if self.server.failing else 200
            if code == 200:
                key = self.headers.get("Idempotency-Key", "")
                self.server.stored[key] = self.server.stored.get(key, 0) + 1
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        del body

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outage", type=float, default=120.0)
    ap.add_argument("--interval", default="10s")
    ap.add_argument("--after", type=float, default=30.0, help="seconds to run after the server is back")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hp-outage-"))
    token = tmp / "token"
    token.write_text("t\n")
    spool = tmp / "spool"
    sink = Sink()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{sink.server_address[1]}"
    lines: list[str] = []
    proc = subprocess.Popen([sys.executable, "-m", "hotpath", "collector", "--server", url, "--token-file",
                             str(token), "--interval", args.interval, "--spool-dir", str(spool)],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t0 = time.monotonic()
    time.sleep(args.outage)
    max_spooled = max((int(m.group(1)) for line in lines if (m := re.search(r"spooled=(\d+)", line))), default=0)
    sink.failing = False
    back = time.monotonic()
    time.sleep(args.after)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    reader.join(timeout=5)
    intervals = sum(1 for line in lines if re.search(r"interval \d+ samples=", line))
    left = len(list(spool.glob("*.json")))
    dup = sum(1 for n in sink.stored.values() if n > 1)
    print(f"outage {args.outage:.0f}s then {args.after:.0f}s up; agent exit code {rc}")
    print(f"intervals {intervals}, batches expected {2 * intervals}, stored unique keys {len(sink.stored)}, "
          f"keys re-sent after storing {dup}, left in spool {left}, max spooled during outage {max_spooled}, "
          f"POST attempts {sink.attempts} (backoff), run {back - t0:.0f}s + {time.monotonic() - back:.0f}s")
    ok = rc == 0 and len(sink.stored) == 2 * intervals and left == 0
    print("RESULT:", "every interval arrived exactly once" if ok else "MISMATCH")
    sink.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
