"""What every subcommand module shares with the `hotpath` CLI: its error and its argument converters.

Kept apart from `hotpath/cli.py`, which imports the subcommand modules to register them: importing
these back from there would knot every subcommand to the whole command tree.
"""

from __future__ import annotations

import argparse


class CommandError(Exception):
    """A user-facing failure: printed as `hotpath: error: ...` with exit status 2 (or `code`)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def positive_int(text: str) -> int:
    """argparse `type=` for counts and sizes: a clear message instead of a traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
