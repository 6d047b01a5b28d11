"""The real stack source: drain the BPF maps each interval (counts, stacks, stats) with raw
bpf(2) calls, and recycle the stack maps before they fill."""

from __future__ import annotations

import errno
import os
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

from collector.bpf_abi import HP_KEY, HP_MAX_DEPTH, HP_STACK_SIZE, STAT_NAMES
from collector.bpf_loader import LoaderError, PendingLoad, UnwindSizes
from collector.bpfmaps import BpfMap, percpu_u64_sum
from collector.source import STACK_STALE, RawCount, RawDrain
from collector.unwind.table_cache import TableCache
from collector.unwind.table_manager import TableManager
from collector.unwind_kernel import KernelTables, ManagedTables

# Recycle a stack map generation before this share of its entries could be in use.
RECYCLE_FILL = 0.8
# BPF programs run to completion with preemption off; this covers one already past the flip.
FLIP_GRACE_S = 0.005


class BccSource:
    """The real stack source: on-CPU perf events on every CPU plus the sched_switch tracepoint.

    Loaded by `load_programs` (BCC in a subprocess); drained here with raw bpf(2) calls."""

    def __init__(self, frequency: int = 19, offcpu: bool = True, min_block_ns: int = 1_000_000,
                 pids: Iterable[int] | None = None, clock_ns: Any = time.time_ns,
                 offcpu_kernel_stacks: bool = False, pending: PendingLoad | None = None,
                 unwind: UnwindSizes | None = None, unwind_cache_dir: str | None = None,
                 unwind_admit: Callable[[int], bool] | None = None) -> None:
        self.frequency = frequency
        self.offcpu = offcpu
        self._clock_ns = clock_ns
        if pending is None:
            pending = PendingLoad(frequency, offcpu, min_block_ns, pids, offcpu_kernel_stacks, unwind)
        self._loaded = pending.result()
        self._maps = self._loaded.maps
        try:
            self._check_layout()
            self.tables: KernelTables | None = (KernelTables(self._maps["unwind_rows"], self._maps["proc_maps"])
                           if pending.unwind is not None else None)
        except LoaderError:
            self._loaded.close()
            raise
        except (ValueError, KeyError) as exc:
            self._loaded.close()
            raise LoaderError(f"the BPF unwinder's maps are not as expected: {exc}") from exc
        # Which processes' mapping tables are in the kernel (fed by the tracker: `follow`).
        self.unwinder: ManagedTables | None = None
        if self.tables is not None:
            manager = TableManager(self.tables, TableCache(unwind_cache_dir), self.tables.row_capacity)
            self.unwinder = ManagedTables(self.tables, manager, self._maps.get("unwind_wanted"), unwind_admit)
        self._tables_prev: dict[str, int] = {}
        self._buffer = 0
        self._gen = 0
        self._stack_cache: dict[tuple[int, int], tuple[int, ...]] = {}  # (map, hash) -> ips
        self._ids_in_gen: set[int] = set()
        self._used_at_last_drain = 0  # unique stacks of this generation at the last drain
        self._peak_new = 0  # the most new unique stacks one interval brought, so far
        self._last_ns = clock_ns()
        self._stats_prev = [0] * len(STAT_NAMES)

    def _check_layout(self) -> None:
        """The structs are decoded by hand: refuse maps whose sizes disagree with bpf/hotpath.h."""
        want = {"cpu_counts0": (HP_KEY.size, 8), "stacks0": (8, HP_STACK_SIZE), "control": (4, 8),
                "stats": (4, 8)}
        if self.offcpu:
            want["offcpu_counts0"] = (HP_KEY.size, 8)
        for name, sizes in want.items():
            m = self._maps.get(name)
            if m is None:
                raise LoaderError(f"the BPF program has no map {name!r}")
            if (m.key_size, m.value_size) != sizes:
                raise LoaderError(f"map {name!r} has key/value sizes {(m.key_size, m.value_size)}, "
                                  f"collector expects {sizes}: bpf/hotpath.h and collector/bpf_loader.py "
                                  "disagree")

    # -- draining ----------------------------------------------------------------------------
    def _set_control(self, slot: int, value: int) -> None:
        self._maps["control"].update(struct.pack("<i", slot), struct.pack("<Q", value))

    def _stack(self, map_index: int, stack_hash: int, err: int) -> tuple[tuple[int, ...], int]:
        """Addresses (leaf first) of a stored stack, or () and the error (negative errno)."""
        if err < 0:
            return (), err
        if stack_hash == 0:
            return (), 0  # an empty stack: user-mode sample (kernel side) or kernel thread
        key = (map_index, stack_hash)
        cached = self._stack_cache.get(key)
        if cached is None:
            raw = self._maps[f"stacks{map_index}"].lookup(struct.pack("<Q", stack_hash))
            if raw is None:
                return (), -errno.ENOENT
            n = min(struct.unpack_from("<Q", raw)[0], HP_MAX_DEPTH)
            cached = struct.unpack_from(f"<{n}Q", raw, 8)
            self._stack_cache[key] = cached
            if map_index == (self._gen & 1):
                self._ids_in_gen.add(stack_hash)
        return cached, 0

    def _read_counts(self, name: str) -> list[RawCount]:
        table = self._maps[name]
        # Read, then delete exactly what was read: the buffer is inactive, and an increment from a
        # program still running past the flip stays for the next read of this buffer instead of
        # being cleared unread. (Lookup-and-delete batch can fail mid-way with entries gone.)
        items = table.items()
        table.delete_keys([k for k, _ in items])
        out: list[RawCount] = []
        unpack_key = HP_KEY.unpack
        for key, value in items:
            (tgid, tid, cgroup_id, user_stack, kernel_stack, user_err, kernel_err, stack_map, user_end, comm,
             py_stack, py_end, _) = unpack_key(key)
            user, user_err = self._stack(stack_map, user_stack, user_err)
            kernel, kernel_err = self._stack(stack_map, kernel_stack, kernel_err)
            python = self._stack(stack_map, py_stack, 0)[0] if py_stack else ()
            out.append(RawCount(
                tgid=tgid, tid=tid, comm=comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
                cgroup_id=cgroup_id, user=user, kernel=kernel, value=struct.unpack("<Q", value)[0],
                user_error=user_err, kernel_error=kernel_err, user_end=user_end, python=python,
                python_end=py_end))
        return out

    def _read_stats(self) -> dict[str, int]:
        table = self._maps["stats"]
        now = [0] * len(STAT_NAMES)
        for i in range(len(STAT_NAMES)):
            raw = table.lookup(struct.pack("<i", i))
            now[i] = percpu_u64_sum(raw) if raw is not None else 0
        delta = {name: now[i] - self._stats_prev[i] for i, name in enumerate(STAT_NAMES)}
        self._stats_prev = now
        return delta

    def _maybe_recycle_stacks(self, drain: RawDrain) -> None:
        """Move to the other stack map (cleared first) before this one can fill: when the unique
        stacks it took in its intervals so far, at their measured rate, would pass RECYCLE_FILL
        of it by the end of the next interval (the busiest interval counts twice), or when it
        already refused one (counted per stack as "stack map full")."""
        full = any(c.user_error == -errno.ENOMEM or c.kernel_error == -errno.ENOMEM
                   for c in drain.cpu + drain.offcpu)
        used = len(self._ids_in_gen)
        new = used - self._used_at_last_drain
        self._peak_new = max(self._peak_new, new)
        self._used_at_last_drain = used
        drain.stats["stack_map_used"] = used
        capacity = self._maps["stacks0"].max_entries
        if not full and used + 2 * self._peak_new < RECYCLE_FILL * capacity:
            return
        new_gen = self._gen + 1
        parity = new_gen & 1
        self._maps[f"stacks{parity}"].clear()
        self._stack_cache = {k: v for k, v in self._stack_cache.items() if k[0] != parity}
        self._set_control(1, new_gen)
        self._gen = new_gen
        self._ids_in_gen = set()
        self._used_at_last_drain = 0
        drain.stats["stack_map_recycles"] = drain.stats.get("stack_map_recycles", 0) + 1

    def drain(self) -> RawDrain:
        """Flip the counts buffers, read and clear the inactive one, return its counts."""
        old = self._buffer
        self._buffer = 1 - old
        self._set_control(0, self._buffer)
        end_ns = self._clock_ns()
        time.sleep(FLIP_GRACE_S)
        drain = RawDrain(start_ns=self._last_ns, end_ns=end_ns)
        self._last_ns = end_ns
        drain.cpu = self._read_counts(f"cpu_counts{old}")
        if self.offcpu:
            drain.offcpu = self._read_counts(f"offcpu_counts{old}")
        drain.stats = self._read_stats()
        drain.stats.update(self._tables_stats())
        self._maybe_recycle_stacks(drain)
        return drain

    def follow(self, tracker: Any) -> None:
        """Keep the kernel's mapping tables in step with the tracker's processes (ManagedTables)."""
        if self.unwinder is not None:
            self.unwinder.follow(tracker)

    def _tables_stats(self) -> dict[str, int]:
        """The unwinder's user-space counters since the last drain, and its registered processes."""
        if self.unwinder is None:
            return {}
        now = self.unwinder.counters()
        out = {k: v - self._tables_prev.get(k, 0) for k, v in now.items() if v != self._tables_prev.get(k, 0)}
        self._tables_prev = now
        return out

    def python_maps(self) -> dict[str, BpfMap] | None:
        """Own copies (fds and buffers: safe beside the drain's thread) of the maps the CPython
        support uses (collector/python/support.py); None when built without -DPYTHON."""
        names = ("py_procs", "py_threads", "py_new", "py_execs", "stacks0", "stacks1")
        if any(n not in self._maps for n in names):
            return None
        return {n: BpfMap(os.dup(self._maps[n].fd), n) for n in names}

    def close(self) -> None:
        """Closing the last fds detaches the programs and frees the maps."""
        if self.unwinder is not None:
            self.unwinder.close()
        self._loaded.close()


def kernel_stack_is_missed(error: int) -> bool:
    """-EFAULT on the kernel stack only means the sample hit user mode: not a missed stack."""
    return error not in (0, -errno.EFAULT)


__all__ = ["STACK_STALE", "BccSource", "kernel_stack_is_missed"]
