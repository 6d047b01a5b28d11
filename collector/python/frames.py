"""A thread's Python frames, read from user space: thread state -> current frame -> previous...

This is the reference for the BPF walk (same steps, same record: code object, stamp, instruction
index, entry marker) and the oracle its tests compare against. 3.11: `tstate->cframe->
current_frame`, each `_PyInterpreterFrame` names its code object (`f_code`), the last instruction
run (`prev_instr`, inside the code object's inline bytecode) and whether it is the first Python
frame of a `_PyEval_EvalFrameDefault` call (`is_entry`): one native eval frame runs the frames
from the top down to and including the next entry frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.python.layout import Layout
from collector.python.procmem import Memory, MemoryReadError, read_u64, u64_at

MAX_DEPTH = 128
# End reasons (counted by callers; "" = the walk reached the thread's first frame).
TRUNCATED = "python_truncated"
READ_FAULT = "python_frame_read_fault"
CYCLE = "python_frame_cycle"


@dataclass(frozen=True, slots=True)
class FrameRef:
    """One Python frame as recorded: enough to name it later, nothing that needs the process."""

    code: int       # code object address
    stamp: int      # fold_stamp of the 8 bytes at co_firstlineno: tells a reused address apart
    lasti: int      # code-unit index of the instruction (-1: not started)
    is_entry: bool  # the first frame of its native _PyEval_EvalFrameDefault call


def fold_stamp(raw8: int) -> int:
    """32-bit stamp of a code object from the 8 bytes at its co_firstlineno (co_firstlineno,
    co_nlocalsplus): what the BPF walk records beside the code object's address."""
    return (raw8 ^ (raw8 >> 32)) & 0xFFFFFFFF


def frame_span(layout: Layout) -> int:
    """Bytes of a frame a walk reads in one go (up to and including `owner`)."""
    fields = [layout.frame_code, layout.frame_previous, layout.frame_instr, layout.frame_owner]
    if layout.frame_is_entry is not None:
        fields.append(layout.frame_is_entry)
    return max(fields) + 8


def current_frame(mem: Memory, layout: Layout, tstate: int) -> int:
    if layout.tstate_cframe is None:
        return read_u64(mem, tstate + layout.cframe_current_frame)
    cframe = read_u64(mem, tstate + layout.tstate_cframe)
    return read_u64(mem, cframe + layout.cframe_current_frame) if cframe else 0


def instruction_index(layout: Layout, code: int, instr: int) -> int:
    """Code-unit index of the instruction a frame is at (CPython's lasti)."""
    units = (instr - (code + layout.code_bytecode)) // 2
    return units - 1 if layout.instr_is_next else units


def read_frames(mem: Memory, layout: Layout, tstate: int,
                max_depth: int = MAX_DEPTH) -> tuple[list[FrameRef], str]:
    """The thread's Python frames, innermost first, and "" or why the walk ended early."""
    out: list[FrameRef] = []
    span = frame_span(layout)
    try:
        frame = current_frame(mem, layout, tstate)
        seen: set[int] = set()
        while frame:
            if len(out) >= max_depth:
                return out, TRUNCATED
            if frame in seen:
                return out, CYCLE
            seen.add(frame)
            raw = mem.read(frame, span)
            code = u64_at(raw, layout.frame_code)
            previous = u64_at(raw, layout.frame_previous)
            if layout.frame_is_entry is not None:
                entry = raw[layout.frame_is_entry] != 0
            else:
                entry = raw[layout.frame_owner] == layout.owner_cstack
                if entry:  # a C-stack shim frame (3.12+): marks the entry, has no code to show
                    if out:
                        out[-1] = FrameRef(out[-1].code, out[-1].stamp, out[-1].lasti, True)
                    frame = previous
                    continue
            stamp = fold_stamp(read_u64(mem, code + layout.code_firstlineno)) if code else 0
            lasti = instruction_index(layout, code, u64_at(raw, layout.frame_instr))
            out.append(FrameRef(code, stamp, lasti, entry))
            frame = previous
    except MemoryReadError:
        return out, READ_FAULT
    return out, ""
