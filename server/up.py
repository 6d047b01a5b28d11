"""`hotpath up`: the server on SQLite in a data dir plus a local collector, until Ctrl-C.

Tokens: an ingest token for the collector (kept in `DATA_DIR/collector.token`, mode 0600) and a
read token for the browser (`DATA_DIR/ui.token`); both are reused on the next run if still valid.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy import Engine


def _token(engine: Engine, path: Path, scope: str, name: str) -> str:
    from server import auth

    if path.exists():
        saved = path.read_text().strip()
        if saved and auth.Authenticator(engine).from_token(saved) is not None:
            return saved
    token = auth.create_token(engine, [scope], name)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def collector_blocker() -> str | None:
    """Why the local collector cannot run here, or None when it can be tried."""
    import importlib.util

    if os.geteuid() != 0:
        return "the collector needs root for BPF (run `sudo hotpath up`)"
    if importlib.util.find_spec("bcc") is None:
        return "BCC's Python bindings are missing (apt-get install python3-bpfcc)"
    from hotpath.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "collector" not in subs.choices:
        return "this build has no `hotpath collector` command yet"
    return None


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def _stop(proc: subprocess.Popen | None, name: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        print(f"hotpath up: {name} did not stop in 10 s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


def run_up(args: argparse.Namespace) -> int:
    from hotpath.command import CommandError
    from server import db
    from server.config import check_bind, data_dir, database_url, load_config

    cfg = load_config({"DATA_DIR": args.data_dir} if args.data_dir else {})
    cfg["DATABASE_URL"] = ""  # `up` is the embedded SQLite experience
    try:
        host, port = check_bind(args.bind, True)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    ddir = data_dir(cfg)
    ddir.mkdir(parents=True, exist_ok=True)
    url = database_url(cfg)
    db.upgrade(url)
    engine = db.make_engine(url)
    ingest_token = _token(engine, ddir / "collector.token", "ingest", "hotpath up collector")
    read_token = _token(engine, ddir / "ui.token", "read", "hotpath up browser")
    engine.dispose()
    del ingest_token  # the collector reads it from the file
    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    def _terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops both children like Ctrl-C does

    signal.signal(signal.SIGTERM, _terminate)
    python = sys.executable
    # Children get their own sessions so Ctrl-C (or a group-wide SIGTERM) reaches only us and we stop
    # them in order: the collector first, while the server is still up to take its final flush.
    server = subprocess.Popen([python, "-m", "hotpath", "server", "--data-dir", str(ddir), "--bind", args.bind],
                              start_new_session=True)
    collector: subprocess.Popen | None = None
    scraper: subprocess.Popen | None = None
    try:
        if not _wait_healthy(base, server):
            _stop(server, "server")
            raise CommandError(f"the server did not come up on {args.bind} (see its messages above)", 1)
        blocker = "--no-collector given" if args.no_collector else collector_blocker()
        if blocker is None:
            collector = subprocess.Popen([python, "-m", "hotpath", "collector", "--server", base,
                                          "--token-file", str(ddir / "collector.token"),
                                          "--spool-dir", str(ddir / "spool")], start_new_session=True)
            time.sleep(3)
            if collector.poll() is not None:
                blocker = f"the collector exited with status {collector.returncode} (see its messages above)"
                collector = None
        if blocker:
            print(f"hotpath up: local collector not started: {blocker}; serving stored data only", file=sys.stderr)
        if args.scrape:  # one scraper process (not one per server worker), storing straight into the database
            scraper = subprocess.Popen([python, "-m", "hotpath", "scrape", "--data-dir", str(ddir),
                                        *(a for url in args.scrape for a in ("--target", url))], start_new_session=True)
        print(f"Hotpath UI: {base}/ui/#token={read_token}", flush=True)
        print(f"(data in {ddir}; Ctrl-C stops {'server and collector' if collector else 'the server'})", flush=True)
        while server.poll() is None:
            if collector is not None and collector.poll() is not None:
                print(f"hotpath up: the collector exited with status {collector.returncode}", file=sys.stderr)
                collector = None
            time.sleep(0.5)
        return server.returncode or 0
    except KeyboardInterrupt:
        print("hotpath up: stopping", file=sys.stderr)
        return 0
    finally:
        _stop(collector, "collector")
        _stop(scraper, "scraper")
        _stop(server, "server")


