"""The `hotpath` command: one argparse tree, each subcommand registered by the package owning it.

Registration modules must stay cheap to import (no BCC, Flask or database at import time) so that
`hotpath --help` is instant and works on a machine without BPF.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hotpath import __version__
from hotpath.command import CommandError

# Modules exposing `register(subparsers)`; each adds its subcommands with `func=` defaults.
COMMAND_MODULES = ("hotpath.convert", "collector.cli", "server.cli")

EPILOG = """examples:
  hotpath up                                   # server on SQLite + local collector, prints UI URL
  hotpath record --duration 10 -o cpu.pb.gz    # one-shot local capture, like perf record
  hotpath convert cpu.pb.gz cpu.folded         # pprof <-> folded stacks
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotpath",
        description="Hotpath: an always-on, fleet-wide continuous profiler (BPF collector, server, web UI).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hotpath {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"hotpath: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
