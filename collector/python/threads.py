"""Thread id -> `PyThreadState*` of a live CPython process, walked through its memory.

`_PyRuntime.interpreters.head` -> `PyInterpreterState.next`..., each interpreter's
`threads.head` -> `PyThreadState.next`..., keyed by `native_thread_id` (the kernel tid, which is
what a BPF program knows). The lists change under us (threads start and end): every read is
checked, cycles and absurd lengths end the walk, and what was read so far is kept.
"""

from __future__ import annotations

from collector.python.detect import Interpreter
from collector.python.procmem import Memory, MemoryReadError, read_u64

MAX_INTERPRETERS = 64
MAX_THREADS = 4096


def thread_states(mem: Memory, interp: Interpreter) -> tuple[dict[int, int], str]:
    """({tid: thread state address}, "" or the reason the walk stopped early)."""
    lay = interp.layout
    out: dict[int, int] = {}
    seen: set[int] = set()
    try:
        ist = read_u64(mem, interp.runtime + lay.runtime_interpreters_head)
        for _ in range(MAX_INTERPRETERS):
            if not ist:
                return out, ""
            tstate = read_u64(mem, ist + lay.interp_threads_head)
            for _ in range(MAX_THREADS):
                if not tstate:
                    break
                if tstate in seen:
                    return out, "cycle"
                seen.add(tstate)
                tid = read_u64(mem, tstate + lay.tstate_native_thread_id)
                if 0 < tid < 1 << 32:
                    out[tid] = tstate
                tstate = read_u64(mem, tstate + lay.tstate_next)
            else:
                return out, "too_many_threads"
            ist = read_u64(mem, ist + lay.interp_next)
        return out, "too_many_interpreters"
    except MemoryReadError:
        return out, "read_fault"
