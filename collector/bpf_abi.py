"""The BPF ABI as Python sees it: constants read from the C headers, struct layouts as numpy dtypes.

The headers in bpf/ are the one source of the numbers: `DEFINES` parses their `#define NAME <int>`
lines, so a constant changed in C changes here. The struct layouts cannot be parsed reliably, so they
are declared here once and checked against the C compiler's own `sizeof`/`offsetof` by
tests/collector/test_bpf_abi.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

BPF_DIR = Path(__file__).resolve().parent.parent / "bpf"
HEADERS = ("hotpath.h", "hp_unwind.h", "hp_python.h")

_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Z][A-Z0-9_]*)\s+\(?(-?(?:0x[0-9a-fA-F]+|\d+))(?:ULL|UL|U|LL)?\)?\s*(?:/\*.*)?$")


def parse_defines(text: str) -> dict[str, int]:
    """Integer `#define`s of a header (the defaults: `-D` cflags may override the #ifndef ones)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _DEFINE.match(line)
        if m:
            out[m.group(1)] = int(m.group(2), 0)
    return out


def _load_defines() -> dict[str, int]:
    out: dict[str, int] = {}
    for name in HEADERS:
        out.update(parse_defines((BPF_DIR / name).read_text()))
    return out


DEFINES = _load_defines()

# struct hp_unwind_row (hp_unwind.h): 12 bytes, sorted by pc within a table.
UNWIND_ROW = np.dtype([("pc", "<u4"), ("cfa_off", "<i4"), ("rbp_off", "<i2"), ("cfa_rule", "u1"),
                       ("rbp_rule", "u1")])
# struct hp_mapping (hp_unwind.h): 32 bytes.
MAPPING = np.dtype([("start", "<u8"), ("end", "<u8"), ("bias", "<u8"), ("table_first", "<u4"),
                    ("table_count", "<u4")])
# struct hp_py_proc (hp_python.h): 32 bytes, a CPython process's offsets for the Python walk.
PY_PROC = np.dtype([("tstate_cframe", "<u2"), ("cframe_current_frame", "<u2"), ("frame_code", "<u2"),
                    ("frame_window", "<u2"), ("frame_previous", "<u2"), ("frame_instr", "<u2"),
                    ("frame_is_entry", "<u2"), ("frame_owner", "<u2"), ("owner_cstack", "<u2"),
                    ("code_firstlineno", "<u2"), ("code_bytecode", "<u2"), ("instr_is_next", "<u2"),
                    ("pad", "<u2", (4,))])
