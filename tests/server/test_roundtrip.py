"""Acceptance 1: a Go runtime CPU profile and a collector-shaped pprof round-trip through the server.

Ground truth is the ingested file itself: flame-graph totals must equal it, the pprof download must
read in `go tool pprof -top` with the same totals and per-function values, and folded must agree.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from profiler import folded, pprof
from profiler.model import Frame, FrameKind, Sample
from profiler.types import new_cpu_profile
from tests.profiler.go_profile import build_go_profile, go_pprof
from tests.server.conftest import bearer

ROW = re.compile(r"^\s*(\S+)\s+\S+%\s+\S+%\s+(\S+)\s+\S+%\s+(.+?)\s*$")


@pytest.fixture(scope="module")
def go_profile(go_bin: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    tmp = tmp_path_factory.mktemp("go")
    return go_bin, tmp, build_go_profile(go_bin, tmp)


def top_table(go: str, tmp: Path, path: Path) -> tuple[str, dict[str, tuple[str, str]]]:
    """(total line, {function: (flat, cum)}) from `go tool pprof -top` on the cpu sample type."""
    out = go_pprof(go, tmp, "-top", "-sample_index=cpu", "-nodefraction=0", "-nodecount=100000", str(path))
    total = next(line for line in out.splitlines() if "total" in line and "Showing" in line)
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m and m.group(1) != "flat":
            rows[m.group(3)] = (m.group(1), m.group(2))
    return total.split("of ", 1)[1], rows


def folded_counts(text: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if line.strip():
            stack, _, value = line.rpartition(" ")
            out[stack] += int(value)
    return out


def test_go_profile_round_trip(client: Any, tokens: dict[str, str], go_profile: tuple[str, Path, Path],
                               tmp_path: Path) -> None:
    go, tmp, path = go_profile
    data = path.read_bytes()
    original = pprof.decode(data)
    cpu = original.value_index("cpu")
    resp = client.post("/api/v1/ingest?service=gort&host=builder", data=data, headers=bearer(tokens["ingest"]),
                       content_type="application/octet-stream")
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["samples"] == len(original.samples)
    window = {"query": 'cpu{service="gort"}', "from": "now-1h"}
    fg = client.get("/api/v1/flamegraph", query_string={**window, "max_nodes": 100000},
                    headers=bearer(tokens["read"])).get_json()
    assert fg["numTicks"] == original.total(cpu) > 0
    assert "main.leafSpin" in fg["names"]
    download = client.get("/api/v1/pprof", query_string=window, headers=bearer(tokens["read"]))
    assert download.status_code == 200
    assert "attachment" in download.headers["Content-Disposition"]
    out = tmp_path / "download.pb.gz"
    out.write_bytes(download.data)
    total_in, rows_in = top_table(go, tmp, path)
    total_out, rows_out = top_table(go, tmp, out)
    assert total_out == total_in
    assert rows_out == rows_in and "main.leafSpin" in rows_out
    text = client.get("/api/v1/folded", query_string=window, headers=bearer(tokens["read"])).get_data(as_text=True)
    assert folded_counts(text) == folded_counts(folded.render(original, cpu))


def test_collector_shaped_profile_round_trip(client: Any, tokens: dict[str, str], go_bin: str,
                                             tmp_path: Path) -> None:
    prof = new_cpu_profile(19, time_nanos=__import__("time").time_ns(), duration_nanos=10_000_000_000)
    k = [Frame(n, "[kernel.kallsyms]", FrameKind.KERNEL) for n in ("entry_SYSCALL_64", "do_syscall_64", "vfs_read")]
    app = [Frame("main", "/usr/bin/app", FrameKind.NATIVE), Frame("serve", "/usr/bin/app", FrameKind.NATIVE),
           Frame("/usr/lib/libc.so.6+0x1f2a0", "/usr/lib/libc.so.6", FrameKind.NATIVE)]
    lab_a = (("pid", "4242"), ("process", "app"), ("thread", "worker"))
    lab_b = (("pid", "77"), ("process", "java"), ("thread", "gc"))
    prof.samples = [Sample(tuple(app[:2] + k), (5, 5 * prof.period), lab_a),
                    Sample(tuple(app), (3, 3 * prof.period), lab_a),
                    Sample(tuple(app[:2]), (2, 2 * prof.period), lab_b)]
    prof.counters = {"missed_stacks": 3, "unsymbolized_frames": 1}
    resp = client.post("/api/v1/ingest?service=agent&host=h1&kernel=6.18", data=pprof.encode(prof),
                       headers=bearer(tokens["ingest"]), content_type="application/octet-stream")
    assert resp.status_code == 200, resp.get_json()
    fg = client.get("/api/v1/flamegraph", query_string={"query": 'cpu{service="agent"}'},
                    headers=bearer(tokens["read"])).get_json()
    assert fg["numTicks"] == 10 * prof.period
    assert fg["counters"] == {"missed_stacks": 3, "unsymbolized_frames": 1}
    assert "kernel" in fg["kinds"] and "vfs_read" in fg["names"]
    fg = client.get("/api/v1/flamegraph", query_string={"query": 'cpu{service="agent", process!="java"}'},
                    headers=bearer(tokens["read"])).get_json()
    assert fg["numTicks"] == 8 * prof.period
    download = client.get("/api/v1/pprof", query_string={"query": 'cpu{service="agent"}'},
                          headers=bearer(tokens["read"]))
    out = tmp_path / "agent.pb.gz"
    out.write_bytes(download.data)
    back = pprof.decode(download.data)
    assert back.total(back.value_index("cpu")) == 10 * prof.period
    assert back.counters.get("missed_stacks") == 3
    total, rows = top_table(go_bin, tmp_path, out)
    assert "s total" in total or "ms total" in total
    assert rows["vfs_read"][0] == rows["vfs_read"][1] != "0"
    assert "/usr/lib/libc.so.6+0x1f2a0" in rows
