"""Recorded Python frames -> model `Frame`s: `module.Class.method`, file and line.

The function name is the code object's qualified name prefixed with its module, derived from the
file name the way the import system would have named it: the file's stem, prefixed by the
enclosing package directories (those holding an `__init__.py`, looked up in the process's own
mount namespace through /proc/PID/root and cached per directory). A code object that cannot be
read becomes a placeholder frame (its address) and a counted reason: a partial stack, never a
dropped one.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, MutableMapping

from collector.python.code import CodeCache, CodeInfo, CodeReadError
from collector.python.frames import FrameRef
from collector.python.layout import Layout
from collector.python.procmem import Memory
from profiler.model import Frame, FrameKind

MAX_PACKAGE_DEPTH = 16
UNREADABLE_CODE = "python_code_unreadable"


def module_name(filename: str, is_package: Callable[[str], bool]) -> str:
    """`json.decoder` for .../json/decoder.py when .../json is a package; the stem otherwise.

    Pseudo files (`<string>`, `<frozen importlib._bootstrap>`) give "" (no module prefix)."""
    if not filename or filename.startswith("<"):
        return filename[len("<frozen "):-1] if filename.startswith("<frozen ") else ""
    directory, base = posixpath.split(filename)
    stem = base.rsplit(".", 1)[0] if "." in base else base
    parts = [] if stem == "__init__" else [stem]
    for _ in range(MAX_PACKAGE_DEPTH):
        if not directory or directory == "/" or not is_package(directory):
            break
        directory, pkg = posixpath.split(directory)
        parts.append(pkg)
    return ".".join(reversed(parts))


def python_frame(info: CodeInfo, lasti: int, module: str) -> Frame:
    name = f"{module}.{info.qualname}" if module else info.qualname
    return Frame(name, "", FrameKind.INTERPRETED, filename=info.filename, line=info.line(lasti))


def unreadable_frame(ref: FrameRef) -> Frame:
    return Frame(f"[python code {ref.code:#x}]", "", FrameKind.INTERPRETED)


class PackageDirs:
    """Is `dir` a package (holds `__init__.py`) in process `pid`'s mount namespace? Cached."""

    def __init__(self, proc: str = "/proc", capacity: int = 65536) -> None:
        self.proc = proc
        self.capacity = capacity
        self._known: dict[tuple[int, str], bool] = {}

    def check(self, pid: int, directory: str) -> bool:
        key = (pid, directory)
        hit = self._known.get(key)
        if hit is None:
            hit = os.path.exists(f"{self.proc}/{pid}/root{directory}/__init__.py")
            if len(self._known) >= self.capacity:
                self._known.clear()
            self._known[key] = hit
        return hit

    def forget(self, pid: int) -> None:
        for key in [k for k in self._known if k[0] == pid]:
            del self._known[key]


class Namer:
    """Names recorded frames of live (or recently exited, already cached) processes."""

    def __init__(self, codes: CodeCache | None = None, packages: PackageDirs | None = None) -> None:
        self.codes = codes if codes is not None else CodeCache()
        self.packages = packages if packages is not None else PackageDirs()
        self._modules: dict[tuple[int, str], str] = {}

    def frames(self, pid: int, refs: list[FrameRef], mem: Memory | None, layout: Layout,
               counters: MutableMapping[str, int], weight: int = 1) -> list[Frame]:
        """One Frame per ref (same order); unreadable code objects become placeholders, counted
        `weight` times (the sample's value)."""
        out = []
        for ref in refs:
            try:
                info = self.codes.get(pid, ref.code, ref.stamp, mem, layout)
            except CodeReadError:
                counters[UNREADABLE_CODE] = counters.get(UNREADABLE_CODE, 0) + weight
                out.append(unreadable_frame(ref))
                continue
            key = (pid, info.filename)
            module = self._modules.get(key)
            if module is None:
                module = self._modules[key] = module_name(info.filename,
                                                          lambda d, pid=pid: self.packages.check(pid, d))
            out.append(python_frame(info, ref.lasti, module))
        return out

    def prefetch(self, pid: int, refs: list[FrameRef], mem: Memory, layout: Layout) -> None:
        """Read the code objects of `refs` into the cache now (no frames built); failures are
        left for naming time, which counts them."""
        for ref in refs:
            try:
                self.codes.get(pid, ref.code, ref.stamp, mem, layout)
            except CodeReadError:
                pass

    def forget(self, pid: int) -> None:
        self.codes.forget(pid)
        self.packages.forget(pid)
        for key in [k for k in self._modules if k[0] == pid]:
            del self._modules[key]
