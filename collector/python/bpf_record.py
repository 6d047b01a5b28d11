"""The Python walk's BPF ABI in user space: a layout as a `py_procs` value, recorded words as frames.

Numbers come from bpf/hp_python.h through collector/bpf_abi.py; the struct layout is declared
there once (PY_PROC) and checked against the C compiler by tests/collector/python/test_bpf_walk.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from collector.bpf_abi import DEFINES, PY_PROC
from collector.python.frames import FrameRef, frame_span
from collector.python.layout import Layout

NONE_OFF = DEFINES["HP_PY_NONE_OFF"]
WINDOW = DEFINES["HP_PY_WINDOW"]
ENTRY_BIT = DEFINES["HP_PY_ENTRY_BIT"]
# hp_key.py_end values -> counter names (HP_PY_END_* in hp_python.h).
END_NAMES = {v: "python_" + k[len("HP_PY_END_"):].lower() for k, v in DEFINES.items()
             if k.startswith("HP_PY_END_") and k != "HP_PY_END_SLOTS"}


class LayoutTooWide(ValueError):
    """A layout whose frame fields do not fit the walk's read window."""


def py_proc_value(layout: Layout) -> bytes:
    """struct hp_py_proc for a process laid out as `layout` (frame fields relative to f_code)."""
    base = layout.frame_code
    rel = [layout.frame_previous - base, layout.frame_instr - base, layout.frame_owner - base]
    if layout.frame_is_entry is not None:
        rel.append(layout.frame_is_entry - base)
    window = frame_span(layout) - base
    if min(rel) < 0 or window > WINDOW:
        raise LayoutTooWide(f"CPython {layout.version}: frame fields span {window} bytes (window {WINDOW})")
    value = np.zeros(1, dtype=PY_PROC)
    value["tstate_cframe"] = NONE_OFF if layout.tstate_cframe is None else layout.tstate_cframe
    value["cframe_current_frame"] = layout.cframe_current_frame
    value["frame_code"] = base
    value["frame_window"] = window
    value["frame_previous"] = layout.frame_previous - base
    value["frame_instr"] = layout.frame_instr - base
    value["frame_is_entry"] = NONE_OFF if layout.frame_is_entry is None else layout.frame_is_entry - base
    value["frame_owner"] = layout.frame_owner - base
    value["owner_cstack"] = NONE_OFF if layout.owner_cstack is None else layout.owner_cstack
    value["code_firstlineno"] = layout.code_firstlineno
    value["code_bytecode"] = layout.code_bytecode
    value["instr_is_next"] = int(layout.instr_is_next)
    return value.tobytes()


def decode_words(words: Sequence[int]) -> list[FrameRef]:
    """Frames (innermost first) from a recorded Python stack's words: code, then
    stamp << 32 | is_entry << 31 | lasti (31-bit, signed). A code-0 pair is a C-stack shim
    frame (3.12+): it marks the frame before it as an entry."""
    out: list[FrameRef] = []
    for i in range(0, len(words) - 1, 2):
        code, info = int(words[i]), int(words[i + 1])
        if code == 0:
            if out:
                last = out[-1]
                out[-1] = FrameRef(last.code, last.stamp, last.lasti, True)
            continue
        lasti = info & 0x7FFFFFFF
        if lasti & 0x40000000:
            lasti -= 0x80000000
        out.append(FrameRef(code, info >> 32, lasti, bool(info >> ENTRY_BIT & 1)))
    return out
