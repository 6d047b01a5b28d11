"""ELF symbol tables via pyelftools: `.symtab` + `.dynsym`, load segments, GNU build id,
separate debug files (`/usr/lib/debug/.build-id/xx/rest.debug`, `.gnu_debuglink`)."""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection, SymbolTableSection


class ElfReadError(Exception):
    """The file is missing, unreadable or not an ELF file."""


@dataclass(slots=True)
class ElfSymbols:
    """Function symbols of one ELF image, addressed by ELF virtual address."""

    path: str
    build_id: str = ""
    addrs: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    # PT_LOAD segments: (file offset, virtual address, file size)
    segments: list[tuple[int, int, int]] = field(default_factory=list)
    debuglink: str = ""
    has_symtab: bool = False

    def weight(self) -> int:
        return len(self.addrs) + 1

    def to_vaddr(self, file_offset: int) -> int | None:
        """ELF virtual address of a file offset (how PIE and shared-object load bias is undone)."""
        for off, vaddr, size in self.segments:
            if off <= file_offset < off + max(size, 1):
                return file_offset - off + vaddr
        return None

    def resolve(self, vaddr: int) -> str | None:
        i = bisect.bisect_right(self.addrs, vaddr) - 1
        if i < 0:
            return None
        if vaddr < self.ends[i]:
            return self.names[i]
        return None


_SYM64 = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"),
                   ("value", "<u8"), ("size", "<u8")])
_FUNC_TYPES = (2, 10)  # STT_FUNC, STT_GNU_IFUNC


def _symbols(elf: ELFFile, fh: BinaryIO) -> tuple[list[tuple[int, int, str]], bool]:
    """Function symbols, parsed with numpy: pyelftools' per-symbol objects take ~0.1 ms each."""
    out: list[tuple[int, int, str]] = []
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
        strings = fh.read(strtab["sh_size"])
        syms = np.frombuffer(raw[: len(raw) // 24 * 24], dtype=_SYM64)
        keep = np.isin(syms["info"] & 0xF, _FUNC_TYPES) & (syms["value"] != 0) & (syms["shndx"] != 0)
        for name_off, value, size in zip(syms["name"][keep].tolist(), syms["value"][keep].tolist(),
                                         syms["size"][keep].tolist(), strict=True):
            end = strings.find(b"\0", name_off)
            out.append((value, size, strings[name_off:end if end >= 0 else None].decode("utf-8", "replace")))
    return out, has_symtab


def _symbols_slow(elf: ELFFile) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    for section in elf.iter_sections():
        if not isinstance(section, SymbolTableSection):
            continue
        for sym in section.iter_symbols():
            if sym["st_info"]["type"] not in ("STT_FUNC", "STT_GNU_IFUNC") or sym["st_value"] == 0:
                continue
            if sym["st_shndx"] == "SHN_UNDEF":
                continue
            out.append((sym["st_value"], sym["st_size"], sym.name))
    return out


def _read_elf(path: str) -> tuple[ElfSymbols, list[tuple[int, int, str]]]:
    try:
        with open(path, "rb") as fh:
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
                    data = section.data()
                    result.debuglink = data.split(b"\0", 1)[0].decode("utf-8", "replace")
            syms, result.has_symtab = _symbols(elf, fh)
    except (OSError, ELFError, ValueError, KeyError) as exc:
        raise ElfReadError(f"{path}: {exc}") from exc
    return result, syms


def _finish(result: ElfSymbols, syms: list[tuple[int, int, str]]) -> ElfSymbols:
    syms = sorted(set(syms))
    addrs, ends, names = [], [], []
    for i, (addr, size, name) in enumerate(syms):
        if addrs and addrs[-1] == addr:
            continue  # aliases at one address: keep the first name seen (sorted: stable)
        end = addr + size if size else (syms[i + 1][0] if i + 1 < len(syms) else addr + 1)
        addrs.append(addr)
        ends.append(end)
        names.append(name)
    result.addrs, result.ends, result.names = addrs, ends, names
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
            syms = syms + extra
            result.has_symtab = True
            break
    return _finish(result, syms)
