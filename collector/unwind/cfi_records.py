"""CIE and FDE records of an `.eh_frame` or `.debug_frame` section (DWARF call frame information).

A focused decoder: it reads the record framing, the augmentation data and the pointer encodings,
and hands each FDE's instruction bytes (with its CIE's) to `cfa_program`. pyelftools decodes the
same records but took ~3 s for libpython here and stops on opcodes it does not know; this reads
only what the unwinder needs and never trusts a length: every read is checked against the section,
so a truncated or corrupt section ends in a counted reason, not an exception from deep inside.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_U64 = struct.Struct("<Q").unpack_from
_S16 = struct.Struct("<h").unpack_from
_S32 = struct.Struct("<i").unpack_from
_S64 = struct.Struct("<q").unpack_from

DW_EH_PE_omit = 0xFF
_CIE_CACHE_MAX = 4096  # distinct CIEs kept decoded; real files have a handful


class CfiFormatError(Exception):
    """A record does not decode (truncated, bad length, unknown encoding)."""


def uleb(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Unsigned LEB128 at `pos`; bounded by `end` and by 10 bytes (a u64)."""
    if pos < end and buf[pos] < 0x80:  # one byte: nearly every operand in real CFI
        return buf[pos], pos + 1
    result = shift = 0
    stop = min(end, pos + 10)
    while pos < stop:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
    raise CfiFormatError("truncated or overlong ULEB128")


def sleb(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Signed LEB128 at `pos`; bounded like `uleb`."""
    result = shift = 0
    stop = min(end, pos + 10)
    while pos < stop:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos
    raise CfiFormatError("truncated or overlong SLEB128")


def read_encoded(buf: bytes, pos: int, end: int, enc: int, field_vaddr: int) -> tuple[int, int]:
    """A pointer in DW_EH_PE encoding `enc` at `pos`; `field_vaddr` is the field's own address
    (for pc-relative values). Only absolute and pc-relative applications occur in x86_64 CFI;
    the others (textrel, datarel, funcrel) need bases this reader does not have."""
    fmt, app = enc & 0x0F, enc & 0x70
    if enc & 0x80:
        raise CfiFormatError("indirect pointer encoding")
    if fmt == 0x00 or fmt == 0x04:
        size, val = 8, (_U64(buf, pos)[0] if pos + 8 <= end else None)
    elif fmt == 0x03:
        size, val = 4, (_U32(buf, pos)[0] if pos + 4 <= end else None)
    elif fmt == 0x0B:
        size, val = 4, (_S32(buf, pos)[0] if pos + 4 <= end else None)
    elif fmt == 0x02:
        size, val = 2, (_U16(buf, pos)[0] if pos + 2 <= end else None)
    elif fmt == 0x0A:
        size, val = 2, (_S16(buf, pos)[0] if pos + 2 <= end else None)
    elif fmt == 0x0C:
        size, val = 8, (_S64(buf, pos)[0] if pos + 8 <= end else None)
    elif fmt == 0x01:
        val, npos = uleb(buf, pos, end)
        size = npos - pos
    elif fmt == 0x09:
        val, npos = sleb(buf, pos, end)
        size = npos - pos
    else:
        raise CfiFormatError(f"pointer encoding {enc:#x}")
    if val is None:
        raise CfiFormatError("truncated pointer")
    if app == 0x10:
        val += field_vaddr
    elif app not in (0x00, 0x50):
        raise CfiFormatError(f"pointer application {app:#x}")
    return val & 0xFFFFFFFFFFFFFFFF, pos + size


@dataclass(frozen=True, slots=True)
class Cie:
    code_align: int
    data_align: int
    ra_reg: int
    fde_encoding: int
    has_z: bool
    signal_frame: bool
    initial: bytes  # initial instructions


@dataclass(frozen=True, slots=True)
class Fde:
    """An FDE whose instructions are section[start:end] (offsets into the one shared buffer:
    libLLVM has 95k FDEs, and a copy of each one's bytes doubled the compile's peak memory)."""

    pc_begin: int
    pc_end: int
    cie: Cie
    section: bytes
    start: int
    end: int


def _parse_cie(buf: bytes, pos: int, end: int, is_eh: bool, sec_vaddr: int) -> Cie:
    """The CIE whose body (after the CIE id) starts at `pos` and ends at `end`."""
    if pos >= end:
        raise CfiFormatError("empty CIE")
    version = buf[pos]
    pos += 1
    if version not in (1, 3, 4):
        raise CfiFormatError(f"CIE version {version}")
    nul = buf.find(b"\0", pos, end)
    if nul < 0:
        raise CfiFormatError("unterminated augmentation")
    aug = buf[pos:nul]
    pos = nul + 1
    if version == 4:
        if pos + 2 > end:
            raise CfiFormatError("truncated CIE")
        if buf[pos] != 8 or buf[pos + 1] != 0:
            raise CfiFormatError("address size is not 8 or segment size is not 0")
        pos += 2
    code_align, pos = uleb(buf, pos, end)
    data_align, pos = sleb(buf, pos, end)
    if version == 1:
        if pos >= end:
            raise CfiFormatError("truncated CIE")
        ra_reg = buf[pos]
        pos += 1
    else:
        ra_reg, pos = uleb(buf, pos, end)
    fde_enc = 0x00  # absolute, address-sized
    signal = False
    has_z = aug[:1] == b"z"
    if has_z:
        aug_len, pos = uleb(buf, pos, end)
        aug_end = pos + aug_len
        if aug_end > end:
            raise CfiFormatError("augmentation data past the CIE")
        for ch in aug[1:]:
            if ch == 0x52:  # 'R'
                if pos >= aug_end:
                    raise CfiFormatError("truncated augmentation data")
                fde_enc = buf[pos]
                pos += 1
            elif ch == 0x4C:  # 'L': the LSDA encoding; the pointer itself is in each FDE
                pos += 1
            elif ch == 0x50:  # 'P'
                if pos >= aug_end:
                    raise CfiFormatError("truncated augmentation data")
                penc = buf[pos] & 0x7F  # skipped, never followed: indirection does not matter
                _, pos = read_encoded(buf, pos + 1, aug_end, penc, sec_vaddr + pos + 1)
            elif ch == 0x53:  # 'S'
                signal = True
            else:  # 'B', 'G' and future letters carry no data we need; 'z' says where it ends
                continue
        pos = aug_end
    elif aug not in (b"",):
        raise CfiFormatError(f"augmentation {aug!r} without 'z'")
    if code_align == 0:
        raise CfiFormatError("code alignment 0")
    if not is_eh and fde_enc != 0:
        raise CfiFormatError("pointer encoding in .debug_frame")
    return Cie(code_align, data_align, ra_reg, fde_enc, has_z, signal, bytes(buf[pos:end]))


def iter_fdes(buf: bytes, sec_vaddr: int, is_eh: bool, counts: Counter[str]) -> Iterator[Fde]:
    """FDEs of one section in file order. Bad records are counted in `counts` and skipped when
    their length is sound; a bad length ends the walk (nothing after it can be framed)."""
    cies: dict[int, Cie | None] = {}
    pos, size = 0, len(buf)
    while pos + 4 <= size:
        length = _U32(buf, pos)[0]
        pos += 4
        if length == 0:
            if is_eh:  # the terminator; a linker may still pad after it
                break
            counts["cfi_empty_record"] += 1
            continue
        if length == 0xFFFFFFFF:
            if pos + 8 > size:
                counts["cfi_truncated"] += 1
                break
            length = _U64(buf, pos)[0]
            pos += 8
            id_size = 8
        else:
            id_size = 4
        end = pos + length
        if end > size or length < id_size:
            counts["cfi_truncated"] += 1
            break
        id_pos = pos
        cie_id = int.from_bytes(buf[pos:pos + id_size], "little")
        pos += id_size
        is_cie = cie_id == 0 if is_eh else cie_id == (1 << (8 * id_size)) - 1
        if is_cie:
            pos = end
            continue
        cie_off = id_pos - cie_id if is_eh else cie_id
        cie = cies.get(cie_off, False)
        if cie is False:
            cie = None
            if 0 <= cie_off < size and len(cies) < _CIE_CACHE_MAX:
                try:
                    cie = _cie_at(buf, cie_off, is_eh, sec_vaddr)
                except CfiFormatError:
                    counts["cfi_bad_cie"] += 1
                cies[cie_off] = cie
        if cie is None:
            counts["cfi_fde_without_cie"] += 1
            pos = end
            continue
        try:
            enc = cie.fde_encoding
            pc_begin, pos = read_encoded(buf, pos, end, enc, sec_vaddr + pos)
            pc_range, pos = read_encoded(buf, pos, end, enc & 0x0F, 0)
            if cie.has_z:
                aug_len, pos = uleb(buf, pos, end)
                pos += aug_len
                if pos > end:
                    raise CfiFormatError("augmentation data past the FDE")
        except CfiFormatError:
            counts["cfi_bad_fde"] += 1
            pos = end
            continue
        pos_end = pc_begin + pc_range
        if pc_range == 0 or pc_begin == 0:  # discarded by the linker (gc'd section, COMDAT)
            counts["cfi_empty_fde"] += 1
        elif pos_end > 0xFFFFFFFF:
            counts["cfi_pc_beyond_4g"] += 1
        else:
            yield Fde(pc_begin, pos_end, cie, buf, pos, end)
        pos = end


def _cie_at(buf: bytes, off: int, is_eh: bool, sec_vaddr: int) -> Cie:
    size = len(buf)
    if off + 4 > size:
        raise CfiFormatError("CIE pointer past the section")
    length = _U32(buf, off)[0]
    pos = off + 4
    id_size = 4
    if length == 0xFFFFFFFF:
        if pos + 8 > size:
            raise CfiFormatError("truncated CIE")
        length = _U64(buf, pos)[0]
        pos += 8
        id_size = 8
    end = pos + length
    if end > size or length < id_size + 1:
        raise CfiFormatError("truncated CIE")
    cie_id = int.from_bytes(buf[pos:pos + id_size], "little")
    if cie_id != (0 if is_eh else (1 << (8 * id_size)) - 1):
        raise CfiFormatError("FDE points at a record that is not a CIE")
    return _parse_cie(buf, pos + id_size, end, is_eh, sec_vaddr)
