"""Subcommands owned by this package (placeholder until the package lands)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands to the `hotpath` parser."""
