"""`hotpath record`: one local capture to a pprof (or folded) file, no server needed."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from collector.batch import build_batch
from collector.bpf_loader import LoaderError
from collector.bpf_source import BccSource
from collector.processes import ProcessTracker
from collector.python.support import start_python
from collector.symbolize.symbolizer import Symbolizer
from profiler import folded, pprof


def record(duration_s: float, frequency: int, ptype: str, pids: Sequence[int], output: str,
           as_folded: bool, min_block_ns: int, out: TextIO, offcpu_kernel_stacks: bool = False) -> int:
    """Sample for `duration_s` (Ctrl-C/SIGTERM stops early and still writes), then write the file."""
    from hotpath.command import CommandError

    path = Path(output)
    if path.parent and not path.parent.exists():
        raise CommandError(f"output directory {path.parent} does not exist")
    symbolizer = Symbolizer(None)  # type: ignore[arg-type]
    tracker = ProcessTracker(pids=pids or None, on_capture=symbolizer.warm)
    symbolizer.tracker = tracker
    tracker.start(interval_s=0.5)
    try:
        source = BccSource(frequency=frequency, offcpu=ptype == "offcpu", min_block_ns=min_block_ns,
                           pids=pids, offcpu_kernel_stacks=offcpu_kernel_stacks)
    except LoaderError as exc:
        tracker.stop()
        raise CommandError(str(exc)) from None
    source.follow(tracker)
    python = start_python(source, tracker)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    start = time.monotonic()
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - start
            if elapsed >= duration_s:
                break
            out.write(f"\rhotpath record: {elapsed:4.0f}/{duration_s:g}s {ptype} at {frequency} Hz ")
            out.flush()
            try:
                stop.wait(min(1.0, duration_s - elapsed))
            except KeyboardInterrupt:
                break
        drain = source.drain()
        # Named before the processes' maps are dropped: code objects are read from live memory.
        batch = build_batch(drain, symbolizer, frequency, offcpu=ptype == "offcpu", python=python)
    finally:
        tracker.stop()
        if python is not None:
            python.stop()
        source.close()
    profile = batch.offcpu if ptype == "offcpu" and batch.offcpu is not None else batch.cpu
    if as_folded:
        path.write_text(folded.render(profile))
    else:
        path.write_bytes(pprof.encode(profile))
    c = profile.counters
    out.write(f"\rhotpath record: wrote {path} ({len(profile.samples)} stacks, {batch.samples} samples, "
              f"missed {c.get('missed_stacks', 0)}, unsymbolized frames {c.get('unsymbolized_frames', 0)})\n")
    return 0
