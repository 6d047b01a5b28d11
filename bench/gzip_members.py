"""Gzip member bombs: `profiler.gunzip` must cost time linear in the body, however it is split.

Baseline: one gzip member of 8 MiB of incompressible bytes (about 8 MiB in, 8 MiB out). Measured:
8 MiB made of 419,430 empty members (the issue-15 bomb), inflated with the member cap lifted, and
the same body with the default cap (refused after 1,024 members). Printed as same-run ratios
(bench/ratios.py): linear decoding keeps the uncapped bomb within a small factor of the baseline;
the old loop copied the rest of the body once per member (minutes for this body).

    .venv/bin/python bench/gzip_members.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ratios import describe, sandwiched

from profiler.gunzip import GzipTooLarge, gunzip


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    single = gzip.compress(os.urandom(8 * 1024 * 1024 - 32), 1)
    bomb = gzip.compress(b"", mtime=0) * 419_430
    half = bomb[:len(bomb) // 2]
    print(f"baseline body {len(single)} bytes (1 member); bomb body {len(bomb)} bytes (419,430 members)")

    def capped() -> None:
        try:
            gunzip(bomb, 64 << 20)
        except GzipTooLarge:
            return
        raise AssertionError("the member cap did not fire")

    bases, uncapped, halved, refused = [], [], [], []
    bases.append(timed(lambda: gunzip(single, 64 << 20)))
    for _ in range(args.rounds):
        uncapped.append(timed(lambda: gunzip(bomb, 64 << 20, max_members=10**9)))
        halved.append(timed(lambda: gunzip(half, 64 << 20, max_members=10**9)))
        refused.append(timed(capped))
        bases.append(timed(lambda: gunzip(single, 64 << 20)))
    print(f"baseline one member: median {sorted(bases)[len(bases) // 2] * 1000:.1f} ms")
    print(f"419,430 members, no cap: {describe(sandwiched(uncapped, bases))} of baseline, "
          f"median {sorted(uncapped)[len(uncapped) // 2] * 1000:.0f} ms")
    print(f"209,715 members, no cap: {describe(sandwiched(halved, bases))} of baseline "
          "(linear: half of the line above)")
    print(f"419,430 members, default cap (413 after 1,024): {describe(sandwiched(refused, bases))} of baseline, "
          f"median {sorted(refused)[len(refused) // 2] * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
