"""What the table compiler needs from an ELF file: its CFI sections, load segments and build ID.

pyelftools frames the file (headers, section table, notes); every size it reports is checked
against the file before anything is read, so a corrupt header cannot make us read gigabytes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from collector.unwind.cfi_records import CfiFormatError, read_encoded

MAX_CFI_BYTES = 256 << 20  # a section larger than this is refused (libpython's .eh_frame: 0.3 MiB)
# What pyelftools raises on a corrupt file besides its own ELFError (found by fuzzing the headers of
# /usr/bin/gzip: e.g. a section offset past 2**63 makes seek() overflow).
_CORRUPT = (ELFError, struct.error, ValueError, KeyError, IndexError, AttributeError, OverflowError, TypeError,
            EOFError)


class UnwindCompileError(Exception):
    """The file cannot be read as a 64-bit x86_64 ELF image (missing, unreadable, corrupt)."""


class FileUnreadable(UnwindCompileError):
    """The file could not be opened or read (gone, no permission): another path may still work."""


@dataclass(frozen=True, slots=True)
class CfiSection:
    name: str
    vaddr: int  # sh_addr: the base of pc-relative pointers in .eh_frame
    data: bytes
    is_eh: bool


@dataclass(slots=True)
class ElfImage:
    build_id: str = ""
    segments: list[tuple[int, int, int]] = field(default_factory=list)  # PT_LOAD (offset, vaddr, filesz)
    sections: list[CfiSection] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # counted oddities, e.g. a section cut short


def offset_to_vaddr(segments: list[tuple[int, int, int]], file_offset: int) -> int | None:
    """ELF vaddr of a mapping's start offset, through the PT_LOAD segment mapped there (how a
    mapping's bias is found). Offsets are page-aligned and a segment's p_offset need not be (lld
    starts text mid-page, in the page that ends the read-only segment before it): of the segments
    whose pages hold the offset, the one that starts last is the one the kernel mapped from it."""
    best = None
    for off, vaddr, size in segments:
        if off & ~0xFFF <= file_offset < off + max(size, 1) and (best is None or off > best[0]):
            best = (off, vaddr)
    return None if best is None else file_offset - best[0] + best[1]


def _read_exact(fh: BinaryIO, offset: int, size: int, file_size: int) -> tuple[bytes, bool]:
    """Up to `size` bytes at `offset`, never past the file; True when that was all of them."""
    if offset >= file_size or size <= 0:
        return b"", size <= 0
    avail = min(size, file_size - offset)
    fh.seek(offset)
    return fh.read(avail), avail == size


def read_image(fh: BinaryIO) -> ElfImage:
    """Sections `.eh_frame` / `.debug_frame`, PT_LOAD segments and the GNU build ID of an open file
    (or of bytes in a BytesIO: the vDSO)."""
    file_size = fh.seek(0, os.SEEK_END)
    fh.seek(0)
    try:
        elf = ELFFile(fh)
        if elf.elfclass != 64 or not elf.little_endian or elf["e_machine"] != "EM_X86_64":
            raise UnwindCompileError("not a 64-bit little-endian x86_64 ELF file")
        image = ElfImage()
        eh_hdr = None
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_LOAD":
                image.segments.append((seg["p_offset"], seg["p_vaddr"], seg["p_filesz"]))
            elif seg["p_type"] == "PT_GNU_EH_FRAME":
                eh_hdr = (seg["p_offset"], seg["p_vaddr"])
            elif seg["p_type"] == "PT_NOTE" and not image.build_id:
                image.build_id = _build_id(fh, seg["p_offset"], seg["p_filesz"], file_size)
        for sec in elf.iter_sections():
            name, sh_type = sec.name, sec["sh_type"]
            if sh_type == "SHT_NOTE" and not image.build_id:
                image.build_id = _build_id(fh, sec["sh_offset"], sec["sh_size"], file_size)
            if name not in (".eh_frame", ".debug_frame") or sh_type == "SHT_NOBITS":
                continue
            size = sec["sh_size"]
            if size > MAX_CFI_BYTES:
                image.notes.append("cfi_section_too_large")
                continue
            if sec["sh_flags"] & 0x800:  # SHF_COMPRESSED (.debug_frame in some debug files)
                image.notes.append("cfi_section_compressed")
                continue
            data, whole = _read_exact(fh, sec["sh_offset"], size, file_size)
            if not whole:
                image.notes.append("cfi_section_truncated")
            image.sections.append(CfiSection(name, sec["sh_addr"], data, name == ".eh_frame"))
        if eh_hdr is not None and not any(s.is_eh for s in image.sections):
            found = _eh_frame_from_header(fh, eh_hdr, image.segments, file_size)
            if found is not None:
                image.sections.append(found)
                image.notes.append("eh_frame_from_program_headers")
    except _CORRUPT as exc:
        raise UnwindCompileError(f"corrupt ELF file: {exc}") from exc
    return image


def _eh_frame_from_header(fh: BinaryIO, eh_hdr: tuple[int, int], segments: list[tuple[int, int, int]],
                          file_size: int) -> CfiSection | None:
    """.eh_frame found through PT_GNU_EH_FRAME (.eh_frame_hdr's eh_frame_ptr), for files whose
    section headers were stripped: it runs to its terminator, at most to the end of its segment."""
    hdr_off, hdr_vaddr = eh_hdr
    head, _ = _read_exact(fh, hdr_off, 16, file_size)
    if len(head) < 8 or head[0] != 1:
        return None
    try:
        vaddr, _ = read_encoded(head, 4, len(head), head[1], hdr_vaddr + 4)
    except CfiFormatError:
        return None
    for off, seg_vaddr, filesz in segments:
        if seg_vaddr <= vaddr < seg_vaddr + filesz:
            size = min(seg_vaddr + filesz - vaddr, MAX_CFI_BYTES)
            data, _ = _read_exact(fh, off + vaddr - seg_vaddr, size, file_size)
            return CfiSection(".eh_frame", vaddr, data, True)
    return None


def _build_id(fh: BinaryIO, offset: int, size: int, file_size: int) -> str:
    notes, _ = _read_exact(fh, offset, min(size, 1 << 16), file_size)
    off = 0
    while off + 12 <= len(notes):
        namesz, descsz, n_type = struct.unpack_from("<III", notes, off)
        name_at = off + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        if n_type == 3 and notes[name_at:name_at + namesz] == b"GNU\0":  # NT_GNU_BUILD_ID
            return notes[desc_at:desc_at + descsz].hex()
        off = desc_at + (descsz + 3) // 4 * 4
    return ""


def read_build_id(fh: BinaryIO) -> str:
    """The GNU build ID of an open ELF file ("" when it has none), without reading its CFI."""
    file_size = fh.seek(0, os.SEEK_END)
    fh.seek(0)
    try:
        elf = ELFFile(fh)
        for sec in elf.iter_sections():
            if sec["sh_type"] == "SHT_NOTE":
                bid = _build_id(fh, sec["sh_offset"], sec["sh_size"], file_size)
                if bid:
                    return bid
    except _CORRUPT as exc:
        raise UnwindCompileError(f"corrupt ELF file: {exc}") from exc
    return ""
