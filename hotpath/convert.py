"""`hotpath convert IN OUT`: pprof <-> folded stacks, by file extension (placeholder)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `convert` to the `hotpath` parser."""
