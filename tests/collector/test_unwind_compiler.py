"""The CFI compiler on hand-made and hostile input: each rule it recognises, and bad bytes that must end
in counted reasons (never an exception from deep inside, a hang or a huge allocation)."""

from __future__ import annotations

import random
import struct
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from collector.unwind import cfa_program as cp
from collector.unwind.compiler import compile_bytes, compile_file, compile_sections
from collector.unwind.elf_image import CfiSection, UnwindCompileError, offset_to_vaddr, read_image

CIE_INIT = bytes([0x0C, 7, 8, 0x90, 1])  # def_cfa rsp+8; ra (r16) at cfa-8
PLT11 = bytes([0x77, 0x08, 0x80, 0x00, 0x3F, 0x1A, 0x3B, 0x2A, 0x33, 0x24, 0x22])


def cie(aug: bytes = b"zR", init: bytes = CIE_INIT) -> bytes:
    body = struct.pack("<I", 0) + bytes([1]) + aug + b"\0" + bytes([1, 0x78, 16])  # caf 1, daf -8, ra 16
    if aug.startswith(b"z"):
        body += bytes([1, 0x03])  # augmentation data: FDE pointers as absolute udata4
    body += init
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<I", len(body)) + body


def fde(cie_at: int, here: int, begin: int, size: int, code: bytes) -> bytes:
    body = struct.pack("<I", here + 4 - cie_at) + struct.pack("<II", begin, size) + bytes([0]) + code
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<I", len(body)) + body


def section(fdes: list[tuple[int, int, bytes]], aug: bytes = b"zR", init: bytes = CIE_INIT) -> CfiSection:
    data = cie(aug, init)
    for begin, size, code in fdes:
        data += fde(0, len(data), begin, size, code)
    return CfiSection(".eh_frame", 0x1000, data + b"\0\0\0\0", True)


def rows_of(sec: CfiSection) -> tuple[list[tuple[int, ...]], Counter]:
    counts: Counter = Counter()
    rows = compile_sections([sec], counts)
    return [tuple(int(r[f]) for f in ("pc", "cfa_rule", "cfa_off", "rbp_rule", "rbp_off")) for r in rows], counts


def test_push_rbp_frame_and_rbp_cfa() -> None:
    # push rbp; mov rbp,rsp; ...; leave: CFA rsp+16 with rbp at cfa-16, then rbp+16.
    code = bytes([0x41, 0x0E, 16, 0x86, 2, 0x43, 0x0D, 6, 0x50, 0x0C, 7, 8])
    rows, counts = rows_of(section([(0x2000, 0x20, code)]))
    assert rows == [
        (0x2000, cp.CFA_RSP, 8, cp.RBP_SAME, 0),
        (0x2001, cp.CFA_RSP, 16, cp.RBP_CFA, -16),
        (0x2004, cp.CFA_RBP, 16, cp.RBP_CFA, -16),
        (0x2014, cp.CFA_RSP, 8, cp.RBP_CFA, -16),
        (0x2020, cp.CFA_END, cp.END_GAP, cp.RBP_SAME, 0),
    ]
    assert not {k for k in counts if k.startswith(("unsupported", "cfi_"))}


def test_gaps_merges_and_outermost() -> None:
    same = bytes([0x41, 0x0E, 8])  # restates rsp+8: merged away
    outer = bytes([0x07, 16])  # DW_CFA_undefined rip: the outermost frame
    rows, _ = rows_of(section([(0x2000, 0x10, same), (0x2010, 0x10, b""), (0x2040, 0x10, outer)]))
    assert rows == [
        (0x2000, cp.CFA_RSP, 8, cp.RBP_SAME, 0),
        (0x2020, cp.CFA_END, cp.END_GAP, cp.RBP_SAME, 0),
        (0x2040, cp.CFA_END, cp.END_OUTERMOST, cp.RBP_SAME, 0),
        (0x2050, cp.CFA_END, cp.END_GAP, cp.RBP_SAME, 0),
    ]


def test_plt_expression_recognised_and_others_counted() -> None:
    plt10 = PLT11[:6] + bytes([0x3A]) + PLT11[7:]
    other = PLT11[:6] + bytes([0x3C]) + PLT11[7:]  # lit12: not a pattern we evaluate
    code = lambda e: bytes([0x0F, len(e)]) + e
    rows, counts = rows_of(section([(0x2000, 0x10, code(PLT11)), (0x2010, 0x10, code(plt10)),
                                    (0x2020, 0x10, code(other))]))
    assert [r[1] for r in rows] == [cp.CFA_PLT11, cp.CFA_PLT10, cp.CFA_UNSUPPORTED, cp.CFA_END]
    assert counts["unsupported_cfa_expression"] == 1


def test_unsupported_rules_are_counted() -> None:
    cfa_r12 = bytes([0x0C, 12, 8])
    ra_elsewhere = bytes([0x80 | 16, 2])  # ra at cfa-16
    rbp_in_reg = bytes([0x09, 6, 3])
    rows, counts = rows_of(section([(0x2000, 0x10, cfa_r12), (0x2010, 0x10, rbp_in_reg),
                                    (0x2020, 0x10, ra_elsewhere)]))
    assert rows == [
        (0x2000, cp.CFA_UNSUPPORTED, 0, cp.RBP_UNSUPPORTED, 0),
        (0x2010, cp.CFA_RSP, 8, cp.RBP_UNSUPPORTED, 0),
        (0x2020, cp.CFA_UNSUPPORTED, 0, cp.RBP_UNSUPPORTED, 0),
        (0x2030, cp.CFA_END, cp.END_GAP, cp.RBP_SAME, 0),
    ]
    assert counts["unsupported_cfa_register"] == 1
    assert counts["unsupported_return_address"] == 1
    assert counts["unsupported_rbp_rule"] == 1
    _, counts = rows_of(section([(0x2000, 0x10, b"")], aug=b"zRS"))
    assert counts["unsupported_signal_frame"] == 1


def test_remember_restore_state_and_bad_opcode() -> None:
    code = bytes([0x41, 0x0A, 0x0E, 32, 0x41, 0x0B, 0x41, 0x3F])  # remember, 32, restore, bad opcode
    rows, counts = rows_of(section([(0x2000, 0x10, code)]))
    assert rows == [
        (0x2000, cp.CFA_RSP, 8, cp.RBP_SAME, 0),
        (0x2001, cp.CFA_RSP, 32, cp.RBP_SAME, 0),
        (0x2002, cp.CFA_RSP, 8, cp.RBP_SAME, 0),
        (0x2003, cp.CFA_UNSUPPORTED, 0, cp.RBP_UNSUPPORTED, 0),
        (0x2010, cp.CFA_END, cp.END_GAP, cp.RBP_SAME, 0),
    ]
    assert counts["cfi_bad_instructions"] == 1


def _check_sane(rows: np.ndarray) -> None:
    assert np.all(np.diff(rows["pc"].astype(np.int64)) > 0)


@pytest.fixture(scope="module")
def gzip_eh() -> CfiSection:
    with open("/usr/bin/gzip", "rb") as fh:
        return next(s for s in read_image(fh).sections if s.is_eh)


def test_truncated_sections_give_partial_tables(gzip_eh: CfiSection) -> None:
    full = compile_sections([gzip_eh])
    for cut in (3, 17, 100, len(gzip_eh.data) // 2, len(gzip_eh.data) - 5):
        counts: Counter = Counter()
        rows = compile_sections([CfiSection(".eh_frame", gzip_eh.vaddr, gzip_eh.data[:cut], True)], counts)
        _check_sane(rows)
        assert len(rows) <= len(full)
        if cut > 100:
            assert counts["cfi_truncated"] == 1 and len(rows) > 0


def test_huge_lengths_and_random_corruption_end_in_counts(gzip_eh: CfiSection) -> None:
    data = bytearray(gzip_eh.data)
    for value in (0xFFFFFFF0, 0xFFFFFFFF):
        bad = bytearray(data)
        bad[0x18:0x1C] = struct.pack("<I", value)  # the first FDE's length
        counts: Counter = Counter()
        rows = compile_sections([CfiSection(".eh_frame", gzip_eh.vaddr, bytes(bad), True)], counts)
        _check_sane(rows)
        assert counts["cfi_truncated"] == 1
    rng = random.Random(14)
    started = time.monotonic()
    for _ in range(200):
        bad = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            bad[rng.randrange(len(bad))] = rng.randrange(256)
        _check_sane(compile_sections([CfiSection(".eh_frame", gzip_eh.vaddr, bytes(bad), True)]))
    assert time.monotonic() - started < 60


def test_not_elf_and_truncated_elf_raise_the_own_error(tmp_path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an elf at all" * 10)
    with pytest.raises(UnwindCompileError):
        compile_file(str(junk))
    with pytest.raises(UnwindCompileError):
        compile_file(str(tmp_path / "missing"))
    cut = tmp_path / "cut"
    with open("/usr/bin/gzip", "rb") as fh:
        cut.write_bytes(fh.read(4096))
    try:
        table = compile_file(str(cut))
    except UnwindCompileError:
        return
    _check_sane(table.rows)


def test_corrupt_elf_headers_raise_only_the_own_error() -> None:
    """Random bytes in the ELF, program and section headers: a table or UnwindCompileError, never
    another exception (pyelftools alone let OverflowError through) and never slow."""
    data = Path("/usr/bin/gzip").read_bytes()
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    rng = random.Random(7)
    started = time.monotonic()
    for _ in range(300):
        bad = bytearray(data)
        lo, hi = rng.choice([(0, 64), (phoff, phoff + 56 * 13), (shoff, len(data))])
        for _ in range(rng.randint(1, 8)):
            bad[rng.randrange(lo, hi)] = rng.randrange(256)
        try:
            _check_sane(compile_bytes(bytes(bad)).rows)
        except UnwindCompileError:
            pass
    assert time.monotonic() - started < 60


def test_eh_frame_found_without_section_headers(tmp_path) -> None:
    """A binary whose section headers are gone (sstrip): .eh_frame via PT_GNU_EH_FRAME."""
    data = bytearray(Path("/usr/bin/gzip").read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)  # e_shoff
    struct.pack_into("<HHH", data, 0x3A, 0, 0, 0)  # e_shentsize, e_shnum, e_shstrndx
    stripped = tmp_path / "gzip-sstripped"
    stripped.write_bytes(bytes(data))
    table, full = compile_file(str(stripped)), compile_file("/usr/bin/gzip")
    assert np.array_equal(table.rows, full.rows)
    assert table.build_id == full.build_id and table.counts["eh_frame_from_program_headers"] == 1


def test_offset_to_vaddr_with_text_starting_mid_page() -> None:
    # lld's layout: read-only [0, 0x1a2c0), text from file offset 0x1a2c0 at vaddr 0x1b2c0; the
    # kernel maps text from file page 0x1a000 at vaddr page 0x1b000.
    segs = [(0, 0, 0x1A2C0), (0x1A2C0, 0x1B2C0, 0x5000), (0x1F2C0, 0x212C0, 0x100)]
    assert offset_to_vaddr(segs, 0x1A000) == 0x1B000
    assert offset_to_vaddr(segs, 0) == 0
    assert offset_to_vaddr(segs, 0x1C000) == 0x1D000
    assert offset_to_vaddr(segs, 0x30000) is None
    # gcc/ld's layout: page-aligned segments, one holds each offset.
    assert offset_to_vaddr([(0, 0, 0x2000), (0x2000, 0x2000, 0x9000)], 0x2000) == 0x2000
