"""Table identity, the disk cache, the row store and the table manager (against a fake maps writer,
with real processes and real libraries)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import numpy as np
import pytest

from collector.bpf_abi import MAPPING, UNWIND_ROW
from collector.symbolize.procmaps import Mapping, capture
from collector.unwind.compiler import FORMAT_VERSION, compile_file
from collector.unwind.row_store import RowStore
from collector.unwind.table_cache import TableCache, TableKey, decode, encode
from collector.unwind.table_manager import MAP_FP, MAP_PENDING, TableManager

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


class FakeMaps:
    """The BPF maps as plain memory: a row array and a dict of process entries."""

    def __init__(self, capacity: int, max_procs: int = 1 << 20) -> None:
        self.rows = np.zeros(capacity, dtype=UNWIND_ROW)
        self.procs: dict[int, np.ndarray] = {}
        self.max_procs = max_procs
        self.writes = 0

    def write_rows(self, first: int, rows: np.ndarray) -> None:
        assert first + len(rows) <= len(self.rows)
        self.rows[first:first + len(rows)] = rows
        self.writes += 1

    def set_process(self, tgid: int, mappings: np.ndarray) -> bool:
        assert mappings.dtype == MAPPING
        assert np.all(mappings["start"][1:] > mappings["start"][:-1])  # sorted as u64 ([vsyscall] is last)
        if tgid not in self.procs and len(self.procs) >= self.max_procs:
            return False  # as KernelTables: the BPF hash map is full
        self.procs[tgid] = mappings.copy()
        return True

    def delete_process(self, tgid: int) -> None:
        del self.procs[tgid]  # as the real map: deleting a missing key is an error


# -- cache -------------------------------------------------------------------------------------

def test_cache_roundtrip_and_hostile_files(tmp_path) -> None:
    table = compile_file("/usr/bin/gzip")
    back = decode(encode(table))
    assert np.array_equal(back.rows, table.rows) and back.counts == table.counts
    assert back.build_id == table.build_id and back.segments == table.segments
    cache = TableCache(tmp_path)
    key = TableKey.for_build_id(table.build_id)
    cache.store(key, table)
    assert [p.name for p in tmp_path.iterdir()] == [f"{key.name}.v{FORMAT_VERSION}.hput"]  # no temp file left
    assert np.array_equal(cache.load(key).rows, table.rows)
    path = next(tmp_path.iterdir())
    blob = path.read_bytes()
    for bad in (blob[:-1], blob[:10], blob[:40] + bytes([blob[40] ^ 1]) + blob[41:], b"\0" * len(blob)):
        path.write_bytes(bad)
        assert cache.load(key) is None
        assert not path.exists()  # removed, so the next load recompiles
    assert cache.stats["cache_bad_files"] == 4
    assert TableCache(tmp_path).load(TableKey("../../etc/passwd")) is None


def test_cache_drops_other_versions_and_prunes(tmp_path) -> None:
    (tmp_path / "b-00.v0.hput").write_bytes(b"old")
    table = compile_file("/usr/bin/gzip")
    cache = TableCache(tmp_path, max_bytes=len(encode(table)) * 2 + 10)
    assert not (tmp_path / "b-00.v0.hput").exists()
    for i in range(4):
        cache.store(TableKey(f"b-{i:02x}"), table)
    assert len(list(tmp_path.glob("*.hput"))) == 2
    assert cache.stats["cache_pruned"] == 2


def test_keys_by_build_id_or_file_identity(tmp_path) -> None:
    st = os.stat(LIBC)
    assert TableKey.for_file(st).name == f"f-{st.st_dev:x}-{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"
    assert TableKey.for_build_id("ABCD").name == "b-abcd"


# -- row store ---------------------------------------------------------------------------------

def test_row_store_first_fit_and_merge() -> None:
    s = RowStore(100)
    a, b, c = s.alloc(30), s.alloc(30), s.alloc(30)
    assert (a, b, c) == (0, 30, 60) and s.alloc(20) is None
    s.release(b, 30)
    assert s.alloc(31) is None and s.largest_free_run() == 30
    s.release(a, 30)
    assert s.largest_free_run() == 60
    s.release(c, 30)
    assert s.free == 100 and s.largest_free_run() == 100
    with pytest.raises(ValueError):
        s.release(0, 10)


# -- manager -----------------------------------------------------------------------------------

@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen]]:
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(3)]
    for p in procs:  # wait until exec is done and the dynamic loader has mapped libc
        for _ in range(200):
            info = capture(p.pid)
            if info and any(m.path.endswith("libc.so.6") for m in info.maps):
                break
            os.sched_yield()
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def test_manager_shares_tables_and_evicts_them(tmp_path, sleepers) -> None:
    fake = FakeMaps(400_000)
    mgr = TableManager(fake, TableCache(tmp_path), 400_000)
    for p in sleepers:
        mgr.update_process(p.pid, capture(p.pid).maps)
    # Before loading, every file-backed mapping is pending; nothing is compiled yet.
    pending = fake.procs[sleepers[0].pid]
    assert (pending["table_count"] == 0).all() and MAP_PENDING in pending["table_first"]
    mgr.load_pending()
    libc_rows = compile_file(LIBC).rows
    n_files = len({m.clean_path for m in capture(sleepers[0].pid).maps if m.inode or m.path == "[vdso]"})
    assert mgr.stats["tables_compiled"] == n_files  # sleep, libc, ld.so: once for 3 processes
    for p in sleepers:
        info = capture(p.pid)
        entries = fake.procs[p.pid]
        assert len(entries) == len(info.maps)
        libc = next(i for i, m in enumerate(info.maps) if m.path.endswith("libc.so.6"))
        e = entries[libc]
        assert e["table_count"] == len(libc_rows)
        stored = fake.rows[e["table_first"]:e["table_first"] + e["table_count"]]
        assert np.array_equal(stored, libc_rows)
        # The bias maps a runtime address to the file's vaddr: the mapping's start is the vaddr of its offset.
        m = info.maps[libc]
        table = compile_file(LIBC)
        assert int(e["start"]) - int(e["bias"]) == table.to_vaddr(m.offset)
        vdso = next(i for i, m in enumerate(info.maps) if m.path == "[vdso]")
        assert entries[vdso]["table_count"] > 0 and entries[vdso]["bias"] == entries[vdso]["start"]
    used = mgr.store.used
    mgr.remove_process(sleepers[0].pid)
    assert mgr.store.used == used and sleepers[0].pid not in fake.procs
    mgr.retain([])  # every process gone: every table evicted, every row free
    assert mgr.store.used == 0 and not mgr.tables and not fake.procs
    assert mgr.stats["tables_evicted"] == n_files
    # A restart reads the disk cache instead of compiling.
    again = TableManager(FakeMaps(400_000), TableCache(tmp_path), 400_000)
    again.update_process(sleepers[1].pid, capture(sleepers[1].pid).maps)
    again.load_pending()
    assert again.stats["tables_from_cache"] == n_files and again.stats["tables_compiled"] == 0


def test_manager_counts_what_does_not_fit_and_retries(tmp_path, sleepers) -> None:
    libc_rows = len(compile_file(LIBC).rows)
    fake = FakeMaps(libc_rows + 10)
    mgr = TableManager(fake, TableCache(None), libc_rows + 10)
    mgr.update_process(sleepers[0].pid, capture(sleepers[0].pid).maps)
    mgr.load_pending()
    assert mgr.stats["tables_no_room"] >= 1 and mgr.stats["rows_no_room"] > 0
    entries = fake.procs[sleepers[0].pid]
    assert ((entries["table_count"] == 0) & (entries["table_first"] == MAP_PENDING)).any()
    assert (entries["table_count"] > 0).any()


def test_manager_process_table_full(tmp_path) -> None:
    fake = FakeMaps(1000, max_procs=1)
    mgr = TableManager(fake, TableCache(None), 1000)
    anon = [Mapping(0x1000, 0x2000, 0, "r-xp", 0, "")]
    mgr.update_process(1, anon)
    mgr.update_process(2, anon)  # refused by the writer
    assert list(fake.procs) == [1]
    mgr.retain([])  # deletes only what the writer holds
    assert not fake.procs and not mgr.procs


def test_manager_mapping_limits_and_anonymous_code(tmp_path) -> None:
    fake = FakeMaps(1000)
    mgr = TableManager(fake, TableCache(None), 1000, max_mappings=2)
    anon = [Mapping(0x1000 * (i + 1), 0x1000 * (i + 2), 0, "r-xp", 0, "") for i in range(3)]
    mgr.update_process(os.getpid(), anon)
    entries = fake.procs[os.getpid()]
    assert len(entries) == 2 and (entries["table_first"] == MAP_FP).all()
    assert mgr.stats["mappings_over_limit"] == 1
    mgr.update_process(os.getpid(), [Mapping(0x1000, 0x2000, 0, "r-xp", 12345, "/nonexistent/lib.so")])
    assert fake.procs[os.getpid()]["table_first"][0] == MAP_FP
    assert mgr.stats["mappings_unreadable"] == 1


def test_loader_thread_as_a_tracker_listener(tmp_path, sleepers) -> None:
    fake = FakeMaps(400_000)
    mgr = TableManager(fake, TableCache(tmp_path), 400_000)
    mgr.start()
    try:
        info = capture(sleepers[0].pid)
        mgr.update(info)  # what ProcessTracker calls from its poll thread: returns at once
        file_backed = [i for i, m in enumerate(info.maps) if m.inode or m.path == "[vdso]"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (fake.procs[sleepers[0].pid]["table_count"][file_backed] > 0).all():
                break
            time.sleep(0.05)
        assert (fake.procs[sleepers[0].pid]["table_count"][file_backed] > 0).all()
        assert mgr.counters()["unwind_tables_loaded"] == len({info.maps[i].clean_path for i in file_backed})
        mgr.forget(sleepers[0].pid)
        assert sleepers[0].pid not in fake.procs and mgr.store.used == 0
    finally:
        mgr.stop()


def test_copies_without_build_id_share_one_table(tmp_path) -> None:
    exe = tmp_path / "a"
    subprocess.run(["gcc", "-O2", "-Wl,--build-id=none", "-o", str(exe), "-x", "c", "-"],
                   input=b"#include <unistd.h>\nint main(void){pause();return 0;}\n", check=True)
    copy = tmp_path / "b"
    copy.write_bytes(exe.read_bytes())
    copy.chmod(0o755)
    procs = [subprocess.Popen([str(p)]) for p in (exe, copy)]
    try:
        fake = FakeMaps(400_000)
        mgr = TableManager(fake, TableCache(None), 400_000)
        for p in procs:
            for _ in range(200):
                info = capture(p.pid)
                if info and any(m.path.endswith("libc.so.6") for m in info.maps):
                    break
                time.sleep(0.01)
            mgr.update_process(p.pid, info.maps)
        mgr.load_pending()
        keys = {t.key.name for t in mgr.tables.values()}
        assert sum(k.startswith("h-") for k in keys) == 1  # both copies: one table
        firsts = [fake.procs[p.pid]["table_first"][0] for p in procs]  # the executable maps lowest
        assert firsts[0] == firsts[1] and fake.procs[procs[0].pid]["table_count"][0] > 0
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_prioritize_loads_a_sampled_process_first(tmp_path, sleepers) -> None:
    fake = FakeMaps(400_000)
    mgr = TableManager(fake, TableCache(None), 400_000)
    shell = subprocess.Popen(["/usr/bin/bash", "-c", "read x"], stdin=subprocess.PIPE)
    try:
        for _ in range(200):
            info = capture(shell.pid)
            if info and any(m.path.endswith("libc.so.6") for m in info.maps):
                break
            time.sleep(0.01)
        mgr.update_process(sleepers[0].pid, capture(sleepers[0].pid).maps)
        mgr.update_process(shell.pid, info.maps)
        assert mgr.prioritize(shell.pid) >= 1
        mgr.load_pending(budget_s=0)  # nothing loads with no budget...
        first = mgr._queue[0]
        assert shell.pid in first.users  # ...but bash's own tables are next in line
        assert mgr.prioritize(12345678) == 0
    finally:
        shell.kill()
        shell.wait()


def test_cache_dir_that_cannot_be_created_means_no_disk_cache(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    cache = TableCache(blocker / "unwind-tables")  # a path below a regular file
    assert cache.dir is None and cache.stats["cache_dir_unusable"] == 1
    table = compile_file("/usr/bin/gzip")
    cache.store(TableKey.for_build_id(table.build_id), table)
    assert cache.load(TableKey.for_build_id(table.build_id)) is None
