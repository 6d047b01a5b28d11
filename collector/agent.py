"""The long-running collector loop: drain -> symbolize -> pprof -> spool -> ship, every interval.

Clock, wait and stack source are injected (`Agent(...)`), so the loop is unit-tested with fakes;
`run_agent(config)` wires the real parts (BCC, /proc, HTTP) and is what `hotpath collector` and
`hotpath up` use.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from collector.batch import Batch, build_batch
from collector.metrics import Metrics
from collector.ship import Shipper
from collector.source import StackSource
from collector.spool import Spool
from collector.symbolize.perfmap import MAX_PERF_MAP_BYTES
from collector.symbolize.symbolizer import Symbolizer
from profiler import pprof
from profiler.model import Profile

if TYPE_CHECKING:
    from collector.python.support import PythonSupport

log = logging.getLogger("hotpath.collector")
FIRST_INTERVAL_S = 2.0
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None  # not glibc: its allocator has its own habits
    return libc


def keep_rss_flat(libc: ctypes.CDLL | None) -> None:
    """Big transient buffers (a binary's symbol table, a batch body) go to their own mappings and
    back to the OS when freed. glibc otherwise raises its mmap threshold after the first such free,
    later ones land in the heap, and small long-lived objects pin that heap: RSS grew by ~40 MB."""
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


@dataclass(slots=True)
class AgentConfig:
    """Everything `hotpath collector` takes on its command line."""

    server: str
    token: str
    frequency: int = 19
    interval_s: float = 10.0
    offcpu: bool = True
    min_block_ns: int = 1_000_000
    offcpu_kernel_stacks: bool = False
    unwind: bool = True  # user stacks by the table unwinder (False: frame pointers, bpf_get_stack)
    unwind_rows: int = 1 << 22  # unwind_rows entries (12 B each, allocated at load): all tables loaded
    unwind_procs: int = 1024  # processes with a mapping table in the kernel (8 KiB each, as used)
    stack_entries: int = 32768  # unique stacks per stack-map generation (~1.1 KiB each, as used)
    service: str = ""
    host: str = ""
    pids: tuple[int, ...] = ()
    spool_dir: str = "/var/lib/hotpath/spool"
    spool_max_bytes: int = 100 * 1024 * 1024
    metrics_addr: str = ""
    perf_map_max_bytes: int = MAX_PERF_MAP_BYTES
    extra_labels: dict[str, str] = field(default_factory=dict)


def series_params(config: AgentConfig) -> dict[str, str]:
    """Series labels sent as ingest query parameters."""
    host = config.host or socket.gethostname()
    params = {"service": config.service or host, "host": host, "kernel": platform.release()}
    params.update(config.extra_labels)
    return params


class Agent:
    """One collector: call `tick()` per interval, or `run()` until `stop` is set."""

    def __init__(self, config: AgentConfig, source: StackSource, symbolizer: Symbolizer, spool: Spool,
                 shipper: Shipper, clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[float], bool] | None = None, out: Callable[[str], None] | None = None,
                 metrics: Metrics | None = None, python: PythonSupport | None = None) -> None:
        self.config = config
        self.python = python
        self.source = source
        self.symbolizer = symbolizer
        self.spool = spool
        self.shipper = shipper
        self.clock = clock
        self.stop = threading.Event()
        self.wait = wait or self.stop.wait
        self.out = out or (lambda line: print(line, file=sys.stderr, flush=True))
        self.metrics = metrics or Metrics()
        self.params = series_params(config)
        self.intervals = 0
        self.failed_ticks = 0
        self.first_ship_at: float | None = None
        self.started_at = clock()
        self._cpu_mark = time.process_time()
        self.libc: ctypes.CDLL | None = None  # set by run_agent: trim the heap after each tick

    def _spool_profile(self, profile: Profile, kind: str) -> None:
        body = pprof.encode(profile)
        self.spool.make_room(len(body) + 64)  # drop first, so this batch reports those drops too
        drops = self.spool.take_unreported_drops()
        if drops:
            profile.counters["spool_dropped_batches"] = profile.counters.get("spool_dropped_batches", 0) + drops
            body = pprof.encode(profile)
        self.spool.put(body, dict(self.params), kind=kind, carried_drops=drops)

    def tick(self) -> Batch:
        """One interval: drain the source, build profiles, spool them, try to ship everything."""
        drain = self.source.drain()
        batch = build_batch(drain, self.symbolizer, self.source.frequency, self.source.offcpu, self.python)
        self._spool_profile(batch.cpu, "cpu")
        if batch.offcpu is not None:
            self._spool_profile(batch.offcpu, "offcpu")
        before = self.shipper.stats.shipped
        self.shipper.flush(self.spool)
        shipped = self.shipper.stats.shipped - before
        if shipped and self.first_ship_at is None:
            self.first_ship_at = self.clock()
        self.intervals += 1
        spooled = len(self.spool.items())
        self.metrics.observe(batch, shipped, spooled, self.spool, self.shipper)
        err = f" last_error={self.shipper.stats.last_error!r}" if spooled and self.shipper.stats.last_error else ""
        cpu_mark = time.process_time()  # the agent's own cost (all threads) since the last line
        cpu, self._cpu_mark = cpu_mark - self._cpu_mark, cpu_mark
        self.out(f"hotpath collector: interval {self.intervals} samples={batch.samples} "
                 f"stacks={batch.unique_stacks} missed={batch.missed} "
                 f"unsymbolized={batch.cpu.counters.get('unsymbolized_frames', 0)} shipped={shipped} "
                 f"spooled={spooled} spool_dropped={self.spool.dropped_batches} cpu={cpu:.3f}s{err}")
        return batch

    def run(self) -> int:
        """Tick every interval until stopped; retry shipping between ticks; flush on stop."""
        interval = self.config.interval_s
        # A short first interval shows within seconds that sampling and shipping work; it is an
        # ordinary batch whose profile carries its own (shorter) duration, like the flush on stop.
        next_tick = self.clock() + min(interval, FIRST_INTERVAL_S)
        while True:
            now = self.clock()
            if now >= next_tick:
                self._safe_tick()
                next_tick += interval
                if next_tick <= self.clock():  # a slow tick: skip ahead rather than burst
                    next_tick = self.clock() + interval
                continue
            if self.wait(min(1.0, next_tick - now)):
                break
            if self.clock() >= self.shipper.next_try:
                self._safe_flush()
        self.shipper.next_try = 0.0  # on the way out, one more attempt regardless of backoff
        self._safe_tick()  # SIGTERM flushes the interval in progress
        return 0

    def _safe_flush(self) -> None:
        """Ship between ticks; like a tick, a failure here is logged and the agent runs on."""
        try:
            if self.spool.items():
                self.shipper.flush(self.spool)
        except Exception:
            log.exception("shipping between intervals failed; continuing")

    def _safe_tick(self) -> None:
        """A tick that fails (disk full, a bug on odd input) is logged and counted; the agent runs on."""
        try:
            self.tick()
        except Exception:
            self.failed_ticks += 1
            log.exception("interval failed (%d so far); continuing", self.failed_ticks)
        if self.libc is not None:
            self.libc.malloc_trim(0)  # the interval's garbage back to the OS (~1 ms)


def run_agent(config: AgentConfig, stop: threading.Event | None = None,
              out: Callable[[str], None] | None = None) -> int:
    """Run the real collector (BPF + /proc + HTTP) until SIGTERM/SIGINT or `stop` is set."""
    from collector.bpf_loader import PendingLoad, UnwindSizes
    from collector.bpf_source import BccSource
    from collector.processes import ProcessTracker
    from collector.python.support import start_python
    from collector.unwind.table_cache import default_cache_dir

    started = time.monotonic()
    libc = _libc()
    keep_rss_flat(libc)
    # The loader compiles in its own process meanwhile kallsyms and /proc are read here.
    unwind = UnwindSizes(rows=config.unwind_rows, procs=config.unwind_procs) if config.unwind else None
    pending = PendingLoad(config.frequency, config.offcpu, config.min_block_ns, config.pids,
                          config.offcpu_kernel_stacks, unwind, config.stack_entries)
    tracker = None
    try:
        symbolizer = Symbolizer(None, perf_map_max_bytes=config.perf_map_max_bytes)  # type: ignore[arg-type]
        tracker = ProcessTracker(pids=config.pids or None, on_capture=symbolizer.warm)
        symbolizer.tracker = tracker
        tracker.start(interval_s=0.5)
        source = BccSource(frequency=config.frequency, offcpu=config.offcpu, pending=pending,
                           unwind=unwind, unwind_cache_dir=str(default_cache_dir(config.spool_dir)))
        source.follow(tracker)
        python = start_python(source, tracker)
    except BaseException:
        pending.cancel()
        if tracker is not None:
            tracker.stop()
        raise
    spool = Spool(config.spool_dir, config.spool_max_bytes)
    shipper = Shipper(config.server, config.token)
    metrics = Metrics()
    agent = Agent(config, source, symbolizer, spool, shipper, out=out, metrics=metrics, python=python)
    if stop is not None:
        agent.stop = stop
        agent.wait = stop.wait
    if config.metrics_addr:
        metrics.serve(config.metrics_addr)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: agent.stop.set())
    agent.started_at = started
    agent.libc = libc
    agent.out(f"hotpath collector: pid {os.getpid()} sampling at {config.frequency} Hz, "
              f"off-CPU {'on' if config.offcpu else 'off'}, every {config.interval_s:g}s "
              f"(first after {min(config.interval_s, FIRST_INTERVAL_S):g}s) -> "
              f"{shipper.url} (spool {spool.dir}, loaded in {time.monotonic() - started:.1f}s)")
    try:
        return agent.run()
    finally:
        tracker.stop()
        if python is not None:
            python.stop()
        source.close()
