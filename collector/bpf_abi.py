"""The BPF ABI as Python sees it: constants read from the C headers, struct layouts as numpy dtypes.

The headers in bpf/ are the one source of the numbers: `DEFINES` parses their `#define NAME <int>`
lines, so a constant changed in C changes here. The struct layouts cannot be parsed reliably, so they
are declared here once and checked against the C compiler's own `sizeof`/`offsetof` by
tests/collector/test_bpf_abi.py.
"""

from __future__ import annotations

import re
import struct
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

# struct hp_key (hotpath.h): the counts maps' key, decoded by hand in the drain.
HP_KEY = struct.Struct("<IIQQQiiII16sQiI")
HP_KEY_FIELDS = ("tgid", "tid", "cgroup_id", "user_stack", "kernel_stack", "user_err", "kernel_err",
                 "stack_map", "user_end", "comm", "py_stack", "py_end", "py_pad")
HP_MAX_DEPTH = DEFINES["HP_MAX_DEPTH"]
# struct hp_stack (hotpath.h): n, then HP_MAX_DEPTH addresses.
HP_STACK_SIZE = 8 + 8 * HP_MAX_DEPTH
# struct hp_proc_maps (hp_unwind.h): n, pad, HP_MAX_MAPPINGS mappings.
HP_PROC_MAPS_SIZE = 8 + MAPPING.itemsize * DEFINES["HP_MAX_MAPPINGS"]

# stats[] slots: the names batches report them under, by their hotpath.h HP_STAT_* define.
_STAT_NAME_OF = {
    "HP_STAT_IDLE": "idle_samples", "HP_STAT_MAP_FULL": "map_full_drops",
    "HP_STAT_THREADS_FULL": "threads_map_full", "HP_STAT_STALE_STACK": "stale_stacks",
    "HP_STAT_SAMPLES": "bpf_samples", "HP_STAT_SHORT_BLOCKS": "short_blocks",
    "HP_STAT_SAMPLED_OUT": "sampled_out_spans", "HP_STAT_LOST_SPANS": "lost_offcpu_spans",
    "HP_STAT_SAMPLED": "sampled_spans",
}


def stat_names(defines: dict[str, int] = DEFINES, name_of: dict[str, str] = _STAT_NAME_OF) -> tuple[str, ...]:
    """Slot i's name, for i in 0..HP_STAT_SLOTS; every HP_STAT_* needs a name here."""
    slots = {k: v for k, v in defines.items() if k.startswith("HP_STAT_") and k != "HP_STAT_SLOTS"}
    unnamed = sorted(set(slots) - set(name_of))
    if unnamed:
        raise ValueError(f"stats slots without a name in collector/bpf_abi.py: {unnamed}")
    names = [""] * defines["HP_STAT_SLOTS"]
    for define, slot in slots.items():
        names[slot] = name_of[define]
    if "" in names:
        raise ValueError(f"stats slots without a define: {[i for i, n in enumerate(names) if not n]}")
    return tuple(names)


STAT_NAMES = stat_names()

# Why a user-stack walk ended (hp_key.user_end), by HP_END_* value: the counter name a batch
# reports, and the placeholder frame a truncated stack ends with (None: a complete stack).
END_NAMES = {v: k[len("HP_END_"):].lower() for k, v in DEFINES.items()
             if k.startswith("HP_END_") and k != "HP_END_SLOTS"}
END_PLACEHOLDERS: dict[int, str | None] = {
    DEFINES["HP_END_NONE"]: None,
    DEFINES["HP_END_OK"]: None,
    DEFINES["HP_END_NOT_COVERED"]: "[unwind: pc not covered]",
    DEFINES["HP_END_UNSUPPORTED"]: "[unwind: unsupported rule]",
    DEFINES["HP_END_READ_FAULT"]: "[unwind: stack unreadable]",
    DEFINES["HP_END_DEPTH"]: "[unwind: depth limit]",
    DEFINES["HP_END_PENDING"]: "[unwind: table not loaded yet, frame pointers]",
    DEFINES["HP_END_NO_PROC"]: "[unwind: process not registered yet, frame pointers]",
    DEFINES["HP_END_BAD_FRAME"]: "[unwind: impossible frame]",
}
# struct hp_py_new (hp_python.h): a newly stored Python stack, announced through queue `py_new`.
PY_NEW = struct.Struct("<QII")
