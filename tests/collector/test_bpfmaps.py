"""Raw bpf(2) map access (collector/bpfmaps.py) against real kernel maps, and the loader
subprocess's error path (its message reaches the user verbatim)."""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from collector import bpfmaps
from collector.bpfmaps import BpfMap, percpu_u64_sum, possible_cpus
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
BPF_MAP_CREATE = 0
HASH, PERCPU_ARRAY = 1, 6


def create_map(map_type: int, key_size: int, value_size: int, max_entries: int) -> int:
    attr = ctypes.create_string_buffer(bpfmaps.ATTR_SIZE)
    struct.pack_into("<IIII", attr, 0, map_type, key_size, value_size, max_entries)
    return bpfmaps._bpf(BPF_MAP_CREATE, attr)


@pytest.fixture()
def root() -> None:
    require(os.geteuid() == 0, "root, to create BPF maps")


def test_hash_map_batch_read_and_delete_what_was_read(root) -> None:
    m = BpfMap(create_map(HASH, 16, 8, 4096), "t")
    try:
        assert (m.key_size, m.value_size, m.max_entries, m.percpu) == (16, 8, 4096, False)
        want = {struct.pack("<QQ", i, i * 7): struct.pack("<Q", i * i) for i in range(3000)}
        for k, v in want.items():
            m.update(k, v)
        assert dict(m.items()) == want  # several batch pieces, nothing lost or doubled
        m.batch_ok = False
        assert dict(m.items()) == want  # the key-by-key fallback agrees
        m.batch_ok = True
        first = list(want)[:1000]
        assert m.delete_keys(first) == 1000
        assert m.lookup(first[0]) is None and m.lookup(list(want)[1000]) == want[list(want)[1000]]
        assert m.delete_keys([first[0], *list(want)[1000:1010]]) == 10  # an absent key is skipped
        assert len(m.items()) == 1990
        assert m.clear() == 1990 and m.items() == [] and m.keys() == []
    finally:
        m.close()


def test_percpu_array_has_one_slot_per_possible_cpu(root) -> None:
    m = BpfMap(create_map(PERCPU_ARRAY, 4, 8, 8), "stats")
    try:
        n = possible_cpus()
        assert m.percpu and m.ncpus == n and m.read_size == 8 * n
        m.update(struct.pack("<i", 3), struct.pack(f"<{n}Q", *range(1, n + 1)))
        assert percpu_u64_sum(m.lookup(struct.pack("<i", 3))) == n * (n + 1) // 2
        assert percpu_u64_sum(m.lookup(struct.pack("<i", 2))) == 0
        assert len(m.items()) == 8
    finally:
        m.close()


def test_possible_cpus_parses_ranges(tmp_path) -> None:
    f = tmp_path / "possible"
    f.write_text("0-3,8-11\n")
    assert possible_cpus(str(f)) == 12
    f.write_text("0\n")
    assert possible_cpus(str(f)) == 1


def test_loader_error_reaches_the_user_verbatim(bpf_ready, tmp_path) -> None:
    """Root without capabilities: the loader subprocess passes preflight, the kernel refuses the
    program, and `hotpath record` prints the loader's LoaderError message, not a traceback."""
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) to drop capabilities")
    rec = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-m",
                          "hotpath", "record", "--duration", "1", "-o", str(tmp_path / "x.pb.gz")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert rec.returncode != 0 and not (tmp_path / "x.pb.gz").exists()
    assert "BPF program failed to compile or load" in rec.stderr, rec.stderr
    assert "Traceback" not in rec.stderr, rec.stderr
