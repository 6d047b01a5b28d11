"""Turn raw addresses into `Frame`s; never drop one: unresolvable ones become `binary+0xoffset`
or `[unknown]`, and each is counted in the caller's counters."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import MutableMapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collector.processes import ProcessTracker
from collector.symbolize.cache import LRU
from collector.symbolize.demangle import demangle
from collector.symbolize.elf import ElfReadError, ElfSymbols, load_elf
from collector.symbolize.kallsyms import KernelSymbols
from collector.symbolize.perfmap import MAX_PERF_MAP_BYTES, PerfMap
from collector.symbolize.procmaps import Mapping, ProcessInfo
from profiler.model import KERNEL_BINARY, Frame, FrameKind

log = logging.getLogger("hotpath.collector.symbolize")
UNKNOWN = "[unknown]"
Counters = MutableMapping[str, int]
# Bounds of the frame cache (an entry is ~250 bytes): per process, and in all.
MAX_FRAMES_PER_PID = 32768
MAX_FRAMES = 100_000


def _count(counters: Counters, *names: str) -> None:
    for name in names:
        counters[name] = counters.get(name, 0) + 1


class Symbolizer:
    """Symbolizes stacks of any process known to a `ProcessTracker`; thread-safe."""

    def __init__(self, tracker: ProcessTracker, kernel: KernelSymbols | None = None,
                 max_symbols: int = 1_500_000, proc: str = "/proc",
                 perf_map_max_bytes: int = MAX_PERF_MAP_BYTES) -> None:
        self.tracker = tracker
        self.kernel = kernel if kernel is not None else KernelSymbols()
        self.proc = proc
        self.perf_map_max_bytes = perf_map_max_bytes
        self._lock = threading.RLock()
        # stat identity -> build id (or the identity itself); image key -> symbols (None = unreadable)
        self._ident: LRU[tuple, str] = LRU(100_000)
        self._images: LRU[str, ElfSymbols | None] = LRU(max_symbols, lambda s: s.weight() if s else 1)
        self._pinned: dict[tuple[int, int], str] = {}  # (pid, mapping start) -> image key
        self._perfmaps: LRU[int, PerfMap] = LRU(256)
        self._refreshed: set[int] = set()
        self._perfmaps_checked: set[int] = set()  # pids whose perf map was stat()ed this drain
        self._checked: set[tuple[int, int, str]] = set()  # (pid, start, path) already warmed
        # pid -> (the ProcessInfo it was built from, {(address, is_leaf): (frame, counter names)}):
        # most stacks recur every interval, and a file-backed frame depends only on the mapping
        # snapshot and the image, so it is reused until the process is captured anew.
        self._frames: dict[int, tuple[ProcessInfo, dict[tuple[int, bool], tuple[Frame, tuple[str, ...]]]]] = {}
        self.frame_cache_hits = 0
        self._negative: set[int] = set()  # pids with cached unknown frames
        self._events: dict[str, int] = {}  # see take_events()

    # -- ELF images --------------------------------------------------------------------------
    def _candidates(self, pid: int, m: Mapping) -> list[str]:
        out = []
        if m.deleted:
            out.append(f"{self.proc}/{pid}/map_files/{m.start:x}-{m.end:x}")
        out += [f"{self.proc}/{pid}/root{m.clean_path}", m.clean_path]
        return out

    def _image_for(self, pid: int, m: Mapping) -> tuple[str, ElfSymbols | None]:
        pinned = self._pinned.get((pid, m.start))
        if pinned is not None and pinned in self._images:
            return pinned, self._images.get(pinned)
        for path in self._candidates(pid, m):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if m.inode and st.st_ino != m.inode and "/map_files/" not in path:
                continue  # replaced on disk since it was mapped: that file is not this image
            ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            key = self._ident.get(ident)
            if key is None or key not in self._images:
                syms = self._load(path, root=f"{self.proc}/{pid}/root" if "/root/" in path else "")
                key = (syms.build_id if syms and syms.build_id else repr(ident))
                if syms is not None or key not in self._images:
                    self._images.put(key, syms)
                self._ident.put(ident, key)
            self._pinned[(pid, m.start)] = key
            return key, self._images.get(key)
        return "", None

    def _load(self, path: str, root: str) -> ElfSymbols | None:
        """The image's symbols, or None: a failure stays with this binary (its frames become
        `binary+0xoffset`) and is counted, never raised into the interval or the process poll."""
        try:
            return load_elf(path, root=root)
        except ElfReadError as exc:
            log.debug("%s", exc)
        except Exception:  # a bug on odd input must not stop symbolizing every other binary
            log.exception("reading %s failed", path)
        self._count_event("unreadable_binaries")
        return None

    def _count_event(self, name: str) -> None:
        with self._lock:
            self._events[name] = self._events.get(name, 0) + 1

    def take_events(self) -> dict[str, int]:
        """Per-binary and per-file refusals since the last call (shipped as batch counters)."""
        with self._lock:
            events, self._events = self._events, {}
        return events

    def warm(self, info: ProcessInfo) -> None:
        """Load the images of a freshly captured process while its files are still reachable."""
        with self._lock:
            for m in info.maps:
                ident = (info.pid, m.start, m.path)  # the path gains " (deleted)" when unlinked
                if not m.clean_path.startswith("/") or ident in self._checked:
                    continue
                self._checked.add(ident)
                try:
                    host_same = not m.deleted and os.stat(m.clean_path).st_ino == m.inode
                except OSError:
                    host_same = False
                if not host_same:  # deleted, replaced or inside a container: pin it now
                    self._image_for(info.pid, m)

    def forget(self, pid: int) -> None:
        with self._lock:
            for key in [k for k in self._pinned if k[0] == pid]:
                del self._pinned[key]
            for ident in [k for k in self._checked if k[0] == pid]:
                self._checked.discard(ident)
            self._perfmaps.pop(pid)
            self._frames.pop(pid, None)
            self._negative.discard(pid)

    # -- frames ------------------------------------------------------------------------------
    def kernel_frames(self, addrs: Sequence[int], counters: Counters) -> list[Frame]:
        """Leaf-first kernel addresses -> leaf-first frames."""
        out = []
        for i, addr in enumerate(addrs):
            name = self.kernel.resolve(addr - 1 if i else addr)
            if name is None:
                _count(counters, "unsymbolized_frames",
                       "unsymbolized_kptr_restrict" if self.kernel.restricted else "unsymbolized_kernel")
                name = f"{KERNEL_BINARY}+0x{addr:x}" if not self.kernel.restricted else UNKNOWN
            out.append(Frame(name, KERNEL_BINARY, FrameKind.KERNEL, address=addr))
        return out

    def _perfmap(self, pid: int, info: ProcessInfo | None) -> PerfMap | None:
        pm = self._perfmaps.get(pid)
        if pm is None:
            nspid = info.nspid if info and info.nspid else pid
            path = f"{self.proc}/{pid}/root/tmp/perf-{nspid}.map"
            if not os.path.exists(path):
                path = f"/tmp/perf-{pid}.map"
            pm = PerfMap(path, owners={0, *self._uids(pid, info)}, max_bytes=self.perf_map_max_bytes)
            self._perfmaps.put(pid, pm)
        elif pid in self._perfmaps_checked:
            return pm if len(pm) else None
        self._perfmaps_checked.add(pid)  # one stat per pid per drain: JITs append between drains
        usable = pm.refresh()
        for name, n in pm.take_counts().items():
            self._events[name] = self._events.get(name, 0) + n
            if name == "perf_maps_refused":
                log.warning("perf map refused: %s", pm.refusal)
        return pm if usable else None

    def _uids(self, pid: int, info: ProcessInfo | None) -> tuple[int, ...]:
        """Whose files the process may have written: from its capture, else /proc/PID's owner."""
        if info is not None and info.uids:
            return info.uids
        try:
            return (os.stat(f"{self.proc}/{pid}").st_uid,)
        except OSError:
            return ()  # gone and never captured: only root's files

    def _user_frame(self, pid: int, info: ProcessInfo | None, addr: int, lookup: int,
                    counters: Counters) -> tuple[Frame, bool]:
        """The frame, and whether it may be cached (it depends only on this mapping snapshot)."""
        m = info.find(lookup) if info else None
        if m is None and info is not None and info.alive and pid not in self._refreshed:
            self._refreshed.add(pid)  # one refresh per pid per drain: new dlopen/JIT regions
            info = self.tracker.refresh(pid)
            m = info.find(lookup) if info else None
        if m is None or not m.clean_path.startswith("/"):
            pm = self._perfmap(pid, info)
            name = pm.resolve(lookup) if pm else None
            if name is not None:
                return Frame(name, f"/tmp/perf-{pid}.map", FrameKind.JIT, address=addr), False
            # Without a perf map the answer stands until the mappings change or a perf map
            # appears (`user_frames` checks that once per drain and drops such entries).
            negative = pm is None
            if m is not None:
                _count(counters, "unsymbolized_frames", "unsymbolized_special")
                return Frame(f"{m.path or '[anon]'}+0x{lookup - m.start:x}", m.path or "[anon]",
                             FrameKind.UNKNOWN, address=addr), negative
            _count(counters, "unsymbolized_frames",
                   "unsymbolized_no_process" if info is None else "unsymbolized_no_mapping")
            return Frame(UNKNOWN, "", FrameKind.UNKNOWN, address=addr), negative
        _key, syms = self._image_for(pid, m)
        file_off = lookup - m.start + m.offset
        vaddr = syms.to_vaddr(file_off) if syms else None
        name = syms.resolve(vaddr) if syms and vaddr is not None else None
        if name is not None:
            return Frame(demangle(name), m.clean_path, FrameKind.NATIVE, address=addr,
                         build_id=syms.build_id if syms else ""), True
        _count(counters, "unsymbolized_frames",
               "unsymbolized_unreadable_binary" if syms is None else "unsymbolized_no_symbol")
        off = vaddr if vaddr is not None else file_off
        return Frame(f"{os.path.basename(m.clean_path)}+0x{off:x}", m.clean_path, FrameKind.NATIVE,
                     address=addr, build_id=syms.build_id if syms else ""), True

    def user_frames(self, pid: int, addrs: Sequence[int], counters: Counters) -> list[Frame]:
        """Leaf-first user addresses of process `pid` -> leaf-first frames."""
        with self._lock:
            info = self.tracker.get(pid)
            if pid in self._negative and pid not in self._perfmaps_checked:
                self._drop_negatives_if_perfmap(pid, info)
            cached = self._frames.get(pid)
            if cached is None or cached[0] is not info:
                cached = (info, {})  # type: ignore[assignment]
                if info is not None:
                    self._frames[pid] = cached  # type: ignore[assignment]
            cache = cached[1]
            out = []
            for i, a in enumerate(addrs):
                hit = cache.get((a, i == 0))
                if hit is not None:
                    self.frame_cache_hits += 1
                    for name in hit[1]:
                        counters[name] = counters.get(name, 0) + 1
                    out.append(hit[0])
                    continue
                # Return addresses point after the call: look up addr-1 so tail calls resolve right.
                seen: dict[str, int] = {}
                frame, cacheable = self._user_frame(pid, info, a, a - 1 if i else a, seen)
                for name, n in seen.items():
                    counters[name] = counters.get(name, 0) + n
                if cacheable and info is not None and self.tracker.get(pid) is info:
                    if len(cache) >= MAX_FRAMES_PER_PID:
                        cache.clear()
                    cache[(a, i == 0)] = (frame, tuple(seen))
                    if frame.kind is FrameKind.UNKNOWN:
                        self._negative.add(pid)
                out.append(frame)
            return out

    def _drop_negatives_if_perfmap(self, pid: int, info: ProcessInfo | None) -> None:
        """Once per drain: a process that now has a perf map loses its cached unknown frames."""
        if self._perfmap(pid, info) is None:
            return
        self._negative.discard(pid)
        cached = self._frames.get(pid)
        if cached is not None:
            for key in [k for k, v in cached[1].items() if v[0].kind is FrameKind.UNKNOWN]:
                del cached[1][key]

    def end_drain(self) -> None:
        with self._lock:
            self._refreshed.clear()
            self._perfmaps_checked.clear()
            if sum(len(c[1]) for c in self._frames.values()) > MAX_FRAMES:
                self._frames.clear()
