"""Fixtures for the UI's end-to-end tests: a real server on a temp SQLite database, real ingested data
(known collector-style pprofs and fleet-simulator batches), and a real Chromium driven by Playwright.

Nothing is stubbed: the page talks to `server.app.create_app` over HTTP, exactly as in production.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
XSS_NAME = "<img src=x onerror=alert(1)>"

# The known profile: stacks (root first) -> samples. Ground truth for % matched, table and zoom.
KNOWN = {
    "main;parse;decode": 300,
    "main;work;compute;leaf": 400,
    "main;work;hash": 200,
    f"main;{XSS_NAME}": 50,
    "main;io;k:entry_SYSCALL_64;k:vfs_read": 50,
}
# The same service one release later: hash grew from 20% to 50% of the total.
KNOWN_V2 = {**KNOWN, "main;work;hash": 800}
DEEP = {";".join(["main"] + [f"d{k}" for k in range(1, 1000)]): 10, "main;shallow": 10}
OFFCPU = {"main;io;k:entry_SYSCALL_64;k:schedule": 3_000_000_000, "main;work;lock_wait": 1_000_000_000}


@dataclass
class LiveServer:
    url: str
    read_token: str
    ingest_token: str
    t_known: int  # unix seconds of the known batches


def _frame(name: str) -> Any:
    from profiler.model import Frame, FrameKind

    if name.startswith("k:"):
        return Frame(name[2:], "[kernel.kallsyms]", FrameKind.KERNEL)
    return Frame(name, "/usr/bin/app", FrameKind.NATIVE)


def known_profile(stacks: dict[str, int], at: float, hz: int = 19) -> Any:
    from profiler.model import Sample
    from profiler.types import new_cpu_profile

    prof = new_cpu_profile(hz, time_nanos=int(at * 1e9), duration_nanos=10_000_000_000)
    for key, count in stacks.items():
        prof.samples.append(Sample(tuple(_frame(n) for n in key.split(";")), (count, count * prof.period),
                                   (("pid", "42"), ("process", "app"))))
    prof.counters = {"missed_stacks": 7, "unsymbolized_frames": 3}
    return prof


def offcpu_profile(stacks: dict[str, int], at: float) -> Any:
    from profiler.model import Sample
    from profiler.types import new_offcpu_profile

    prof = new_offcpu_profile(time_nanos=int(at * 1e9), duration_nanos=10_000_000_000)
    for key, ns in stacks.items():
        prof.samples.append(Sample(tuple(_frame(n) for n in key.split(";")), (ns,)))
    return prof


def ingest(url: str, token: str, body: bytes, **labels: str) -> dict[str, Any]:
    req = urllib.request.Request(f"{url}/api/v1/ingest?{urllib.parse.urlencode(labels)}", data=body, method="POST",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/octet-stream",
                                          "Idempotency-Key": uuid.uuid4().hex})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _load_fleet_sim() -> Any:
    spec = importlib.util.spec_from_file_location("fleet_sim", ROOT / "bench" / "fleet_sim.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fleet_sim"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real server (werkzeug in a thread) with known profiles and simulator batches ingested."""
    try:
        from profiler import pprof
        from server import db
        from server.app import create_app
        from server.auth import create_token
    except ImportError as exc:  # a part of the stack not built yet is a real failure under CI
        require(False, f"server/profile core importable ({exc})")
        raise
    from werkzeug.serving import make_server

    tmp = tmp_path_factory.mktemp("ui-server")
    url = f"sqlite:///{tmp / 'hotpath.db'}"
    db.upgrade(url)
    app = create_app({"DATABASE_URL": url, "TESTING": True, "MAINTENANCE_INTERVAL_S": 0, "DATA_DIR": str(tmp),
                      "LOG_LEVEL": "WARNING", "AUTH": True})
    engine = app.extensions["hotpath"].storage.engine
    read_token = create_token(engine, ["read"], "ui-test-read")
    ingest_token = create_token(engine, ["ingest"], "ui-test-ingest")
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    now = time.time()
    t_known = int(now - 600)
    ingest(base, ingest_token, pprof.encode(known_profile(KNOWN, t_known)), service="known", host="h1")
    ingest(base, ingest_token, pprof.encode(known_profile(KNOWN_V2, t_known)), service="known-v2", host="h1")
    ingest(base, ingest_token, pprof.encode(offcpu_profile(OFFCPU, t_known)), service="known", host="h1")
    ingest(base, ingest_token, pprof.encode(known_profile(DEEP, t_known)), service="deep", host="h1")
    # One service over two time ranges: last release (25 min ago) vs this one (5 min ago).
    ingest(base, ingest_token, pprof.encode(known_profile(KNOWN, now - 1500)), service="ranges", host="h1")
    ingest(base, ingest_token, pprof.encode(known_profile(KNOWN_V2, now - 300)), service="ranges", host="h1")
    sim = _load_fleet_sim()
    fleet = sim.Fleet(sim.FleetConfig(services=3, hosts=4, stacks_per_service=400, functions_per_service=120,
                                      unique_per_batch=120))
    for host, _t, profile in fleet.batches(now - 1800, 1500):
        ingest(base, ingest_token, sim.encode(profile), **fleet.series_labels(host))
    try:
        yield LiveServer(base, read_token, ingest_token, t_known)
    finally:
        httpd.shutdown()
        engine.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    require(os.path.exists(CHROMIUM), "Chromium at /usr/bin/chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "Python Playwright (pip install playwright)")
        raise
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Page:
    """A logged-in page plus what it must not do: JS errors and dialogs are collected and checked."""

    def __init__(self, context: Any, server: LiveServer) -> None:
        self.context = context
        self.server = server
        self.page = context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.csp: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.csp.append(m.text) if "Content Security Policy" in m.text else None)
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, query: str = "") -> Any:
        """Open /ui/<query> and wait until the main data request has been drawn (or failed)."""
        self.page.goto(f"{self.server.url}/ui/{query}")
        self.wait_idle()
        return self.page

    def wait_idle(self) -> None:
        self.page.wait_for_function("() => document.getElementById('status').textContent !== 'loading…'"
                                    " && (window.hotpath && (window.hotpath.model || "
                                    "document.getElementById('status').textContent))", timeout=30_000)

    def js(self, expr: str, arg: Any = None) -> Any:
        return self.page.evaluate(expr, arg)

    def shot(self, name: str, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture
def ui(browser: Any, live_server: LiveServer) -> Iterator[Page]:
    """A fresh browser context logged in through `/ui/#token=` (the token is stripped from the URL)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    p = Page(context, live_server)
    with p.page.expect_response(lambda r: r.url.endswith("/api/v1/session") and r.request.method == "POST"):
        p.page.goto(f"{live_server.url}/ui/#token={live_server.read_token}")
    assert "token" not in p.page.url, "the read token must be stripped from the URL"
    p.wait_idle()
    yield p
    try:
        assert not p.errors, f"JavaScript errors: {p.errors}"
        assert not p.dialogs, f"dialogs fired (script ran?): {p.dialogs}"
        assert not p.csp, f"CSP violations: {p.csp}"
    finally:
        context.close()

