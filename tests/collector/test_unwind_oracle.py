"""Compiled unwind tables against binutils' `readelf --debug-dump=frames-interp` (issue 14, acceptance 5).

At every row boundary readelf prints, and at every boundary the compiler emits, the table's row must
say what readelf's interpreted rules say, mapped to the walker's rules by hp_unwind.h's contract.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from elftools.elf.elffile import ELFFile

from collector.symbolize.elf import load_elf
from collector.unwind import cfa_program as cp
from collector.unwind.compiler import UnwindTable, compile_bytes, compile_file
from collector.unwind.vdso import read_vdso
from tests.collector import readelf_frames
from tests.collector.conftest import WORKLOADS
from tests.conftest import require

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
LIBPYTHON = "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0"
ANY_EXPRESSION = -1  # readelf prints every CFA expression as `exp`: PLT10, PLT11 or UNSUPPORTED


def expected_row(cfa: str, rbp: str, ra: str, signal: bool) -> tuple[int, int, int, int]:
    """(cfa_rule, cfa_off, rbp_rule, rbp_off) the contract asks for, from readelf's columns."""
    if ra == "u":
        return cp.CFA_END, cp.END_OUTERMOST, cp.RBP_SAME, 0
    unsupported = (cp.CFA_UNSUPPORTED, 0, cp.RBP_UNSUPPORTED, 0)
    if signal:
        return unsupported
    if cfa == "exp":
        cfa_rule, cfa_off = ANY_EXPRESSION, 0
    elif cfa.startswith(("rsp+", "rsp-")):
        cfa_rule, cfa_off = cp.CFA_RSP, int(cfa[3:])
    elif cfa.startswith(("rbp+", "rbp-")):
        cfa_rule, cfa_off = cp.CFA_RBP, int(cfa[3:])
    else:
        return unsupported
    if ra != "c-8":
        return unsupported
    if rbp in ("u", "s"):
        return cfa_rule, cfa_off, cp.RBP_SAME, 0
    if rbp[0] == "c" and rbp[1] in "+-":
        return cfa_rule, cfa_off, cp.RBP_CFA, int(rbp[1:])
    return cfa_rule, cfa_off, cp.RBP_UNSUPPORTED, 0


def _fde_rows(fde: readelf_frames.Record, cies: dict) -> list[tuple[int, tuple[int, int, int, int]]]:
    cie = cies[(fde.section, fde.cie)]
    signal = "S" in cie.augmentation
    rows = fde.rows or [(fde.pc_begin, cie.rows[-1][1])]
    by_loc: dict[int, tuple[int, int, int, int]] = {}
    for loc, cols in rows:  # a later row at the same LOC replaces an earlier one
        by_loc[max(loc, fde.pc_begin)] = expected_row(cols.get("CFA", "?"), cols.get("rbp", "u"),
                                                      cols.get("ra", "u"), signal)
    return sorted(by_loc.items())


def _plt_ranges(path: str) -> list[tuple[int, int]]:
    with open(path, "rb") as fh:
        return [(s["sh_addr"], s["sh_addr"] + s["sh_size"]) for s in ELFFile(fh).iter_sections()
                if s.name.startswith(".plt")]


def check_against_readelf(path: str, table: UnwindTable) -> dict[str, int]:
    """Assert agreement at every boundary of both sides; returns what was compared."""
    cies, fdes = readelf_frames.parse(readelf_frames.dump(path))
    assert fdes, f"readelf printed no FDEs for {path}"
    # FDEs the compiler may drop: overlapping ones (it keeps the first by start, .eh_frame first).
    fdes = [f for f in fdes if f.pc_end > f.pc_begin and f.pc_begin]
    order = sorted(range(len(fdes)), key=lambda i: (fdes[i].pc_begin, fdes[i].section != ".eh_frame"))
    kept, covered = [], -1
    for i in order:
        if fdes[i].pc_begin >= covered:
            kept.append(fdes[i])
            covered = fdes[i].pc_end
    starts = {f.pc_begin for f in kept}
    pcs, want, owners = [], [], []
    for f in kept:
        rows = _fde_rows(f, cies)
        for loc, exp in rows:
            pcs.append(loc)
            want.append(exp)
            owners.append(f)
        if f.pc_end not in starts:  # the gap after it
            pcs.append(f.pc_end)
            want.append((cp.CFA_END, cp.END_GAP, cp.RBP_SAME, 0))
            owners.append(None)
    rows = table.rows
    assert np.all(np.diff(rows["pc"].astype(np.int64)) > 0), "rows not strictly sorted"
    idx = np.searchsorted(rows["pc"], np.array(pcs, dtype=np.uint32), side="right") - 1
    assert (idx >= 0).all()
    got = rows[idx]
    plt = _plt_ranges(path)
    mismatches = []
    for k, (pc, exp) in enumerate(zip(pcs, want, strict=True)):
        g = (int(got["cfa_rule"][k]), int(got["cfa_off"][k]), int(got["rbp_rule"][k]), int(got["rbp_off"][k]))
        if exp[0] == ANY_EXPRESSION:  # the PLT rule only inside .plt*, else unsupported
            in_plt = any(lo <= pc < hi for lo, hi in plt)
            ok = (g[0] in (cp.CFA_PLT10, cp.CFA_PLT11) and in_plt and g[1:] == (0, *exp[2:])) or (
                g == (cp.CFA_UNSUPPORTED, 0, cp.RBP_UNSUPPORTED, 0))
        else:
            ok = g == exp
        if not ok:
            mismatches.append((hex(pc), exp, g))
    assert not mismatches, f"{len(mismatches)} of {len(pcs)} boundaries differ, first: {mismatches[:5]}"
    # The other direction: every row the compiler emitted starts where readelf has a boundary
    # (merging only removes boundaries, never invents one).
    boundary = np.isin(rows["pc"], np.array(sorted(set(pcs)), dtype=np.uint32))
    assert boundary.all(), f"rows at pcs readelf has no boundary for: {[hex(p) for p in rows['pc'][~boundary][:5]]}"
    return {"boundaries": len(pcs), "rows": len(rows), "fdes": len(kept)}


@pytest.fixture(scope="module")
def readelf() -> None:
    require(shutil.which("readelf") is not None, "readelf (binutils)")


@pytest.fixture(scope="module")
def nofp_binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require(shutil.which("gcc") is not None, "gcc")
    out = tmp_path_factory.mktemp("unwind")
    built = {}
    for name, flags in {"eh": [], "debug_frame": ["-fno-asynchronous-unwind-tables", "-g"]}.items():
        exe = out / f"cpu_split_{name}"
        subprocess.run(["gcc", "-O2", "-fomit-frame-pointer", *flags, "-o", str(exe), str(WORKLOADS / "cpu_split.c"),
                        str(WORKLOADS / "unwind_shapes.c")], check=True)
        built[name] = str(exe)
    return built


@pytest.mark.parametrize("path", [LIBC, LIBPYTHON, "/usr/bin/gzip", "/usr/bin/xz"])
def test_system_files_agree_with_readelf(readelf: None, path: str) -> None:
    require(Path(path).exists(), path)
    table = compile_file(path)
    seen = check_against_readelf(path, table)
    assert seen["fdes"] > 100
    assert table.build_id


def test_nofp_test_binaries_agree_with_readelf(readelf: None, nofp_binaries: dict[str, str]) -> None:
    for name, path in nofp_binaries.items():
        table = compile_file(path)
        check_against_readelf(path, table)
        # The VLA function's frame is addressed from rbp: the table must say so.
        rules = set(table.rows["cfa_rule"].tolist())
        assert cp.CFA_RBP in rules, name
        # path_a's only CFI is in .debug_frame in the second binary: it must be covered all the same.
        row = table.lookup(load_elf(path).address_of("path_a") or 0)
        assert row is not None and row["cfa_rule"] == cp.CFA_RSP, name


def test_vdso_agrees_with_readelf(readelf: None, tmp_path) -> None:
    blob = read_vdso()
    require(blob is not None, "a [vdso] mapping")
    image = tmp_path / "vdso.so"
    image.write_bytes(blob)
    table = compile_bytes(blob)
    assert check_against_readelf(str(image), table)["fdes"] >= 3
    assert table.build_id


def test_plt_rows_use_the_plt_rule(readelf: None) -> None:
    table = compile_file("/usr/bin/gzip")
    rules = set(table.rows["cfa_rule"].tolist())
    assert cp.CFA_PLT11 in rules
    assert not table.counts.get("unsupported_cfa_expression")


def test_libc_signal_trampoline_is_unsupported_and_counted(readelf: None) -> None:
    table = compile_file(LIBC)
    assert table.counts["unsupported_signal_frame"] >= 1
    # __restore_rt is the one function in the 'S' CIE's FDE.
    assert (table.rows["cfa_rule"] == cp.CFA_UNSUPPORTED).sum() >= 1
    # Outermost frames exist in libc (clone's child, thread start): their END rows say so.
    outer = (table.rows["cfa_rule"] == cp.CFA_END) & (table.rows["cfa_off"] == cp.END_OUTERMOST)
    assert outer.any()
