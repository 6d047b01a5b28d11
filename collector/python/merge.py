"""Merge a thread's Python frames into its native stack (pure).

Each native `_PyEval_EvalFrameDefault` frame ran the Python frames from where the previous eval
frame's share ended, down to and including the next entry frame (`is_entry`): those replace it.
So a Python function called back from C (a `key=` function under `sorted`) shows as
Python -> native (`sorted`, its C helpers) -> Python, in order, and kernel frames stay on top.

When the native stack has fewer eval frames than the Python stack has entries (the native walk
stopped early, e.g. frame-pointer walking through a CPython built without frame pointers), the
Python frames left over go below (rootward of) the native frames, so no Python frame is lost;
the caller counts that as a partial merge.
"""

from __future__ import annotations

from collections.abc import Sequence

from profiler.model import Frame

EVAL_FRAME = "_PyEval_EvalFrameDefault"


def merge(native: Sequence[Frame], python: Sequence[Frame], entries: Sequence[bool],
          eval_name: str = EVAL_FRAME) -> tuple[list[Frame], bool]:
    """(merged stack leaf first, complete) from the native user stack (leaf first, symbolized)
    and the Python frames (innermost first) with their `is_entry` flags.

    complete is False when Python frames were left over after the last native eval frame."""
    out: list[Frame] = []
    i = 0
    n = len(python)
    for frame in native:
        if frame.function != eval_name or i >= n:
            out.append(frame)
            continue
        while i < n:  # this eval call's frames: up to and including its entry frame
            out.append(python[i])
            i += 1
            if entries[i - 1]:
                break
    complete = i >= n
    out.extend(python[i:])
    return out, complete
