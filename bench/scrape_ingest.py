"""Pull scraping's cost per target per interval against pushing the same pprof to `/api/v1/ingest`.

A Go program (tests/server/test_go_profile_types.py's, standard library only) writes real heap,
mutex, block and goroutine profiles, and tests/profiler/go_profile.py a real CPU profile; a separate
process serves them at net/http/pprof's paths (its CPU is not counted). Blocks alternate:
  native  -- the five bodies POSTed to /api/v1/ingest?type=<profile> (Flask test client, in process)
  scrape  -- Scraper.scrape_target(): fetch over HTTP, decode, cumulative deltas, store, health row
both into the same SQLite database; this process's CPU time per target round is compared, each
scrape block divided by the mean of the native blocks around it (bench/ratios.py).

  python bench/scrape_ingest.py --rounds 5 --per-block 20
"""

from __future__ import annotations

import argparse
import http.server
import multiprocessing as mp
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratios import describe, sandwiched

from server import db
from server.app import create_app
from server.auth import create_token
from server.scrape.config import PROFILES, Target
from server.scrape.runner import Scraper
from tests.profiler.go_profile import build_go_profile, go_env
from tests.server.test_go_profile_types import GO_MAIN

FILES = {"memory": "heap0.pb.gz", "mutex": "mutex.pb.gz", "block": "block.pb.gz", "goroutine": "goroutine.pb.gz",
         "cpu": "go_cpu.pb.gz"}


def build(tmp: Path) -> dict[str, bytes]:
    go = shutil.which("go") or "/usr/bin/go"
    (tmp / "src").mkdir()
    (tmp / "src" / "main.go").write_text(GO_MAIN)
    (tmp / "src" / "go.mod").write_text("module gotypes\n\ngo 1.19\n")
    subprocess.run([go, "build", "-o", str(tmp / "gotypes"), "."], cwd=tmp / "src", env=go_env(tmp), check=True,
                   capture_output=True, timeout=300)
    subprocess.run([str(tmp / "gotypes"), str(tmp)], env=go_env(tmp), check=True, capture_output=True, timeout=60)
    build_go_profile(go, tmp)
    return {name: (tmp / f).read_bytes() for name, f in FILES.items()}


class _Handler(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.bodies.get(self.path.split("?")[0], b"")
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(bodies: dict[str, bytes], port: mp.Value) -> None:  # type: ignore[type-arg]
    _Handler.bodies = {PROFILES[name][0]: data for name, data in bodies.items()}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port.value = httpd.server_port
    httpd.serve_forever()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="scrape blocks (native blocks: one more)")
    ap.add_argument("--per-block", type=int, default=20, help="target rounds (all five profiles) per block")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="scrape-bench-"))
    bodies = build(tmp)
    port = mp.Value("i", 0)
    server = mp.Process(target=serve, args=(bodies, port), daemon=True)
    server.start()
    while not port.value:
        time.sleep(0.05)
    url = f"sqlite:///{tmp / 'bench.db'}"
    db.upgrade(url)
    app = create_app({"DATABASE_URL": url, "TESTING": True, "MAINTENANCE_INTERVAL_S": 0, "DATA_DIR": str(tmp),
                      "LOG_LEVEL": "WARNING", "AUTH": True})
    storage = app.extensions["hotpath"].storage
    token = create_token(storage.engine, ["ingest"], "bench")
    client = app.test_client()
    target = Target("bench", f"127.0.0.1:{port.value}", "http", {"job": "bench", "instance": f"127.0.0.1:{port.value}"},
                    10.0, 10.0)
    scraper = Scraper(storage, [target])

    def native(i: int) -> None:
        for name, data in bodies.items():
            resp = client.post(f"/api/v1/ingest?service=native&type={name}", data=data,
                               headers={"Authorization": f"Bearer {token}"}, content_type="application/octet-stream")
            assert resp.status_code == 200, resp.get_json()

    def scrape(i: int) -> None:
        errors = scraper.scrape_target(target)
        assert not any(errors.values()), errors

    def block(fn: Callable[[int], None]) -> float:
        started = time.process_time()
        for i in range(args.per_block):
            fn(i)
        return (time.process_time() - started) * 1000 / args.per_block

    block(native)
    block(scrape)  # warm-up: dictionaries filled, first cumulative baselines taken
    bases, runs = [block(native)], []
    for _ in range(args.rounds):
        runs.append(block(scrape))
        bases.append(block(native))
    print(f"per target round (cpu, memory, mutex, block, goroutine), this process's CPU ms: "
          f"native ingest {sum(bases) / len(bases):.1f}, scrape+ingest {sum(runs) / len(runs):.1f}")
    print(f"scrape / native: {describe(sandwiched(runs, bases))}")
    server.terminate()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
