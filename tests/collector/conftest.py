"""Collector test fixtures: compiled C workloads, a real BPF session, a small real ingest server."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require

WORKLOADS = Path(__file__).parent / "workloads"
CFLAGS = ["-O1", "-fno-omit-frame-pointer", "-mno-omit-leaf-frame-pointer", "-pthread"]
# gcc's and most distributions' default: no frame pointers (the table unwinder's case).
NOFP_CFLAGS = ["-O2", "-fomit-frame-pointer", "-pthread"]


@pytest.fixture(scope="session")
def build(tmp_path_factory: pytest.TempPathFactory):
    """Compile `workloads/<name>.c` with frame pointers (nofp=True: without); returns the binary."""
    require(shutil.which("gcc") is not None, "gcc to build the C workloads")
    out_dir = tmp_path_factory.mktemp("workloads")
    built: dict[str, Path] = {}

    def _build(name: str, nofp: bool = False, extra: tuple[str, ...] = ()) -> Path:
        out_name = f"{name}-nofp" if nofp else name
        if out_name not in built:
            exe = out_dir / out_name
            subprocess.run(["gcc", *(NOFP_CFLAGS if nofp else CFLAGS), "-o", str(exe),
                            str(WORKLOADS / f"{name}.c"), *extra], check=True)
            built[out_name] = exe
        return built[out_name]

    return _build


def bpf_blocker() -> str | None:
    if os.geteuid() != 0:
        return "root for BPF"
    try:
        from collector.bpf_loader import import_bcc, preflight

        preflight()
        import_bcc()
    except Exception as exc:  # noqa: BLE001 - any loader failure means "no BPF here"
        return f"BPF (loader: {exc})"
    return None


@pytest.fixture(scope="session")
def bpf_ready() -> None:
    blocker = bpf_blocker()
    require(blocker is None, blocker or "")


class IngestRecorder(http.server.ThreadingHTTPServer):
    """A real HTTP ingest endpoint that records Idempotency-Keys and can fail on demand."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "ok"  # ok | 500 | 400
        self.keys: list[str] = []
        self.stored: dict[str, bytes] = {}
        self.queries: list[str] = []
        self.auth: list[str] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: IngestRecorder

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        key = self.headers.get("Idempotency-Key", "")
        with self.server.lock:
            mode = self.server.mode
            self.server.keys.append(key)
            self.server.auth.append(self.headers.get("Authorization", ""))
            self.server.queries.append(self.path)
            if mode == "ok":
                status = "duplicate" if key in self.server.stored else "stored"
                self.server.stored.setdefault(key, body)
        code = {"ok": 200, "500": 500, "400": 400}[mode]
        payload = b'{"status": "%s"}' % (status.encode() if mode == "ok" else b"error")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture()
def ingest_server() -> Iterator[IngestRecorder]:
    server = IngestRecorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
