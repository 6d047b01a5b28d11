"""Vectorized numpy helpers shared by the columnar pprof reader and the flame-tree builder."""

from __future__ import annotations

import numpy as np


def ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of `arange(lo[i], hi[i])` for all i, without a Python loop."""
    counts = hi - lo
    keep = counts > 0
    lo, counts = lo[keep], counts[keep]
    if lo.size == 0:
        return np.zeros(0, dtype=np.int64)
    step = np.ones(int(counts.sum()), dtype=np.int64)
    heads = np.cumsum(counts)[:-1]
    step[0] = lo[0]
    step[heads] = lo[1:] - (lo[:-1] + counts[:-1] - 1)
    return np.cumsum(step)
