"""Load Hotpath's BPF programs with BCC and drain their maps; explain exactly what is missing.

BCC (libbcc with LLVM inside, ~100 MB mapped) is imported only by a short-lived loader
subprocess: it compiles, loads and attaches, passes every fd that keeps the programs attached and
the map fds to the agent over a Unix socket (SCM_RIGHTS), and exits. The agent reads the maps
with raw bpf(2) calls (collector/bpfmaps.py); closing its fds detaches everything.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import platform
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.bpfmaps import BpfMap, percpu_u64_sum, possible_cpus
from collector.source import STACK_STALE, RawCount, RawDrain

log = logging.getLogger("hotpath.collector.bpf")
BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"
BPF_SOURCE = BPF_DIR / "hotpath.bpf.c"
TRACEFS = Path("/sys/kernel/tracing")
STAT_NAMES = ("idle_samples", "map_full_drops", "threads_map_full", "stale_stacks", "bpf_samples",
              "short_blocks", "sampled_out_spans", "lost_offcpu_spans", "sampled_spans")  # hotpath.h HP_STAT_*
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
            # Kernel stacks cost ~100 ns more per sampled switch-out (pinned sched pipe,
            # in-program 161 -> 264 ns): opt-in, since off-CPU time is mostly read by user function.
            flags.append("-DOFFCPU_NO_KERNEL_STACK")
    if pids:
        flags.append("-DFILTER_PIDS")
    if include_idle:
        flags.append("-DINCLUDE_IDLE")
    return flags


# Maps the agent reads or writes; the others (scratch, threads, ...) only matter to the programs.
AGENT_MAPS = ("control", "stats", "pid_filter", "stacks0", "stacks1", "cpu_counts0", "cpu_counts1",
              "offcpu_counts0", "offcpu_counts1")
# struct hp_key and struct hp_stack of bpf/hotpath.h (x86_64, natural alignment).
HP_KEY = struct.Struct("<IIQQQiiII16s")
HP_MAX_DEPTH = 127
HP_STACK_SIZE = 8 + 8 * HP_MAX_DEPTH
SCM_MAX_FDS = 250  # the kernel's limit per SCM_RIGHTS message is 253
LOAD_TIMEOUT_S = 300.0


# -- the loader subprocess: the only process that imports BCC (and so maps ~100 MB of LLVM) ------
def _attach(frequency: int, offcpu: bool, min_block_ns: int, pids: list[int],
            offcpu_kernel_stacks: bool) -> tuple[dict[str, int], list[int]]:
    """Compile, load and attach; returns map fds by name and the fds that keep programs attached."""
    preflight()
    bcc = import_bcc()
    try:
        bpf = bcc.BPF(src_file=str(BPF_SOURCE).encode(),
                      cflags=build_cflags(offcpu, min_block_ns, pids,
                                          offcpu_kernel_stacks=offcpu_kernel_stacks))
    except Exception as exc:  # BCC raises bare Exception on compile/load failure
        raise LoaderError(f"BPF program failed to compile or load: {exc}. If headers are "
                          f"the cause: {_headers_hint(platform.release())}") from exc
    if pids:
        table = bpf[b"pid_filter"]
        for pid in pids:
            table[table.Key(pid)] = table.Leaf(1)
    try:
        bpf.attach_perf_event(ev_type=bcc.PerfType.SOFTWARE, ev_config=bcc.PerfSWConfig.CPU_CLOCK,
                              fn_name=b"on_cpu_sample", sample_freq=frequency, cpu=-1)
    except Exception as exc:
        raise LoaderError(f"cannot attach the cpu-clock perf event: {exc} (check "
                          "/proc/sys/kernel/perf_event_paranoid and CONFIG_PERF_EVENTS)") from exc
    from bcc.libbcc import lib

    maps = {}
    for name in AGENT_MAPS:
        fd = lib.bpf_table_fd(bpf.module, name.encode())
        if fd >= 0:
            maps[name] = fd
    keep = [fd for per_cpu in bpf.open_perf_events.values() for fd in per_cpu.values()]
    keep += list(bpf.tracepoint_fds.values()) + list(bpf.raw_tracepoint_fds.values())
    keep += [fn.fd for fn in bpf.funcs.values()]
    return maps, keep


def _child_main(sock_fd: int, options: str) -> None:
    """Entry of the loader subprocess: load, hand every fd to the agent, exit without cleanup."""
    sock = socket.socket(fileno=sock_fd)
    try:
        try:
            opts = json.loads(options)
            maps, keep = _attach(opts["frequency"], opts["offcpu"], opts["min_block_ns"], opts["pids"],
                                 opts["offcpu_kernel_stacks"])
        except LoaderError as exc:
            sock.send(json.dumps({"ok": False, "error": str(exc)}).encode())
        except Exception as exc:  # noqa: BLE001 - anything else still reaches the user, not a hang
            sock.send(json.dumps({"ok": False, "error": f"BPF loader failed: {exc!r}"}).encode())
        else:
            fds = list(maps.values()) + keep
            header = {"ok": True, "maps": list(maps), "nfds": len(fds)}
            socket.send_fds(sock, [json.dumps(header).encode()], fds[:SCM_MAX_FDS])
            for i in range(SCM_MAX_FDS, len(fds), SCM_MAX_FDS):
                socket.send_fds(sock, [b"fds"], fds[i:i + SCM_MAX_FDS])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # No interpreter exit: BCC's atexit cleanup would disable and detach the perf events and
        # tracepoints the agent now shares.
        os._exit(0)


@dataclass(slots=True)
class Loaded:
    """What the loader subprocess handed over: maps by name, and fds to hold while sampling."""

    maps: dict[str, BpfMap]
    keep: list[int]

    def close(self) -> None:
        for m in self.maps.values():
            m.close()
        for fd in self.keep:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.keep = []


class PendingLoad:
    """A loader subprocess at work: started at once, so the agent can set up its symbolizer and
    process tracker while BCC compiles; `result()` waits for the fds."""

    def __init__(self, frequency: int, offcpu: bool, min_block_ns: int, pids: Iterable[int] | None,
                 offcpu_kernel_stacks: bool = False) -> None:
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        options = json.dumps({"frequency": frequency, "offcpu": offcpu, "min_block_ns": min_block_ns,
                              "pids": sorted(set(pids or ())), "offcpu_kernel_stacks": offcpu_kernel_stacks})
        root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        try:
            self._child = subprocess.Popen([sys.executable, "-m", "collector.bpf_loader", "--child",
                                            str(theirs.fileno()), options], pass_fds=(theirs.fileno(),),
                                           stdin=subprocess.DEVNULL, stdout=2, env=env, cwd=root)
        except OSError as exc:
            self._sock.close()
            raise LoaderError(f"cannot start the BPF loader process {sys.executable}: {exc}") from exc
        finally:
            theirs.close()  # so a loader that dies without a word reads as EOF, not a hang

    def result(self, timeout_s: float = LOAD_TIMEOUT_S) -> Loaded:
        """The maps and attachments, or LoaderError with the loader's own message."""
        fds: list[int] = []
        try:
            self._sock.settimeout(timeout_s)
            try:
                msg, fds, _, _ = socket.recv_fds(self._sock, 65536, SCM_MAX_FDS + 3)
                if not msg:
                    raise LoaderError(f"the BPF loader process exited (status {self._child.wait()}) "
                                      "without a result; its error output is above")
                header = json.loads(msg)
                if not header["ok"]:
                    raise LoaderError(header["error"])
                while len(fds) < header["nfds"]:
                    _, more, _, _ = socket.recv_fds(self._sock, 16, SCM_MAX_FDS + 3)
                    if not more:
                        raise LoaderError("the BPF loader process sent fewer fds than announced")
                    fds += more
            except TimeoutError:
                self._child.kill()
                raise LoaderError(f"the BPF loader process gave no answer in {timeout_s:.0f}s") from None
            names = header["maps"]
            loaded = Loaded({}, fds[len(names):])
            try:
                ncpus = possible_cpus()
                for name, fd in zip(names, fds, strict=False):
                    loaded.maps[name] = BpfMap(fd, name, ncpus)
            except OSError as exc:
                loaded.close()
                raise LoaderError(f"cannot use the maps the BPF loader made: {exc}") from exc
            fds = []
            return loaded
        finally:
            for fd in fds:
                os.close(fd)
            self._sock.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(timeout=10)  # it exits right after sending
            self.cancel()

    def cancel(self) -> None:
        """Stop waiting: end the loader if still at work (what it attached detaches as its fds
        close); fds in flight close with the socket."""
        self._sock.close()
        if self._child.poll() is None:
            self._child.kill()
            self._child.wait()


def load_programs(frequency: int, offcpu: bool, min_block_ns: int, pids: Iterable[int] | None,
                  offcpu_kernel_stacks: bool = False, timeout_s: float = LOAD_TIMEOUT_S) -> Loaded:
    """Compile and attach in a short-lived subprocess (BCC and LLVM never enter this process);
    receive the map and attachment fds over a Unix socket. Raises LoaderError with its message."""
    return PendingLoad(frequency, offcpu, min_block_ns, pids, offcpu_kernel_stacks).result(timeout_s)


class BccSource:
    """The real stack source: on-CPU perf events on every CPU plus the sched_switch tracepoint.

    Loaded by `load_programs` (BCC in a subprocess); drained here with raw bpf(2) calls."""

    def __init__(self, frequency: int = 19, offcpu: bool = True, min_block_ns: int = 1_000_000,
                 pids: Iterable[int] | None = None, clock_ns: Any = time.time_ns,
                 offcpu_kernel_stacks: bool = False, pending: PendingLoad | None = None) -> None:
        self.frequency = frequency
        self.offcpu = offcpu
        self._clock_ns = clock_ns
        if pending is None:
            pending = PendingLoad(frequency, offcpu, min_block_ns, pids, offcpu_kernel_stacks)
        self._loaded = pending.result()
        self._maps = self._loaded.maps
        try:
            self._check_layout()
        except LoaderError:
            self._loaded.close()
            raise
        self._buffer = 0
        self._gen = 0
        self._stack_cache: dict[tuple[int, int], tuple[int, ...]] = {}  # (map, hash) -> ips
        self._ids_in_gen: set[int] = set()
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
            tgid, tid, cgroup_id, user_stack, kernel_stack, user_err, kernel_err, stack_map, _, comm = \
                unpack_key(key)
            user, user_err = self._stack(stack_map, user_stack, user_err)
            kernel, kernel_err = self._stack(stack_map, kernel_stack, kernel_err)
            out.append(RawCount(
                tgid=tgid, tid=tid, comm=comm.split(b"\0", 1)[0].decode("utf-8", "replace"),
                cgroup_id=cgroup_id, user=user, kernel=kernel, value=struct.unpack("<Q", value)[0],
                user_error=user_err, kernel_error=kernel_err))
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
        """Move to the other stack map when this one fills; clear that one first."""
        full = any(c.user_error == -errno.ENOMEM or c.kernel_error == -errno.ENOMEM
                   for c in drain.cpu + drain.offcpu)
        if not full and len(self._ids_in_gen) < RECYCLE_FILL * STACK_ENTRIES:
            return
        new_gen = self._gen + 1
        parity = new_gen & 1
        self._maps[f"stacks{parity}"].clear()
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
        """Closing the last fds detaches the programs and frees the maps."""
        self._loaded.close()


def kernel_stack_is_missed(error: int) -> bool:
    """-EFAULT on the kernel stack only means the sample hit user mode: not a missed stack."""
    return error not in (0, -errno.EFAULT)


__all__ = [
    "STACK_STALE",
    "BccSource",
    "LoaderError",
    "PendingLoad",
    "build_cflags",
    "kernel_stack_is_missed",
    "load_programs",
    "preflight",
]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--child":
    _child_main(int(sys.argv[2]), sys.argv[3])

