"""The offsets table against two oracles: offsetof() with CPython's own internal headers, and the
code-object offsets a live interpreter publishes in PyCode_Type.tp_members."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

from collector.python.detect import NotWalkable, find_interpreter
from collector.python.layout import LAYOUTS, PY311, layout_for, with_code_members
from collector.python.procmem import ProcessMemory
from collector.symbolize.procmaps import capture
from tests.collector.python.conftest import PYENV_PREFIX, Parked
from tests.conftest import require

ORACLE = Path(__file__).with_name("offsets.c")


def test_py311_matches_offsetof_with_internal_headers(tmp_path: Path) -> None:
    include = PYENV_PREFIX / "include" / "python3.11"
    require((include / "internal" / "pycore_frame.h").exists(), f"{include}/internal (pyenv 3.11.7 headers)")
    require(shutil.which("gcc") is not None, "gcc")
    exe = tmp_path / "offsets"
    subprocess.run(["gcc", f"-I{include}", f"-I{include}/internal", str(ORACLE), "-o", str(exe)], check=True)
    printed = dict(line.split(" ", 1) for line in subprocess.run([str(exe)], check=True, capture_output=True,
                                                                  text=True).stdout.splitlines())
    assert printed.pop("version") == "3 11"
    assert printed.pop("stamp_pair") == "4"  # the 8-byte stamp is co_firstlineno, co_nlocalsplus
    table = dataclasses.asdict(PY311)
    checked = {name: int(value) for name, value in printed.items()}
    assert {name: table[name] for name in checked} == checked
    # Every offset of the table is checked, except those 3.11 does not have.
    unchecked = set(table) - set(checked) - {"version", "owner_cstack", "instr_is_next"}
    assert unchecked == set()


def test_code_offsets_from_the_binary_agree(parked: Parked) -> None:
    info = capture(parked.pid)
    with ProcessMemory(parked.pid) as mem:
        interp = find_interpreter(parked.pid, info.maps, mem)
    assert not isinstance(interp, NotWalkable) and interp is not None
    assert interp.members_from_binary
    assert interp.layout == PY311


def test_members_override_only_code_fields() -> None:
    moved = with_code_members(PY311, {"co_qualname": 1000, "co_argcount": 56, "co_unknown": 8})
    assert moved.code_qualname == 1000
    assert dataclasses.replace(moved, code_qualname=PY311.code_qualname) == PY311
    assert with_code_members(PY311, {}) is PY311


def test_unknown_versions_have_no_layout() -> None:
    assert layout_for((3, 11)) is PY311
    assert layout_for((3, 10)) is None and layout_for((3, 14)) is None
    assert set(LAYOUTS) == {(3, 11)}
