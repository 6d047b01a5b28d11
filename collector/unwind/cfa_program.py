"""Run one FDE's CFA instructions (after its CIE's) into unwind rows for x86_64.

The DWARF rules are tracked only for what the BPF walker uses: the CFA, rbp (DWARF register 6)
and the return address column; every other register's instructions are decoded and dropped.
Each row is converted to the walker's vocabulary (`bpf/hp_unwind.h`) as it is emitted, and every
row the walker cannot follow is counted under the reason why.
"""

from __future__ import annotations

from collections import Counter

from collector.bpf_abi import DEFINES
from collector.unwind.cfi_records import CfiFormatError, Cie, Fde, read_encoded, sleb, uleb

CFA_END = DEFINES["HP_CFA_END"]
CFA_RSP = DEFINES["HP_CFA_RSP"]
CFA_RBP = DEFINES["HP_CFA_RBP"]
CFA_PLT10 = DEFINES["HP_CFA_PLT10"]
CFA_PLT11 = DEFINES["HP_CFA_PLT11"]
CFA_UNSUPPORTED = DEFINES["HP_CFA_UNSUPPORTED"]
RBP_SAME = DEFINES["HP_RBP_SAME"]
RBP_CFA = DEFINES["HP_RBP_CFA"]
RBP_UNSUPPORTED = DEFINES["HP_RBP_UNSUPPORTED"]
END_GAP = DEFINES["HP_ROW_END_GAP"]
END_OUTERMOST = DEFINES["HP_ROW_END_OUTERMOST"]

REG_RBP, REG_RSP = 6, 7
# The .plt CFA of glibc/binutils x86_64 lazy PLTs: rsp + 8 + ((rip & 15) >= K ? 8 : 0), as
# DW_OP_breg7 8; DW_OP_breg16 0; DW_OP_lit15; DW_OP_and; DW_OP_litK; DW_OP_ge; DW_OP_lit3;
# DW_OP_shl; DW_OP_plus. Recognised byte for byte: anything else is not evaluated.
PLT_EXPRESSIONS = {
    bytes([0x77, 0x08, 0x80, 0x00, 0x3F, 0x1A, 0x3B, 0x2A, 0x33, 0x24, 0x22]): CFA_PLT11,
    bytes([0x77, 0x08, 0x80, 0x00, 0x3F, 0x1A, 0x3A, 0x2A, 0x33, 0x24, 0x22]): CFA_PLT10,
}

# Register rules: (kind, value).
SAME, UNDEF, OFFSET, OTHER = 0, 1, 2, 3
_SAME = (SAME, 0)
_UNDEF = (UNDEF, 0)
_OTHER = (OTHER, 0)
REMEMBER_MAX = 64  # DW_CFA_remember_state depth; gcc nests one or two

Row = tuple[int, int, int, int, int]  # pc, cfa_off, rbp_off, cfa_rule, rbp_rule: UNWIND_ROW's field order


class _State:
    __slots__ = ("cfa_expr", "cfa_off", "cfa_reg", "ra", "rbp")

    def __init__(self) -> None:
        self.cfa_reg = -1  # no CFA rule yet: UNSUPPORTED until one is defined
        self.cfa_off = 0
        self.cfa_expr: bytes | None = None
        self.rbp = _SAME
        self.ra = _SAME

    def copy(self) -> _State:
        s = _State()
        s.cfa_reg, s.cfa_off, s.cfa_expr, s.rbp, s.ra = self.cfa_reg, self.cfa_off, self.cfa_expr, self.rbp, self.ra
        return s


class RowMemo:
    """convert() by state: a file has a few hundred distinct states for tens of thousands of rows."""

    def __init__(self) -> None:
        self.rows: dict[tuple, tuple[tuple[int, int, int, int], Counter[str]]] = {}

    def row(self, st: _State, signal: bool, counts: Counter[str]) -> tuple[int, int, int, int]:
        key = (st.cfa_reg, st.cfa_off, st.cfa_expr, st.rbp, st.ra, signal)
        hit = self.rows.get(key)
        if hit is None:
            reasons: Counter[str] = Counter()
            hit = self.rows[key] = (convert(st, signal, reasons), reasons)
        if hit[1]:
            counts.update(hit[1])
        return hit[0]


def convert(st: _State, signal: bool, counts: Counter[str]) -> tuple[int, int, int, int]:
    """The walker's row for a DWARF state: (cfa_off, rbp_off, cfa_rule, rbp_rule)."""
    if st.ra[0] == UNDEF:
        return END_OUTERMOST, 0, CFA_END, RBP_SAME
    if signal:
        counts["unsupported_signal_frame"] += 1
        return 0, 0, CFA_UNSUPPORTED, RBP_UNSUPPORTED
    if st.cfa_expr is not None:
        rule = PLT_EXPRESSIONS.get(st.cfa_expr)
        if rule is None:
            counts["unsupported_cfa_expression"] += 1
            return 0, 0, CFA_UNSUPPORTED, RBP_UNSUPPORTED
        cfa_rule, cfa_off = rule, 0
    elif st.cfa_reg == REG_RSP:
        cfa_rule, cfa_off = CFA_RSP, st.cfa_off
    elif st.cfa_reg == REG_RBP:
        cfa_rule, cfa_off = CFA_RBP, st.cfa_off
    else:
        counts["unsupported_cfa_register"] += 1
        return 0, 0, CFA_UNSUPPORTED, RBP_UNSUPPORTED
    if not -(1 << 31) <= cfa_off < 1 << 31:
        counts["unsupported_cfa_offset"] += 1
        return 0, 0, CFA_UNSUPPORTED, RBP_UNSUPPORTED
    if st.ra != (OFFSET, -8):
        counts["unsupported_return_address"] += 1
        return 0, 0, CFA_UNSUPPORTED, RBP_UNSUPPORTED
    kind, val = st.rbp
    if kind == SAME:
        return cfa_off, 0, cfa_rule, RBP_SAME
    if kind == OFFSET and -(1 << 15) <= val < 1 << 15:
        return cfa_off, val, cfa_rule, RBP_CFA
    counts["unsupported_rbp_rule"] += 1
    return cfa_off, 0, cfa_rule, RBP_UNSUPPORTED


def _execute(code: bytes, pos: int, end: int, st: _State, init: _State | None, cie: Cie, fde: Fde | None,
             loc: int, rows: list[Row], counts: Counter[str], memo: RowMemo | None = None) -> bool:
    """Run code[pos:end] on `st`. For an FDE (`fde` given) rows are appended at each advance; `init` is
    the CIE's state (for DW_CFA_restore). False when the program stopped on something it cannot
    decode (an UNSUPPORTED row then covers the rest)."""
    code_align, data_align, ra_reg, signal = cie.code_align, cie.data_align, cie.ra_reg, cie.signal_frame
    row = (memo or RowMemo()).row
    pc_end = fde.pc_end if fde else 0
    stack: list[_State] = []
    try:
        while pos < end:
            op = code[pos]
            pos += 1
            hi = op & 0xC0
            new_loc = -1
            if hi == 0x40:  # DW_CFA_advance_loc
                new_loc = loc + (op & 0x3F) * code_align
            elif hi == 0x80:  # DW_CFA_offset
                off, pos = uleb(code, pos, end)
                reg = op & 0x3F
                if reg == REG_RBP:
                    st.rbp = (OFFSET, off * data_align)
                elif reg == ra_reg:
                    st.ra = (OFFSET, off * data_align)
            elif hi == 0xC0:  # DW_CFA_restore
                reg = op & 0x3F
                if init is not None:
                    if reg == REG_RBP:
                        st.rbp = init.rbp
                    elif reg == ra_reg:
                        st.ra = init.ra
            elif op == 0x00:  # DW_CFA_nop
                pass
            elif op == 0x02:  # DW_CFA_advance_loc1
                if pos >= end:
                    raise CfiFormatError("truncated advance")
                new_loc = loc + code[pos] * code_align
                pos += 1
            elif op == 0x03:
                if pos + 2 > end:
                    raise CfiFormatError("truncated advance")
                new_loc = loc + int.from_bytes(code[pos:pos + 2], "little") * code_align
                pos += 2
            elif op == 0x04:
                if pos + 4 > end:
                    raise CfiFormatError("truncated advance")
                new_loc = loc + int.from_bytes(code[pos:pos + 4], "little") * code_align
                pos += 4
            elif op == 0x0E:  # DW_CFA_def_cfa_offset (keeps an expression CFA as it is, as readelf)
                st.cfa_off, pos = uleb(code, pos, end)
            elif op == 0x0C:  # DW_CFA_def_cfa
                st.cfa_reg, pos = uleb(code, pos, end)
                st.cfa_off, pos = uleb(code, pos, end)
                st.cfa_expr = None
            elif op == 0x0D:  # DW_CFA_def_cfa_register
                st.cfa_reg, pos = uleb(code, pos, end)
                st.cfa_expr = None
            elif op == 0x0A:  # DW_CFA_remember_state
                if len(stack) >= REMEMBER_MAX:
                    raise CfiFormatError("remember_state nested too deep")
                stack.append(st.copy())
            elif op == 0x0B:  # DW_CFA_restore_state
                if not stack:
                    raise CfiFormatError("restore_state without remember_state")
                saved = stack.pop()
                st.cfa_reg, st.cfa_off, st.cfa_expr, st.rbp, st.ra = (
                    saved.cfa_reg, saved.cfa_off, saved.cfa_expr, saved.rbp, saved.ra)
            elif op == 0x0F:  # DW_CFA_def_cfa_expression
                n, pos = uleb(code, pos, end)
                if pos + n > end:
                    raise CfiFormatError("truncated expression")
                st.cfa_expr = bytes(code[pos:pos + n])
                pos += n
            elif op in (0x05, 0x11, 0x14, 0x15, 0x2F):  # offset_extended(_sf), val_offset(_sf), GNU neg
                reg, pos = uleb(code, pos, end)
                if op in (0x11, 0x15):
                    off, pos = sleb(code, pos, end)
                else:
                    off, pos = uleb(code, pos, end)
                off *= data_align
                if op == 0x2F:
                    off = -off
                rule = (OFFSET, off) if op in (0x05, 0x11, 0x2F) else _OTHER
                if reg == REG_RBP:
                    st.rbp = rule
                elif reg == ra_reg:
                    st.ra = rule
            elif op in (0x06, 0x07, 0x08):  # restore_extended, undefined, same_value
                reg, pos = uleb(code, pos, end)
                if op == 0x06:
                    rule = None if init is None else (init.rbp if reg == REG_RBP else init.ra)
                else:
                    rule = _UNDEF if op == 0x07 else _SAME
                if rule is not None:
                    if reg == REG_RBP:
                        st.rbp = rule
                    elif reg == ra_reg:
                        st.ra = rule
            elif op == 0x09:  # DW_CFA_register
                reg, pos = uleb(code, pos, end)
                _, pos = uleb(code, pos, end)
                if reg == REG_RBP:
                    st.rbp = _OTHER
                elif reg == ra_reg:
                    st.ra = _OTHER
            elif op in (0x10, 0x16):  # DW_CFA_expression, DW_CFA_val_expression
                reg, pos = uleb(code, pos, end)
                n, pos = uleb(code, pos, end)
                pos += n
                if pos > end:
                    raise CfiFormatError("truncated expression")
                if reg == REG_RBP:
                    st.rbp = _OTHER
                elif reg == ra_reg:
                    st.ra = _OTHER
            elif op == 0x12:  # DW_CFA_def_cfa_sf
                st.cfa_reg, pos = uleb(code, pos, end)
                off, pos = sleb(code, pos, end)
                st.cfa_off = off * data_align
                st.cfa_expr = None
            elif op == 0x13:  # DW_CFA_def_cfa_offset_sf
                off, pos = sleb(code, pos, end)
                st.cfa_off = off * data_align
            elif op == 0x2E:  # DW_CFA_GNU_args_size: for exception landing pads only
                _, pos = uleb(code, pos, end)
            elif op == 0x01:  # DW_CFA_set_loc
                if cie.fde_encoding & 0x70:
                    raise CfiFormatError("relative DW_CFA_set_loc")
                new_loc, pos = read_encoded(code, pos, end, cie.fde_encoding, 0)
                if new_loc < loc:
                    raise CfiFormatError("DW_CFA_set_loc backwards")
            else:
                raise CfiFormatError(f"opcode {op:#x}")
            if new_loc > loc and fde is not None:  # an advance (new_loc is -1 otherwise)
                if loc < pc_end:
                    rows.append((loc, *row(st, signal, counts)))
                loc = new_loc
                if loc >= pc_end:
                    return True
    except CfiFormatError:
        if fde is None:
            raise
        counts["cfi_bad_instructions"] += 1
        if loc < pc_end:
            rows.append((loc, 0, 0, CFA_UNSUPPORTED, RBP_UNSUPPORTED))
        return False
    if fde is not None and loc < pc_end:
        rows.append((loc, *row(st, signal, counts)))
    return True


class CieStates:
    """Each CIE's initial state, computed once per table (a file has a handful of CIEs), and the
    table's row memo."""

    def __init__(self) -> None:
        self._states: dict[Cie, _State | None] = {}
        self.memo = RowMemo()

    def get(self, fde: Fde) -> _State | None:
        key = fde.cie
        if key not in self._states:
            st = _State()
            try:
                _execute(fde.cie.initial, 0, len(fde.cie.initial), st, None, fde.cie, None, 0, [], Counter())
                self._states[key] = st
            except CfiFormatError:
                self._states[key] = None
        return self._states[key]


def fde_rows(fde: Fde, cie_states: CieStates, counts: Counter[str]) -> list[Row]:
    """The rows of one FDE, in pc order (a row at the same pc as the previous replaces it later)."""
    init = cie_states.get(fde)
    if init is None:
        counts["cfi_bad_cie_instructions"] += 1
        return [(fde.pc_begin, 0, 0, CFA_UNSUPPORTED, RBP_UNSUPPORTED)]
    rows: list[Row] = []
    _execute(fde.section, fde.start, fde.end, init.copy(), init, fde.cie, fde, fde.pc_begin, rows, counts,
             cie_states.memo)
    return rows
