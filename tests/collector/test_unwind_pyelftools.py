"""The compiler's rows against pyelftools' own CFI decoder (`FDE.get_decoded()`): a second oracle,
independent of our CIE/FDE decoder (binutils is the first, in test_unwind_oracle.py)."""

from __future__ import annotations

import numpy as np
import pytest
from elftools.dwarf.callframe import FDE
from elftools.elf.elffile import ELFFile

from collector.unwind import cfa_program as cp
from collector.unwind.compiler import compile_file
from tests.collector.test_unwind_oracle import ANY_EXPRESSION


def _expected(row: dict, signal: bool) -> tuple[int, int, int, int]:
    ra, rbp, cfa = row.get(16), row.get(6), row["cfa"]
    if ra is not None and ra.type == "UNDEFINED":
        return cp.CFA_END, cp.END_OUTERMOST, cp.RBP_SAME, 0
    unsupported = (cp.CFA_UNSUPPORTED, 0, cp.RBP_UNSUPPORTED, 0)
    if signal:
        return unsupported
    if cfa.expr is not None:
        rule, off = ANY_EXPRESSION, 0
    elif cfa.reg in (6, 7):
        rule, off = (cp.CFA_RSP if cfa.reg == 7 else cp.CFA_RBP), cfa.offset
    else:
        return unsupported
    if ra is None or ra.type != "OFFSET" or ra.arg != -8:
        return unsupported
    if rbp is None or rbp.type == "SAME_VALUE":
        return rule, off, cp.RBP_SAME, 0
    if rbp.type == "OFFSET":
        return rule, off, cp.RBP_CFA, rbp.arg
    return rule, off, cp.RBP_UNSUPPORTED, 0


@pytest.mark.parametrize("path", ["/usr/bin/gzip", "/usr/bin/xz"])
def test_rows_agree_with_pyelftools(path: str) -> None:
    table = compile_file(path)
    compared = 0
    with open(path, "rb") as fh:
        for entry in ELFFile(fh).get_dwarf_info(follow_links=False).EH_CFI_entries():
            if not isinstance(entry, FDE):
                continue
            signal = b"S" in entry.cie.header["augmentation"]
            begin = entry.header["initial_location"]
            for row in entry.get_decoded().table:
                want = _expected(row, signal)
                got = table.lookup(max(row["pc"], begin))
                g = (int(got["cfa_rule"]), int(got["cfa_off"]), int(got["rbp_rule"]), int(got["rbp_off"]))
                if want[0] == ANY_EXPRESSION:
                    assert g[0] in (cp.CFA_PLT10, cp.CFA_PLT11, cp.CFA_UNSUPPORTED), hex(row["pc"])
                else:
                    assert g == want, (hex(row["pc"]), want, g)
                compared += 1
    assert compared > 500 and np.all(np.diff(table.rows["pc"].astype(np.int64)) > 0)
