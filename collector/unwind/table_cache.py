"""Table identity and the on-disk cache of compiled tables, so a restart does not recompile libc.

A table is named by the file's GNU build ID, or, when it has none, by a digest of the bytes it is
compiled from: a library mapped by hundreds of processes, the same build in two containers or one
library copied into several virtualenvs is one table. Cached files carry the compiler's FORMAT_VERSION in their name and header, are written to a
temporary file and renamed (a reader never sees half a table), and are checked in full on load
(magic, version, exact size, CRC, sorted rows, known rules): a file that fails is removed and the
table recompiled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collector.bpf_abi import DEFINES, UNWIND_ROW
from collector.unwind.compiler import FORMAT_VERSION, MAX_ROWS, UnwindTable
from collector.unwind.elf_image import ElfImage

_MAGIC = b"HPUT"
_HEADER = struct.Struct("<4sIIIII")  # magic, version, rows, segments, meta bytes, crc32 of the rest
_SEGMENT = np.dtype([("offset", "<u8"), ("vaddr", "<u8"), ("filesz", "<u8")])
_MAX_SEGMENTS = 64
_MAX_META = 1 << 16
_SUFFIX = f".v{FORMAT_VERSION}.hput"
_NAME = re.compile(r"^[0-9a-z-]{1,160}$")
_CFA_RULES = np.array(sorted(v for k, v in DEFINES.items() if k.startswith("HP_CFA_")), dtype=np.uint8)
_RBP_RULES = np.array(sorted(v for k, v in DEFINES.items() if k.startswith("HP_RBP_")), dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class TableKey:
    """What names a table: `b-<build id>`, `h-<content digest>` or `f-<dev>-<inode>-<size>-<mtime ns>`
    (hex; the last for a file that could not even be framed as ELF)."""

    name: str

    @staticmethod
    def for_build_id(build_id: str) -> TableKey:
        return TableKey(f"b-{build_id.lower()}")

    @staticmethod
    def for_file(st: os.stat_result) -> TableKey:
        return TableKey(f"f-{st.st_dev:x}-{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}")

    @staticmethod
    def for_content(image: ElfImage) -> TableKey:
        """`h-<digest>` of everything a table is compiled from (CFI sections, load segments): for
        files without a build ID, so copies of one library (one per virtualenv, say) share a table."""
        h = hashlib.blake2b(digest_size=16)
        for seg in image.segments:
            h.update(struct.pack("<QQQ", *seg))
        for sec in image.sections:
            h.update(sec.name.encode() + struct.pack("<QQ", sec.vaddr, len(sec.data)))
            h.update(sec.data)
        h.update(",".join(image.notes).encode())
        return TableKey(f"h-{h.hexdigest()}")


def default_cache_dir(spool_dir: str) -> Path:
    """The agent's table cache: next to its spool under the state directory
    (/var/lib/hotpath/spool -> /var/lib/hotpath/unwind-tables)."""
    return Path(spool_dir).resolve().parent / "unwind-tables"


def encode(table: UnwindTable) -> bytes:
    """The cache file's bytes for `table`."""
    segs = np.array(table.segments[:_MAX_SEGMENTS], dtype=_SEGMENT)
    meta = json.dumps({"counts": table.counts, "build_id": table.build_id}, sort_keys=True).encode()
    body = segs.tobytes() + meta + np.ascontiguousarray(table.rows, dtype=UNWIND_ROW).tobytes()
    return _HEADER.pack(_MAGIC, FORMAT_VERSION, len(table.rows), len(segs), len(meta), zlib.crc32(body)) + body


class CacheFormatError(Exception):
    """A cache file that is not a whole, valid table of this format version."""


def decode(blob: bytes) -> UnwindTable:
    """The table in a cache file's bytes; raises CacheFormatError for anything off."""
    if len(blob) < _HEADER.size:
        raise CacheFormatError("shorter than its header")
    magic, version, n_rows, n_segs, n_meta, crc = _HEADER.unpack_from(blob)
    if magic != _MAGIC or version != FORMAT_VERSION:
        raise CacheFormatError("magic or version")
    if n_rows > MAX_ROWS or n_segs > _MAX_SEGMENTS or n_meta > _MAX_META:
        raise CacheFormatError("counts out of bounds")
    seg_end = _HEADER.size + n_segs * _SEGMENT.itemsize
    meta_end = seg_end + n_meta
    if len(blob) != meta_end + n_rows * UNWIND_ROW.itemsize:
        raise CacheFormatError("size does not match the header")
    if zlib.crc32(memoryview(blob)[_HEADER.size:]) != crc:
        raise CacheFormatError("checksum")
    segs = np.frombuffer(blob, dtype=_SEGMENT, count=n_segs, offset=_HEADER.size)
    rows = np.frombuffer(blob, dtype=UNWIND_ROW, count=n_rows, offset=meta_end).copy()
    if n_rows and (np.any(np.diff(rows["pc"].astype(np.int64)) <= 0) or not np.isin(rows["cfa_rule"], _CFA_RULES).all()
                   or not np.isin(rows["rbp_rule"], _RBP_RULES).all()):
        raise CacheFormatError("rows unsorted or with unknown rules")
    try:
        meta = json.loads(blob[seg_end:meta_end])
        counts = {str(k): int(v) for k, v in dict(meta["counts"]).items()}
        build_id = str(meta["build_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheFormatError(f"metadata: {exc}") from exc
    return UnwindTable(rows, counts, build_id, [tuple(int(x) for x in s) for s in segs.tolist()])


class TableCache:
    """Compiled tables on disk under `directory` (None: no disk cache), at most `max_bytes`."""

    def __init__(self, directory: str | Path | None, max_bytes: int = 512 << 20) -> None:
        self.dir = Path(directory) if directory is not None else None
        self.max_bytes = max_bytes
        self.stats: Counter[str] = Counter()
        if self.dir is not None:
            try:  # only we write here: a table is trusted once its checks pass
                self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._drop_other_versions()
            except OSError:
                self.stats["cache_dir_unusable"] += 1  # compile every time; the agent keeps going
                self.dir = None

    def _path(self, key: TableKey) -> Path | None:
        if self.dir is None or not _NAME.match(key.name):
            return None
        return self.dir / f"{key.name}{_SUFFIX}"

    def _drop_other_versions(self) -> None:
        assert self.dir is not None
        for p in self.dir.glob("*.hput"):
            if not p.name.endswith(_SUFFIX):
                with contextlib.suppress(OSError):
                    p.unlink()

    def load(self, key: TableKey) -> UnwindTable | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size > _HEADER.size + _MAX_SEGMENTS * 24 + _MAX_META + MAX_ROWS * UNWIND_ROW.itemsize:
                    raise CacheFormatError("larger than any table")
                table = decode(fh.read(size))
            os.utime(path)  # recency for pruning
        except FileNotFoundError:
            self.stats["cache_misses"] += 1
            return None
        except (OSError, CacheFormatError):
            self.stats["cache_bad_files"] += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self.stats["cache_hits"] += 1
        return table

    def store(self, key: TableKey, table: UnwindTable) -> None:
        path = self._path(key)
        if path is None:
            return
        blob = encode(table)
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(blob)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError:
            self.stats["cache_write_errors"] += 1
            return
        self.stats["cache_stores"] += 1
        self._prune()

    def _prune(self) -> None:
        """Remove least recently used files while the directory is over its bound."""
        assert self.dir is not None
        files = []
        for p in self.dir.glob(f"*{_SUFFIX}"):
            with contextlib.suppress(OSError):
                st = p.stat()
                files.append((st.st_mtime_ns, st.st_size, p))
        total = sum(f[1] for f in files)
        for _, size, p in sorted(files):
            if total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                p.unlink()
                total -= size
                self.stats["cache_pruned"] += 1
