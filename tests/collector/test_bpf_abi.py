"""collector/bpf_abi.py against the C compiler's own view of bpf/hotpath.h and bpf/hp_unwind.h:
every struct's size and field offsets, and the stats slot names against HP_STAT_*."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from collector import bpf_abi
from tests.conftest import require

STRUCTS = {
    "hp_key": bpf_abi.HP_KEY_FIELDS,
    "hp_stack": ("n", "ips"),
    "hp_unwind_row": bpf_abi.UNWIND_ROW.names,
    "hp_mapping": bpf_abi.MAPPING.names,
    "hp_proc_maps": ("n", "pad", "m"),
    "hp_py_proc": bpf_abi.PY_PROC.names,
}


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """{"hp_key": sizeof, "hp_key.tgid": offsetof, ...} printed by a program gcc built from the headers."""
    require(shutil.which("gcc") is not None, "gcc to compile the BPF headers")
    lines = [f'printf("{s} %zu\\n", sizeof(struct {s}));' for s in STRUCTS]
    lines += [f'printf("{s}.{f} %zu\\n", offsetof(struct {s}, {f}));' for s, fields in STRUCTS.items()
              for f in fields]
    src = ("#include <stdio.h>\n#include <stddef.h>\n"
           "typedef unsigned char __u8; typedef unsigned short __u16; typedef unsigned int __u32;\n"
           "typedef unsigned long long __u64; typedef signed char __s8; typedef short __s16;\n"
           "typedef int __s32; typedef long long __s64;\n"
           '#include "hotpath.h"\n#include "hp_python.h"\nint main(void) {\n' + "\n".join(lines) + "\nreturn 0;\n}\n")
    d = tmp_path_factory.mktemp("abi")
    (d / "abi.c").write_text(src)
    subprocess.run(["gcc", "-Wall", "-Werror", f"-I{bpf_abi.BPF_DIR}", "-o", str(d / "abi"), str(d / "abi.c")],
                   check=True)
    out = subprocess.run([str(d / "abi")], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def _struct_offsets(fmt: struct.Struct, names: tuple[str, ...]) -> dict[str, int]:
    """Field offsets of a struct.Struct format with one code (and optional count) per field."""
    codes = []
    i, spec = 0, fmt.format.lstrip("<>=!@")
    while i < len(spec):
        j = i
        while spec[j].isdigit():
            j += 1
        codes.append(spec[i:j + 1])
        i = j + 1
    assert len(codes) == len(names)
    return {name: struct.calcsize("<" + "".join(codes[:k])) for k, name in enumerate(names)}


def test_key_matches_c(c_layout: dict[str, int]) -> None:
    assert c_layout["hp_key"] == bpf_abi.HP_KEY.size
    for name, off in _struct_offsets(bpf_abi.HP_KEY, bpf_abi.HP_KEY_FIELDS).items():
        assert c_layout[f"hp_key.{name}"] == off, name


def test_stack_and_proc_maps_match_c(c_layout: dict[str, int]) -> None:
    assert c_layout["hp_stack"] == bpf_abi.HP_STACK_SIZE
    assert (c_layout["hp_stack.n"], c_layout["hp_stack.ips"]) == (0, 8)
    assert c_layout["hp_proc_maps"] == bpf_abi.HP_PROC_MAPS_SIZE
    assert (c_layout["hp_proc_maps.n"], c_layout["hp_proc_maps.m"]) == (0, 8)


@pytest.mark.parametrize(("name", "dtype"), [("hp_unwind_row", bpf_abi.UNWIND_ROW), ("hp_mapping", bpf_abi.MAPPING),
                                             ("hp_py_proc", bpf_abi.PY_PROC)])
def test_dtypes_match_c(c_layout: dict[str, int], name: str, dtype) -> None:
    assert c_layout[name] == dtype.itemsize
    for field in dtype.names:
        assert c_layout[f"{name}.{field}"] == dtype.fields[field][1], field


def test_stat_names_follow_the_defines() -> None:
    defines = bpf_abi.DEFINES
    slots = {v: k for k, v in defines.items() if k.startswith("HP_STAT_") and k != "HP_STAT_SLOTS"}
    assert sorted(slots) == list(range(defines["HP_STAT_SLOTS"]))
    assert len(bpf_abi.STAT_NAMES) == defines["HP_STAT_SLOTS"] and len(set(bpf_abi.STAT_NAMES)) == len(slots)
    with pytest.raises(ValueError, match="HP_STAT_NEW"):
        bpf_abi.stat_names({**defines, "HP_STAT_NEW": defines["HP_STAT_SLOTS"],
                            "HP_STAT_SLOTS": defines["HP_STAT_SLOTS"] + 1})


def test_every_end_reason_has_a_placeholder_decision() -> None:
    ends = {v for k, v in bpf_abi.DEFINES.items() if k.startswith("HP_END_") and k != "HP_END_SLOTS"}
    assert set(bpf_abi.END_PLACEHOLDERS) == ends == set(range(bpf_abi.DEFINES["HP_END_SLOTS"]))


def test_headers_parse_from_this_tree() -> None:
    assert Path(bpf_abi.BPF_DIR, "hotpath.h").is_file()
    assert bpf_abi.HP_MAX_DEPTH == bpf_abi.DEFINES["HP_MAX_DEPTH"] > 0
