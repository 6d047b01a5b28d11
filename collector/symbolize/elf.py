"""ELF symbol tables via pyelftools: `.symtab` + `.dynsym`, load segments, GNU build id,
separate debug files (`/usr/lib/debug/.build-id/xx/rest.debug`, `.gnu_debuglink`)."""

from __future__ import annotations

import io
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection, SymbolTableSection


class ElfReadError(Exception):
    """The file is missing, unreadable, not an ELF file, or malformed (a size or offset past its end)."""


# Most bytes one image's tables may take (symbol + string tables, notes): a crafted section header
# claiming 2^44 bytes was allocated as asked and raised MemoryError. Real tables are far smaller
# (libc's .dynsym + .dynstr: ~100 KB; a large C++ binary's .symtab + .strtab: ~100 MB).
MAX_TABLE_BYTES = 512 * 1024 * 1024
# Files read whole by pyelftools (32-bit or big-endian images only): they are small.
MAX_SLOW_PATH_BYTES = 64 * 1024 * 1024


class _Reader:
    """Bounded reads of one open file: every (offset, size) is checked against the file's size
    (taken from the open fd) and a running budget before anything is allocated."""

    def __init__(self, fh: BinaryIO, path: str, budget: int) -> None:
        self.fh = fh
        self.path = path
        self.size = os.fstat(fh.fileno()).st_size
        self.budget = budget

    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ElfReadError(f"{self.path}: {size} bytes at offset {offset} lie past the end "
                               f"of the file ({self.size} bytes)")
        if size > self.budget:
            raise ElfReadError(f"{self.path}: tables over {MAX_TABLE_BYTES} bytes")
        self.budget -= size
        self.fh.seek(offset)
        data = self.fh.read(size)
        if len(data) != size:  # shrunk under us
            raise ElfReadError(f"{self.path}: truncated while reading")
        return data


_EMPTY_U64 = np.zeros(0, dtype=np.uint64)
_EMPTY_U32 = np.zeros(0, dtype=np.uint32)


@dataclass(slots=True)
class ElfSymbols:
    """Function symbols of one ELF image, addressed by ELF virtual address.

    Stored compactly (numpy arrays, names as NUL-terminated strings in one bytes blob): about
    20 bytes per symbol plus the string table, where Python lists of ints and strs took ~170."""

    path: str
    build_id: str = ""
    addrs: np.ndarray = field(default_factory=lambda: _EMPTY_U64)
    ends: np.ndarray = field(default_factory=lambda: _EMPTY_U64)
    name_offs: np.ndarray = field(default_factory=lambda: _EMPTY_U32)
    strings: bytes = b""
    # PT_LOAD segments: (file offset, virtual address, file size)
    segments: list[tuple[int, int, int]] = field(default_factory=list)
    debuglink: str = ""
    has_symtab: bool = False

    def weight(self) -> int:
        return len(self.addrs) + len(self.strings) // 16 + 1

    def to_vaddr(self, file_offset: int) -> int | None:
        """ELF virtual address of a file offset (how PIE and shared-object load bias is undone)."""
        for off, vaddr, size in self.segments:
            if off <= file_offset < off + max(size, 1):
                return file_offset - off + vaddr
        return None

    def _name(self, i: int) -> str:
        off = int(self.name_offs[i])
        end = self.strings.find(b"\0", off)
        return self.strings[off:end if end >= 0 else None].decode("utf-8", "replace")

    def resolve(self, vaddr: int) -> str | None:
        if vaddr < 0 or vaddr >= 1 << 64:
            return None
        i = int(np.searchsorted(self.addrs, np.uint64(vaddr), side="right")) - 1
        if i < 0 or vaddr >= int(self.ends[i]):
            return None
        return self._name(i)

    def names(self) -> list[str]:
        return [self._name(i) for i in range(len(self.addrs))]

    def address_of(self, name: str) -> int | None:
        """ELF virtual address of the first symbol called `name` (for tests and tools)."""
        for i in range(len(self.addrs)):
            if self._name(i) == name:
                return int(self.addrs[i])
        return None


_SYM64 = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                   ("value", "<u8"), ("size", "<u8")])
_FUNC_TYPES = (2, 10)  # STT_FUNC, STT_GNU_IFUNC
# (addresses, sizes, name offsets into `strings`, strings) of one or more symbol tables.
SymArrays = tuple[np.ndarray, np.ndarray, np.ndarray, bytes]


def _concat(parts: list[SymArrays]) -> SymArrays:
    """One table from several, with name offsets shifted into the joined string blob."""
    if not parts:
        return _EMPTY_U64, _EMPTY_U64, _EMPTY_U32, b""
    addrs, sizes, offs, blobs, base = [], [], [], [], 0
    for a, sz, o, blob in parts:
        addrs.append(a)
        sizes.append(sz)
        offs.append(o.astype(np.uint64) + base)
        blobs.append(blob)
        base += len(blob)
    return (np.concatenate(addrs).astype(np.uint64), np.concatenate(sizes).astype(np.uint64),
            np.concatenate(offs), b"".join(blobs))


def _function_symbols(table: bytes, strings: bytes) -> SymArrays | None:
    """The defined functions of one ELF64 symbol table (`strings`: its string table plus a NUL), or
    None when it has none; names pointing past the string table are dropped."""
    syms = np.frombuffer(table[: len(table) // 24 * 24], dtype=_SYM64)
    keep = np.isin(syms["info"] & 0xF, _FUNC_TYPES) & (syms["value"] != 0) & (syms["shndx"] != 0)
    keep &= syms["name"] < len(strings)
    if not keep.any():
        return None
    return syms["value"][keep], syms["size"][keep], syms["name"][keep], strings


def _symbols(elf: ELFFile, fh: BinaryIO) -> tuple[SymArrays, bool]:
    """Function symbols, parsed with numpy: pyelftools' per-symbol objects take ~0.1 ms each."""
    parts: list[SymArrays] = []
    has_symtab = False
    if elf.elfclass != 64 or not elf.little_endian:
        return _symbols_slow(elf), False
    for section in elf.iter_sections():
        if section["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM") or section["sh_entsize"] != 24:
            continue
        if section.name == ".symtab":
            has_symtab = True
        strtab = elf.get_section(section["sh_link"])
        fh.seek(section["sh_offset"])
        raw = fh.read(section["sh_size"])
        fh.seek(strtab["sh_offset"])
        strings = fh.read(strtab["sh_size"]) + b"\0"
        if (found := _function_symbols(raw, strings)) is not None:
            parts.append(found)
    return _concat(parts), has_symtab


def _symbols_slow(elf: ELFFile) -> SymArrays:
    entries: list[tuple[int, int, str]] = []
    for section in elf.iter_sections():
        if not isinstance(section, SymbolTableSection):
            continue
        for sym in section.iter_symbols():
            if sym["st_info"]["type"] not in ("STT_FUNC", "STT_GNU_IFUNC") or sym["st_value"] == 0:
                continue
            if sym["st_shndx"] == "SHN_UNDEF":
                continue
            entries.append((sym["st_value"], sym["st_size"], sym.name))
    blob = bytearray()
    offs = []
    for _, _, name in entries:
        offs.append(len(blob))
        blob += name.encode("utf-8", "replace") + b"\0"
    return (np.array([e[0] for e in entries], dtype=np.uint64), np.array([e[1] for e in entries], dtype=np.uint64),
            np.array(offs, dtype=np.uint64), bytes(blob))


_SHDR64 = np.dtype([("name", "<u4"), ("type", "<u4"), ("flags", "<u8"), ("addr", "<u8"), ("offset", "<u8"),
                    ("size", "<u8"), ("link", "<u4"), ("info", "<u4"), ("addralign", "<u8"), ("entsize", "<u8")])
_PHDR64 = struct.Struct("<IIQQQQQQ")
_SHT_SYMTAB, _SHT_NOTE, _SHT_NOBITS, _SHT_DYNSYM = 2, 7, 8, 11
_NT_GNU_BUILD_ID = 3


def _debuglink(raw: bytes) -> str:
    """A `.gnu_debuglink` name; only a plain file name (as gdb writes it) may steer where we read."""
    name = raw.decode("utf-8", "replace")
    return name if name and "/" not in name and name not in (".", "..") else ""


def _cstr(blob: bytes, off: int) -> bytes:
    end = blob.find(b"\0", off)
    return blob[off:end if end >= 0 else None]


def _read_elf64(fh: BinaryIO, path: str) -> tuple[ElfSymbols, SymArrays] | None:
    """64-bit little-endian ELF from its raw headers (numpy/struct), or None for other kinds.

    pyelftools builds an object per section and parses e.g. every GNU hash bucket one by one:
    ~60 ms per library, which a host starting many new binaries paid for each. Every size and
    offset comes from the (untrusted) file, so every read goes through `_Reader`'s bounds."""
    rd = _Reader(fh, path, MAX_TABLE_BYTES)
    if rd.size < 64:
        raise ElfReadError(f"{path}: not an ELF file")
    ident = rd.read(0, 64)
    if ident[:4] != b"\x7fELF":
        raise ElfReadError(f"{path}: not an ELF file")
    if ident[4] != 2 or ident[5] != 1:
        return None
    phoff, shoff = struct.unpack_from("<QQ", ident, 32)
    phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", ident, 54)
    result = ElfSymbols(path=path)
    if phnum and phentsize >= _PHDR64.size:
        raw = rd.read(phoff, phnum * phentsize)
        for i in range(phnum):
            p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = _PHDR64.unpack_from(raw, i * phentsize)
            if p_type == 1:  # PT_LOAD
                result.segments.append((p_offset, p_vaddr, p_filesz))
    if not shoff or shentsize != 64:
        return result, _concat([])
    first = rd.read(shoff, 64)
    if shnum == 0:  # extended numbering: the count lives in section 0
        shnum = int(np.frombuffer(first, dtype=_SHDR64)[0]["size"])
    if shstrndx == 0xFFFF:
        shstrndx = int(np.frombuffer(first, dtype=_SHDR64)[0]["link"])
    if shnum == 0 or shnum > (rd.size - shoff) // 64:
        raise ElfReadError(f"{path}: {shnum} section headers do not fit in the file")
    shdrs = np.frombuffer(first + rd.read(shoff + 64, (shnum - 1) * 64), dtype=_SHDR64)

    def data(i: int) -> bytes:
        if not 0 <= i < shnum or int(shdrs[i]["type"]) == _SHT_NOBITS:
            return b""
        return rd.read(int(shdrs[i]["offset"]), int(shdrs[i]["size"]))

    names = data(shstrndx) + b"\0"
    parts: list[SymArrays] = []
    for i in range(shnum):
        sh = shdrs[i]
        sh_type = int(sh["type"])
        name = _cstr(names, int(sh["name"])) if int(sh["name"]) < len(names) else b""
        if sh_type == _SHT_NOTE and not result.build_id:
            notes, off = data(i), 0
            while off + 12 <= len(notes):
                namesz, descsz, n_type = struct.unpack_from("<III", notes, off)
                name_at = off + 12
                desc_at = name_at + (namesz + 3) // 4 * 4
                if n_type == _NT_GNU_BUILD_ID and notes[name_at:name_at + namesz] == b"GNU\0":
                    result.build_id = notes[desc_at:desc_at + descsz].hex()
                    break
                off = desc_at + (descsz + 3) // 4 * 4
        elif name == b".gnu_debuglink":
            result.debuglink = _debuglink(_cstr(data(i), 0))
        elif sh_type in (_SHT_SYMTAB, _SHT_DYNSYM) and int(sh["entsize"]) == 24:
            if name == b".symtab":
                result.has_symtab = True
            table = data(i)
            strings = data(int(sh["link"])) + b"\0"
            if (found := _function_symbols(table, strings)) is not None:
                parts.append(found)
    return result, _concat(parts)


def _read_elf(path: str) -> tuple[ElfSymbols, SymArrays]:
    try:
        # O_NONBLOCK: a path swapped for a FIFO must not hang the reader; only regular files are read.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ElfReadError(f"{path}: not a regular file")
            fast = _read_elf64(fh, path)
            if fast is not None:
                return fast
            # pyelftools trusts the headers' sizes; handed the bytes in memory it can slice no
            # further than they go, so a lying header cannot make it allocate more than the file.
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_SLOW_PATH_BYTES:
                raise ElfReadError(f"{path}: 32-bit or big-endian image over {MAX_SLOW_PATH_BYTES} bytes")
            fh.seek(0)
            return _read_with_pyelftools(io.BytesIO(fh.read(size)), path)
    except ElfReadError:
        raise
    except (OSError, ELFError, ValueError, KeyError, struct.error, IndexError) as exc:
        raise ElfReadError(f"{path}: {exc}") from exc
    except Exception as exc:  # a parser fed hostile bytes: any failure means "unreadable"
        raise ElfReadError(f"{path}: malformed ({type(exc).__name__}: {exc})") from exc


def _read_with_pyelftools(fh: io.BytesIO, path: str) -> tuple[ElfSymbols, SymArrays]:
    elf = ELFFile(fh)
    result = ElfSymbols(path=path)
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_LOAD":
            result.segments.append((seg["p_offset"], seg["p_vaddr"], seg["p_filesz"]))
    for section in elf.iter_sections():
        if isinstance(section, NoteSection):
            for note in section.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    result.build_id = str(note["n_desc"])
        elif section.name == ".gnu_debuglink":
            result.debuglink = _debuglink(section.data().split(b"\0", 1)[0])
    syms, result.has_symtab = _symbols(elf, fh)
    return result, syms


def _finish(result: ElfSymbols, syms: SymArrays) -> ElfSymbols:
    addrs, sizes, offs, strings = syms
    if len(addrs) == 0:
        result.strings = b""
        return result
    order = np.lexsort((sizes, addrs))
    addrs, sizes, offs = addrs[order], sizes[order], offs[order]
    first = np.ones(len(addrs), dtype=bool)
    first[1:] = addrs[1:] != addrs[:-1]
    # Aliases at one address (malloc/__libc_malloc): keep the smallest (size, name), as gdb's
    # sorted tables would; only the few alias groups are looked at in Python.
    for start in np.flatnonzero(first[:-1] & ~first[1:]).tolist():
        stop = start + 1
        while stop < len(addrs) and not first[stop]:
            stop += 1

        def key(i: int) -> tuple[int, bytes]:
            o = int(offs[i])
            return int(sizes[i]), strings[o:strings.find(b"\0", o)]

        best = min(range(start, stop), key=key)
        sizes[start], offs[start] = sizes[best], offs[best]
    addrs, sizes, offs = addrs[first], sizes[first], offs[first]
    nxt = np.empty_like(addrs)
    nxt[:-1] = addrs[1:]
    nxt[-1] = addrs[-1] + np.uint64(1)
    result.addrs = addrs
    result.ends = np.where(sizes != 0, addrs + sizes, nxt)
    result.name_offs = offs.astype(np.uint32) if len(strings) < 1 << 32 else offs
    result.strings = strings
    return result


def debug_candidates(path: str, build_id: str, debuglink: str, root: str = "") -> list[str]:
    """Where separate debug info may live, as gdb and perf look for it."""
    out: list[str] = []
    if build_id and len(build_id) > 2:
        out.append(f"{root}/usr/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug")
    if debuglink:
        d = os.path.dirname(path)
        out += [f"{d}/{debuglink}", f"{d}/.debug/{debuglink}", f"{root}/usr/lib/debug{d}/{debuglink}"]
    return out


def load_elf(path: str, root: str = "") -> ElfSymbols:
    """Symbols of `path`, merged with its separate debug file when the image lacks `.symtab`."""
    result, syms = _read_elf(path)
    if not result.has_symtab:
        display = path[len(root):] if root and path.startswith(root) else path
        for cand in debug_candidates(display, result.build_id, result.debuglink, root):
            if cand == path or not Path(cand).is_file():
                continue
            try:
                _, extra = _read_elf(cand)
            except ElfReadError:
                continue
            syms = _concat([syms, extra])
            result.has_symtab = True
            break
    return _finish(result, syms)


def named_symbols(path: str, names: set[str]) -> tuple[dict[str, tuple[int, int]], list[tuple[int, int, int]]]:
    """({name: (ELF vaddr, size)} of the wanted symbols of any type, PT_LOAD segments).

    For data symbols (e.g. CPython's `_PyRuntime`), which `load_elf` leaves out: it keeps
    functions only. Looks at `.dynsym` and `.symtab`; 64-bit little-endian files only."""
    found: dict[str, tuple[int, int]] = {}
    wanted = {n.encode() for n in names}
    try:
        with open(path, "rb") as fh:
            head = _read_elf64(fh, path)
            if head is None:
                raise ElfReadError(f"{path}: not a 64-bit little-endian ELF file")
            segments = head[0].segments
            fh.seek(0)
            ident = fh.read(64)
            shoff = struct.unpack_from("<Q", ident, 40)[0]
            shentsize, shnum = struct.unpack_from("<HH", ident, 58)
            if not shoff or shentsize != 64 or shnum == 0:
                return found, segments
            fh.seek(shoff)
            shdrs = np.frombuffer(fh.read(shnum * 64), dtype=_SHDR64)
            for sh in shdrs:
                if int(sh["type"]) not in (_SHT_SYMTAB, _SHT_DYNSYM) or int(sh["entsize"]) != 24:
                    continue
                link = int(sh["link"])
                if link >= len(shdrs):
                    continue
                fh.seek(int(sh["offset"]))
                table = fh.read(int(sh["size"]))
                fh.seek(int(shdrs[link]["offset"]))
                strings = fh.read(int(shdrs[link]["size"])) + b"\0"
                syms = np.frombuffer(table[: len(table) // 24 * 24], dtype=_SYM64)
                defined = (syms["value"] != 0) & (syms["shndx"] != 0)
                for name in wanted:
                    # The name's string-table offsets (a search in C), then the symbols naming them.
                    offs, at = [], strings.find(b"\0" + name + b"\0")
                    while at >= 0:
                        offs.append(at + 1)
                        at = strings.find(b"\0" + name + b"\0", at + 1)
                    hits = np.flatnonzero(defined & np.isin(syms["name"], offs)) if offs else []
                    if len(hits) and name.decode() not in found:
                        i = int(hits[0])
                        found[name.decode()] = (int(syms["value"][i]), int(syms["size"][i]))
    except (OSError, ValueError, struct.error, IndexError) as exc:
        raise ElfReadError(f"{path}: {exc}") from exc
    return found, segments
