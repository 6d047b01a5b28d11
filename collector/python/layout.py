"""CPython struct offsets per minor version: the one table of them.

Offsets are bytes from the start of the named struct (x86_64). The 3.11 entry was checked against
`offsetof()` compiled with CPython 3.11.7's own internal headers (`Py_BUILD_CORE`, see
tests/collector/python/test_layout.py, which re-checks it on every run); the layout is fixed within
a minor release. The code-object offsets are also published by the interpreter itself in
`PyCode_Type.tp_members`: `with_code_members` takes them from a live process, so a build that
differs there is read right, and the test compares both.

Adding 3.12 or 3.13 is one `Layout(...)` entry plus the fields that say how their frames differ
from 3.11's, all already here as data:
  - 3.12: `is_entry` is gone; a C-stack shim frame (`owner == FRAME_OWNED_BY_CSTACK`) marks the
    entry instead (`is_entry=None`, `owner_cstack=3`); the thread state still has `cframe`.
  - 3.13: no `_PyCFrame`: the thread state holds `current_frame` itself (`cframe=None`);
    `f_code` became `f_executable`; `prev_instr` became `instr_ptr`, the *next* instruction
    (`instr_is_next=True`); unicode `state` lost its `ready` bit (kind/compact/ascii unmoved).
A version with no entry gets `None` from `layout_for`, which callers count as a reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class Layout:
    """How to walk one CPython minor version's runtime, thread states, frames and code objects."""

    version: tuple[int, int]
    # _PyRuntimeState
    runtime_interpreters_head: int
    # PyInterpreterState
    interp_next: int
    interp_threads_head: int
    # PyThreadState
    tstate_next: int
    tstate_native_thread_id: int
    tstate_cframe: int | None          # None: current_frame lives in the thread state (3.13)
    cframe_current_frame: int           # in _PyCFrame, or in the thread state when cframe is None
    # _PyInterpreterFrame
    frame_code: int
    frame_previous: int
    frame_instr: int
    frame_is_entry: int | None          # None: entries are marked by owner == owner_cstack (3.12)
    frame_owner: int
    owner_cstack: int | None
    instr_is_next: bool                 # the instruction pointer is the next instruction (3.13)
    # PyCodeObject
    code_size: int                      # ob_size: code units of bytecode
    code_firstlineno: int
    code_filename: int
    code_name: int
    code_qualname: int
    code_linetable: int
    code_bytecode: int                  # co_code_adaptive: the bytecode, inline in the object
    # PyUnicodeObject (compact) and PyBytesObject
    unicode_length: int
    unicode_state: int
    unicode_ascii_data: int
    unicode_compact_data: int
    bytes_size: int
    bytes_data: int
    # PyTypeObject (to read PyCode_Type.tp_members) and PyMemberDef
    type_members: int
    member_size: int
    member_offset: int


PY311 = Layout(
    version=(3, 11),
    runtime_interpreters_head=40,
    interp_next=0,
    interp_threads_head=16,
    tstate_next=8,
    tstate_native_thread_id=160,
    tstate_cframe=56,
    cframe_current_frame=8,
    frame_code=32,
    frame_previous=48,
    frame_instr=56,
    frame_is_entry=68,
    frame_owner=69,
    owner_cstack=None,
    instr_is_next=False,
    code_size=16,
    code_firstlineno=72,
    code_filename=112,
    code_name=120,
    code_qualname=128,
    code_linetable=136,
    code_bytecode=184,
    unicode_length=16,
    unicode_state=32,
    unicode_ascii_data=48,
    unicode_compact_data=72,
    bytes_size=16,
    bytes_data=32,
    type_members=240,
    member_size=40,
    member_offset=16,
)

LAYOUTS: dict[tuple[int, int], Layout] = {PY311.version: PY311}

# tp_members names -> Layout fields they give (PyMemberDef.offset is offsetof in PyCodeObject).
CODE_MEMBERS = {
    "co_firstlineno": "code_firstlineno",
    "co_filename": "code_filename",
    "co_name": "code_name",
    "co_qualname": "code_qualname",
    "co_linetable": "code_linetable",
}


def layout_for(version: tuple[int, int]) -> Layout | None:
    """The layout of CPython `major.minor`, or None when this version has no entry."""
    return LAYOUTS.get(version)


def with_code_members(layout: Layout, members: dict[str, int]) -> Layout:
    """`layout` with code-object offsets replaced by those the interpreter publishes."""
    changes = {field: members[name] for name, field in CODE_MEMBERS.items() if name in members}
    return replace(layout, **changes) if changes else layout
