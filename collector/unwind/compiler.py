"""Compile an ELF file's CFI into the BPF walker's unwind table (sorted `UNWIND_ROW`s).

FDEs of `.eh_frame` and `.debug_frame` are laid end to end by start pc; where one ends and the
next does not start right there, an END row (HP_ROW_END_GAP) says no FDE covers that pc, and one
closes the table. Overlapping FDEs keep the first (`.eh_frame` before `.debug_frame` at equal
starts) and count the other. Adjacent rows with the same rules merge: ~40 % fewer rows in libc.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from collector.bpf_abi import UNWIND_ROW
from collector.unwind.cfa_program import CFA_END, END_GAP, RBP_SAME, CieStates, Row, fde_rows
from collector.unwind.cfi_records import Fde, iter_fdes
from collector.unwind.elf_image import (
    CfiSection,
    ElfImage,
    FileUnreadable,
    UnwindCompileError,
    offset_to_vaddr,
    read_image,
)

# Bumped whenever the rows for the same input could differ: cached tables of another version
# are recompiled.
FORMAT_VERSION = 1
MAX_ROWS = 4_000_000  # one table's bound (48 MB); libpython has ~64k rows, libc ~28k, libLLVM ~950k
CHUNK_ROWS = 32768

__all__ = ["FORMAT_VERSION", "UnwindCompileError", "UnwindTable", "compile_bytes", "compile_file", "compile_sections"]


@dataclass(slots=True)
class UnwindTable:
    """One file's rows with what the compiler could not express, counted by reason."""

    rows: np.ndarray  # UNWIND_ROW, strictly increasing pc
    counts: dict[str, int] = field(default_factory=dict)
    build_id: str = ""
    segments: list[tuple[int, int, int]] = field(default_factory=list)  # PT_LOAD (offset, vaddr, filesz)

    def lookup(self, pc: int) -> np.void | None:
        """The row covering ELF vaddr `pc`, or None before the first row."""
        i = int(np.searchsorted(self.rows["pc"], pc, side="right")) - 1
        return self.rows[i] if i >= 0 and 0 <= pc < 1 << 32 else None

    def to_vaddr(self, file_offset: int) -> int | None:
        """ELF vaddr of a file offset (how a mapping's bias is found)."""
        return offset_to_vaddr(self.segments, file_offset)


def compile_sections(sections: list[CfiSection], counts: Counter[str] | None = None) -> np.ndarray:
    """Rows of the given CFI sections (pure: bytes in, rows out); reasons go into `counts`."""
    counts = Counter() if counts is None else counts
    fdes: list[tuple[int, int, Fde]] = []
    for prio, sec in enumerate(sections):
        for fde in iter_fdes(sec.data, sec.vaddr, sec.is_eh, counts):
            fdes.append((fde.pc_begin, prio, fde))
    fdes.sort(key=lambda t: (t[0], t[1]))
    counts["fdes"] += len(fdes)
    out: list[Row] = []
    chunks: list[np.ndarray] = []  # rows as numpy every CHUNK_ROWS: a tuple per row costs ~100 B
    total = 0
    cie_states = CieStates()
    covered = -1
    for pc_begin, _, fde in fdes:
        if pc_begin < covered:
            counts["fde_overlap"] += 1
            continue
        if covered >= 0 and pc_begin != covered:
            out.append((covered, END_GAP, 0, CFA_END, RBP_SAME))
        rows = fde_rows(fde, cie_states, counts)
        if total + len(out) + len(rows) >= MAX_ROWS:
            counts["rows_over_limit"] += len(rows)
            break
        out.extend(rows)
        covered = fde.pc_end
        if len(out) >= CHUNK_ROWS:
            chunks.append(merge_rows(np.array(out, dtype=UNWIND_ROW)))
            total += len(chunks[-1])
            out = []
    if covered >= 0:
        out.append((covered, END_GAP, 0, CFA_END, RBP_SAME))
    if out:
        chunks.append(np.array(out, dtype=UNWIND_ROW))
    del fdes, out  # before the last copies: this is the compile's peak (libLLVM: 95k FDEs)
    rows = np.concatenate(chunks) if chunks else np.zeros(0, dtype=UNWIND_ROW)
    chunks.clear()
    return merge_rows(rows)


def merge_rows(rows: np.ndarray) -> np.ndarray:
    """Drop each row whose rules equal its predecessor's (it only restates them)."""
    if len(rows) < 2:
        return rows
    rules = rows[["cfa_off", "rbp_off", "cfa_rule", "rbp_rule"]]
    keep = np.ones(len(rows), dtype=bool)
    keep[1:] = rules[1:] != rules[:-1]
    return rows[keep]


def compile_image(image: ElfImage) -> UnwindTable:
    counts: Counter[str] = Counter(image.notes)
    rows = compile_sections(image.sections, counts)
    if not image.sections:
        counts["no_cfi"] += 1
    return UnwindTable(rows, {k: v for k, v in counts.items() if v}, image.build_id, list(image.segments))


def compile_bytes(blob: bytes) -> UnwindTable:
    """The unwind table of an ELF image held in memory (the vDSO)."""
    return compile_image(read_image(io.BytesIO(blob)))


def compile_file(path: str) -> UnwindTable:
    """The unwind table of the ELF file at `path` (raises UnwindCompileError when unreadable)."""
    try:
        with open(path, "rb") as fh:
            image = read_image(fh)
    except OSError as exc:
        raise FileUnreadable(f"{path}: {exc.strerror or exc}") from exc
    except UnwindCompileError as exc:
        raise UnwindCompileError(f"{path}: {exc}") from exc
    return compile_image(image)
