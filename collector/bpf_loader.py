"""Load Hotpath's BPF programs with BCC in a short-lived subprocess and hand their fds over.

BCC (libbcc with LLVM inside, ~100 MB mapped) is imported only by the loader subprocess: it
compiles, loads and attaches, passes every fd that keeps the programs attached and the map fds to
the agent over a Unix socket (SCM_RIGHTS), and exits. The agent reads the maps with raw bpf(2)
calls (collector/bpfmaps.py, drained by collector/bpf_source.py); closing its fds detaches
everything. Checks before loading live in collector/bpf_preflight.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.bpf_abi import BPF_DIR, HP_PROC_MAPS_SIZE, UNWIND_ROW
from collector.bpf_preflight import LoaderError, _headers_hint, import_bcc, preflight
from collector.bpfmaps import BpfMap, possible_cpus

BPF_SOURCE = BPF_DIR / "hotpath.bpf.c"
# Unique stacks per stack-map generation (each map allocates its entries as used, ~1.1 KiB each).
STACK_ENTRIES = 32768


@dataclass(frozen=True, slots=True)
class UnwindSizes:
    """Kernel memory of the table unwinder: rows of all loaded tables (12 B each, allocated at
    load) and processes with a mapping table (8 KiB each, allocated as used)."""

    rows: int = 1 << 22
    procs: int = 1024

    def cflags(self) -> list[str]:
        # Binary-search steps for the largest table that fits: ceil(log2(rows)) + 1.
        return ["-DHP_UNWIND", f"-DHP_UNWIND_ROWS={self.rows}", f"-DHP_ROW_STEPS={max(1, self.rows - 1).bit_length() + 1}",
                f"-DHP_PROC_ENTRIES={self.procs}"]

    def kernel_bytes(self) -> int:
        """Upper bound of the kernel memory these maps take (the row array is allocated whole)."""
        return self.rows * UNWIND_ROW.itemsize + self.procs * HP_PROC_MAPS_SIZE


def build_cflags(offcpu: bool, min_block_ns: int, pids: Iterable[int] | None,
                 include_idle: bool = False, offcpu_kernel_stacks: bool = False,
                 unwind: UnwindSizes | None = None, stack_entries: int = STACK_ENTRIES,
                 python: bool = True) -> list[str]:
    """The -D options selecting program features; never string replacement in the C text."""
    flags = [f"-I{BPF_DIR}", f"-DMIN_BLOCK_NS={int(min_block_ns)}ULL",
             f"-DHP_STACK_ENTRIES={int(stack_entries)}"]
    if unwind is not None:
        flags += unwind.cflags()
    if python:
        # CPython frames of processes user space registers; others pay one hash miss a sample.
        flags.append("-DPYTHON")
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
              "offcpu_counts0", "offcpu_counts1", "unwind_rows", "proc_maps", "unwind_wanted", "unwind_cpu", "unwind_off",
              "py_procs", "py_threads", "py_new", "py_execs")
# Tail-called unwinder programs: (function, BCC program type name, program array). A program
# array's entries are cleared when its last user-space fd closes: the agent holds it.
UNWIND_PROGS = (("unwind_cpu_step", "PERF_EVENT", "unwind_cpu"), ("unwind_off_step", "RAW_TRACEPOINT", "unwind_off"))
SCM_MAX_FDS = 250  # the kernel's limit per SCM_RIGHTS message is 253
LOAD_TIMEOUT_S = 300.0


# -- the loader subprocess: the only process that imports BCC (and so maps ~100 MB of LLVM) ------
def _attach(frequency: int, offcpu: bool, min_block_ns: int, pids: list[int],
            offcpu_kernel_stacks: bool, unwind: UnwindSizes | None,
            stack_entries: int) -> tuple[dict[str, int], list[int]]:
    """Compile, load and attach; returns map fds by name and the fds that keep programs attached."""
    preflight()
    bcc = import_bcc()
    try:
        bpf = bcc.BPF(src_file=str(BPF_SOURCE).encode(),
                      cflags=build_cflags(offcpu, min_block_ns, pids,
                                          offcpu_kernel_stacks=offcpu_kernel_stacks, unwind=unwind,
                                          stack_entries=stack_entries))
        if unwind is not None:
            _set_unwind_programs(bcc, bpf, offcpu)
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


def _set_unwind_programs(bcc: Any, bpf: Any, offcpu: bool) -> None:
    """Load the tail-called unwinder programs into their program arrays (before anything is
    attached: a sample never finds an empty array)."""
    import ctypes

    for func, prog_type, array in UNWIND_PROGS:
        if array == "unwind_off" and not offcpu:
            continue
        fn = bpf.load_func(func.encode(), getattr(bcc.BPF, prog_type))
        bpf[array.encode()][ctypes.c_int(0)] = ctypes.c_int(fn.fd)


def _child_main(sock_fd: int, options: str) -> None:
    """Entry of the loader subprocess: load, hand every fd to the agent, exit without cleanup."""
    sock = socket.socket(fileno=sock_fd)
    try:
        try:
            opts = json.loads(options)
            unwind = UnwindSizes(**opts["unwind"]) if opts.get("unwind") else None
            maps, keep = _attach(opts["frequency"], opts["offcpu"], opts["min_block_ns"], opts["pids"],
                                 opts["offcpu_kernel_stacks"], unwind, opts["stack_entries"])
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
                 offcpu_kernel_stacks: bool = False, unwind: UnwindSizes | None = None,
                 stack_entries: int = STACK_ENTRIES) -> None:
        self.unwind = unwind
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        options = json.dumps({"frequency": frequency, "offcpu": offcpu, "min_block_ns": min_block_ns,
                              "pids": sorted(set(pids or ())), "offcpu_kernel_stacks": offcpu_kernel_stacks,
                              "unwind": dataclasses.asdict(unwind) if unwind else None,
                              "stack_entries": stack_entries})
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
                  offcpu_kernel_stacks: bool = False, timeout_s: float = LOAD_TIMEOUT_S,
                  unwind: UnwindSizes | None = None) -> Loaded:
    """Compile and attach in a short-lived subprocess (BCC and LLVM never enter this process);
    receive the map and attachment fds over a Unix socket. Raises LoaderError with its message."""
    return PendingLoad(frequency, offcpu, min_block_ns, pids, offcpu_kernel_stacks, unwind).result(timeout_s)


__all__ = [
    "BPF_DIR",
    "BPF_SOURCE",
    "Loaded",
    "LoaderError",
    "PendingLoad",
    "build_cflags",
    "import_bcc",
    "load_programs",
    "preflight",
]


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--child":
    _child_main(int(sys.argv[2]), sys.argv[3])
