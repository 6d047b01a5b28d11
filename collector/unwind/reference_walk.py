"""A reference walk over the tables, in Python: what the BPF unwinder computes, frame by frame.

It reads the same `proc_maps` entries and `unwind_rows` the BPF side reads, so tests can walk a
real process's stack (its memory through /proc/PID/mem) with the manager's own output and compare
the frames with gdb's. Rules (bpf/hp_unwind.h): after the first frame the row is looked up at
pc - 1, because a return address may be the first byte after a call that ends its function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from collector.bpf_abi import DEFINES

_CFA_END, _CFA_RSP, _CFA_RBP = DEFINES["HP_CFA_END"], DEFINES["HP_CFA_RSP"], DEFINES["HP_CFA_RBP"]
_PLT10, _PLT11 = DEFINES["HP_CFA_PLT10"], DEFINES["HP_CFA_PLT11"]
_RBP_SAME, _RBP_CFA = DEFINES["HP_RBP_SAME"], DEFINES["HP_RBP_CFA"]
_MAP_FP, _MAP_PENDING = DEFINES["HP_MAP_FP"], DEFINES["HP_MAP_PENDING"]
_END_OUTERMOST = DEFINES["HP_ROW_END_OUTERMOST"]
END_OK, END_NOT_COVERED, END_UNSUPPORTED = DEFINES["HP_END_OK"], DEFINES["HP_END_NOT_COVERED"], DEFINES["HP_END_UNSUPPORTED"]
END_READ_FAULT, END_DEPTH, END_PENDING = DEFINES["HP_END_READ_FAULT"], DEFINES["HP_END_DEPTH"], DEFINES["HP_END_PENDING"]
END_BAD_FRAME = DEFINES["HP_END_BAD_FRAME"]
_U64 = (1 << 64) - 1


def walk(pc: int, sp: int, bp: int, mappings: np.ndarray, rows: np.ndarray, read_u64: Callable[[int], int | None],
         max_depth: int = DEFINES.get("HP_MAX_DEPTH", 127)) -> tuple[list[int], int]:
    """Frames (pcs, leaf first) and the HP_END_* reason the walk ended."""
    starts = mappings["start"]
    pcs: list[int] = []
    for depth in range(max_depth):
        pcs.append(pc)
        i = int(np.searchsorted(starts, np.uint64(pc), side="right")) - 1
        if i < 0 or pc >= int(mappings["end"][i]):
            return pcs, END_NOT_COVERED
        m = mappings[i]
        lookup = pc - (1 if depth else 0)
        if int(m["table_count"]) == 0:
            if int(m["table_first"]) == _MAP_PENDING:
                return pcs, END_PENDING
            if int(m["table_first"]) != _MAP_FP:
                return pcs, END_NOT_COVERED
            ra, saved_bp = read_u64(bp + 8), read_u64(bp)  # the frame-pointer step
            if ra is None or saved_bp is None:
                return pcs, END_READ_FAULT
            cfa = bp + 16
        else:
            first, count = int(m["table_first"]), int(m["table_count"])
            vaddr = (lookup - int(m["bias"])) & _U64
            table = rows[first:first + count]
            j = int(np.searchsorted(table["pc"], np.uint32(vaddr), side="right")) - 1 if vaddr < 1 << 32 else -1
            if j < 0:
                return pcs, END_NOT_COVERED
            row = table[j]
            rule, off = int(row["cfa_rule"]), int(row["cfa_off"])
            if rule == _CFA_END:
                return pcs, END_OK if off == _END_OUTERMOST else END_NOT_COVERED
            if rule == _CFA_RSP:
                cfa = sp + off
            elif rule == _CFA_RBP:
                cfa = bp + off
            elif rule in (_PLT10, _PLT11):
                cfa = sp + 8 + (8 if (pc & 15) >= (10 if rule == _PLT10 else 11) else 0)
            else:
                return pcs, END_UNSUPPORTED
            ra = read_u64(cfa - 8)
            if ra is None:
                return pcs, END_READ_FAULT
            saved_bp = bp
            if int(row["rbp_rule"]) == _RBP_CFA:
                saved_bp = read_u64(cfa + int(row["rbp_off"]))
                if saved_bp is None:
                    return pcs, END_READ_FAULT
            elif int(row["rbp_rule"]) != _RBP_SAME:
                saved_bp = 0  # unknown from here on: a later rbp-based CFA fails as a bad frame
        if ra == 0 or cfa <= sp:
            return pcs, END_BAD_FRAME
        pc, sp, bp = ra, cfa, saved_bp
    return pcs, END_DEPTH


def proc_mem_reader(pid: int) -> Callable[[int], int | None]:
    """read_u64 over /proc/PID/mem (the caller keeps the process stopped or blocked)."""
    fh = open(f"/proc/{pid}/mem", "rb", buffering=0)  # noqa: SIM115 - lives as long as the reader

    def read_u64(addr: int) -> int | None:
        if not 0 <= addr <= _U64 - 8:
            return None
        try:
            fh.seek(addr)
            data = fh.read(8)
        except (OSError, OverflowError, ValueError):
            return None
        return int.from_bytes(data, "little") if len(data) == 8 else None

    return read_u64
