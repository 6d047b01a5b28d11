"""Load Hotpath's BPF programs with BCC and drain their maps; explain exactly what is missing.

BCC is imported lazily so the CLI and unit tests work on machines without it.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from collector.source import STACK_STALE, RawCount, RawDrain

log = logging.getLogger("hotpath.collector.bpf")
BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"
BPF_SOURCE = BPF_DIR / "hotpath.bpf.c"
TRACEFS = Path("/sys/kernel/tracing")
STAT_NAMES = ("idle_samples", "map_full_drops", "start_map_full", "stale_stacks", "bpf_samples",
              "short_blocks")
STACK_ENTRIES = 16384
# Recycle a stack map generation once this share of its entries is in use.
RECYCLE_FILL = 0.6
# BPF programs run to completion with preemption off; this covers one already past the flip.
FLIP_GRACE_S = 0.005


class LoaderError(Exception):
    """The BPF side cannot start; the message says what is missing and the command that fixes it."""


def _headers_hint(release: str) -> str:
    return (
        f"kernel headers for {release} not found (/lib/modules/{release}/build). Fix: "
        "`bash scripts/setup.sh`, or `apt-get install -y linux-headers-amd64` then "
        f"`mkdir -p /lib/modules/{release} && "
        f"ln -sfn /usr/src/linux-headers-<ver>-amd64 /lib/modules/{release}/build && "
        f"ln -sfn /usr/src/linux-headers-<ver>-common /lib/modules/{release}/source`"
    )


def preflight(release: str | None = None) -> None:
    """Check root, BPF, tracefs, headers and lockdown; mount tracefs if needed. Raises LoaderError."""
    release = release or platform.release()
    if os.geteuid() != 0:
        raise LoaderError("BPF needs root (CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN): run with sudo, "
                          "or in a privileged container with `pid: host`")
    if not Path("/sys/kernel/btf").exists() and not Path("/proc/sys/kernel/bpf_stats_enabled").exists():
        raise LoaderError("this kernel has no BPF syscall support (CONFIG_BPF_SYSCALL): "
                          "use a kernel built with CONFIG_BPF_SYSCALL and CONFIG_BPF_EVENTS")
    lockdown = Path("/sys/kernel/security/lockdown")
    if lockdown.exists() and "[confidentiality]" in lockdown.read_text():
        raise LoaderError("kernel lockdown is in confidentiality mode, which forbids BPF reads of "
                          "kernel memory: boot with `lockdown=integrity` (or disable Secure Boot lockdown)")
    if not (TRACEFS / "events").is_dir():
        result = subprocess.run(["mount", "-t", "tracefs", "tracefs", str(TRACEFS)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0 or not (TRACEFS / "events").is_dir():
            raise LoaderError(f"tracefs is not mounted and mounting failed ({result.stderr.strip()}): "
                              f"run `mount -t tracefs tracefs {TRACEFS}` (in a container, mount "
                              "/sys/kernel/tracing from the host)")
    if not Path(f"/lib/modules/{release}/build").exists():
        raise LoaderError(_headers_hint(release))


def import_bcc() -> Any:
    try:
        import bcc
    except ImportError as exc:
        raise LoaderError("BCC's Python bindings are missing: `apt-get install -y bpfcc-tools "
                          "python3-bpfcc libbpfcc` and make /usr/lib/python3/dist-packages "
                          f"importable (scripts/setup.sh does both) ({exc})") from exc
    return bcc


def build_cflags(offcpu: bool, min_block_ns: int, pids: Iterable[int] | None,
                 include_idle: bool = False, offcpu_kernel_stacks: bool = False) -> list[str]:
    """The -D options selecting program features; never string replacement in the C text."""
    flags = [f"-I{BPF_DIR}", f"-DMIN_BLOCK_NS={int(min_block_ns)}ULL",
             f"-DHP_STACK_ENTRIES={STACK_ENTRIES}"]
    if offcpu:
        flags.append("-DOFFCPU")
        if not offcpu_kernel_stacks:
            # A kernel unwind at every context switch roughly doubled `perf bench sched pipe`.
            flags.append("-DOFFCPU_NO_KERNEL_STACK")
    if pids:
        flags.append("-DFILTER_PIDS")
    if include_idle:
        flags.append("-DINCLUDE_IDLE")
    return flags


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to trim


class BccSource:
    """The real stack source: on-CPU perf events on every CPU plus the sched_switch tracepoint."""

    def __init__(self, frequency: int = 19, offcpu: bool = True, min_block_ns: int = 1_000_000,
                 pids: Iterable[int] | None = None, clock_ns: Any = time.time_ns,
                 offcpu_kernel_stacks: bool = False) -> None:
        preflight()
        bcc = import_bcc()
        self.frequency = frequency
        self.offcpu = offcpu
        self._clock_ns = clock_ns
        pid_list = sorted(set(pids or ()))
        try:
            self._bpf = bcc.BPF(src_file=str(BPF_SOURCE).encode(),
                                cflags=build_cflags(offcpu, min_block_ns, pid_list,
                                                    offcpu_kernel_stacks=offcpu_kernel_stacks))
            _malloc_trim()  # hand LLVM's compile-time heap back to the OS (RSS)
        except Exception as exc:  # BCC raises bare Exception on compile/load failure
            raise LoaderError(f"BPF program failed to compile or load: {exc}. If headers are "
                              f"the cause: {_headers_hint(platform.release())}") from exc
        if pid_list:
            table = self._bpf[b"pid_filter"]
            for pid in pid_list:
                table[table.Key(pid)] = table.Leaf(1)
        try:
            self._bpf.attach_perf_event(ev_type=bcc.PerfType.SOFTWARE,
                                        ev_config=bcc.PerfSWConfig.CPU_CLOCK,
                                        fn_name=b"on_cpu_sample", sample_freq=frequency, cpu=-1)
        except Exception as exc:
            raise LoaderError(f"cannot attach the cpu-clock perf event: {exc} (check "
                              "/proc/sys/kernel/perf_event_paranoid and CONFIG_PERF_EVENTS)") from exc
        self._buffer = 0
        self._gen = 0
        self._stack_cache: dict[tuple[int, int], tuple[int, ...]] = {}  # (map, hash) -> ips
        self._ids_in_gen: set[int] = set()
        self._last_ns = clock_ns()
        self._stats_prev = [0] * len(STAT_NAMES)

    # -- draining ----------------------------------------------------------------------------
    def _set_control(self, slot: int, value: int) -> None:
        control = self._bpf[b"control"]
        control[ctypes.c_int(slot)] = ctypes.c_uint64(value)

    def _stack(self, map_index: int, stack_hash: int, err: int) -> tuple[tuple[int, ...], int]:
        """Addresses (leaf first) of a stored stack, or () and the error (negative errno)."""
        if err < 0:
            return (), err
        if stack_hash == 0:
            return (), 0  # an empty stack: user-mode sample (kernel side) or kernel thread
        key = (map_index, stack_hash)
        cached = self._stack_cache.get(key)
        if cached is None:
            try:
                leaf = self._bpf[f"stacks{map_index}".encode()][ctypes.c_uint64(stack_hash)]
            except KeyError:
                return (), -errno.ENOENT
            cached = tuple(leaf.ips[: min(int(leaf.n), len(leaf.ips))])
            self._stack_cache[key] = cached
            if map_index == (self._gen & 1):
                self._ids_in_gen.add(stack_hash)
        return cached, 0

    def _read_counts(self, name: str) -> list[RawCount]:
        table = self._bpf[name.encode()]
        # Plain read then clear: the buffer is inactive, so nothing lands in between. (The batch
        # lookup-and-delete op can fail mid-way with entries already deleted: that lost data.)
        items = list(table.items())
        table.clear()
        out: list[RawCount] = []
        for key, value in items:
            user, user_err = self._stack(key.stack_map, key.user_stack, key.user_err)
            kernel, kernel_err = self._stack(key.stack_map, key.kernel_stack, key.kernel_err)
            out.append(RawCount(
                tgid=key.tgid, tid=key.tid, comm=key.comm.decode("utf-8", "replace"),
                cgroup_id=key.cgroup_id, user=user, kernel=kernel, value=int(getattr(value, "value", value)),
                user_error=user_err, kernel_error=kernel_err))
        return out

    def _read_stats(self) -> dict[str, int]:
        table = self._bpf[b"stats"]
        now = [0] * len(STAT_NAMES)
        for i in range(len(STAT_NAMES)):
            now[i] = int(sum(table[ctypes.c_int(i)]))
        delta = {name: now[i] - self._stats_prev[i] for i, name in enumerate(STAT_NAMES)}
        self._stats_prev = now
        return delta

    def _maybe_recycle_stacks(self, drain: RawDrain) -> None:
        """Move to the other stack map when this one fills; clear that one first."""
        full = any(c.user_error == -errno.ENOMEM or c.kernel_error == -errno.ENOMEM
                   for c in drain.cpu + drain.offcpu)
        if not full and len(self._ids_in_gen) < RECYCLE_FILL * STACK_ENTRIES:
            return
        new_gen = self._gen + 1
        parity = new_gen & 1
        self._bpf[f"stacks{parity}".encode()].clear()
        self._stack_cache = {k: v for k, v in self._stack_cache.items() if k[0] != parity}
        self._set_control(1, new_gen)
        self._gen = new_gen
        self._ids_in_gen = set()
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
        self._maybe_recycle_stacks(drain)
        return drain

    def close(self) -> None:
        try:
            self._bpf.cleanup()
        except Exception as exc:  # noqa: BLE001 - closing twice or after a failed attach must not raise
            log.debug("BPF cleanup: %s", exc)


def kernel_stack_is_missed(error: int) -> bool:
    """-EFAULT on the kernel stack only means the sample hit user mode: not a missed stack."""
    return error not in (0, -errno.EFAULT)


__all__ = [
    "STACK_STALE",
    "BccSource",
    "LoaderError",
    "build_cflags",
    "kernel_stack_is_missed",
    "preflight",
]
