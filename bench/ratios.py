"""Same-run ratios for the benchmarks on this shared VM, where a run's time drifts by 10-25 %
over minutes and jumps ~4 % between neighbouring runs: each measured run is divided by the mean of
the baseline runs just before and just after it (drift cancels), and the median of those ratios
is printed with a 95 % confidence interval, so a reader sees whether a target is met or merely
within the noise."""

from __future__ import annotations

import math
import statistics


def sandwiched(runs: list[float], bases: list[float]) -> list[float]:
    """runs[i] / mean(bases[i], bases[i + 1]): each run sits between two baseline runs."""
    return [r / ((b0 + b1) / 2) for r, b0, b1 in zip(runs, bases, bases[1:])]


def median_ci(values: list[float]) -> tuple[float, float]:
    """Distribution-free 95 % confidence interval of the median (binomial order statistics)."""
    xs = sorted(values)
    n = len(xs)
    k = max(0, math.floor(n / 2 - 0.98 * math.sqrt(n)))
    return xs[k], xs[n - 1 - k]


def describe(ratios: list[float]) -> str:
    """'x1.034 (+3.4 %), 95 % CI +1.9..+4.8 %, n=40'."""
    med = statistics.median(ratios)
    lo, hi = median_ci(ratios)
    return (f"x{med:.3f} ({(med - 1) * 100:+.1f} %), 95 % CI {(lo - 1) * 100:+.1f}..{(hi - 1) * 100:+.1f} %, "
            f"n={len(ratios)}")
