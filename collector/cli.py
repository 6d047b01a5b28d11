"""`hotpath collector` (the always-on agent) and `hotpath record` (a one-shot local capture).

Cheap to import: BCC and the agent load only when a command runs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from hotpath.command import CommandError, positive_int

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s)?\s*$")

COLLECTOR_EPILOG = """examples:
  hotpath collector --server https://hotpath:8080 --token-file /etc/hotpath/token
  hotpath collector --server http://127.0.0.1:8080 --token-file t --frequency 99 --interval 5s
  hotpath collector --server URL --token-file t --no-offcpu --pid 1234 --pid 5678
"""
RECORD_EPILOG = """examples:
  hotpath record --duration 10 -o cpu.pb.gz          # all processes, 99 Hz
  hotpath record --type offcpu --pid 1234 -o off.pb.gz
  hotpath record --duration 5s --folded -o out.folded  # for flamegraph.pl
"""


def duration(text: str) -> float:
    """`10s`, `500ms`, `2m`, `1h` or a bare number of seconds -> seconds (> 0)."""
    m = _DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 10s, 500ms, 2m")
    return float(m.group(1)) * _UNITS[m.group(2)]


def min_block(text: str) -> int:
    """`1ms`, `500us`, `0` -> nanoseconds (>= 0)."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid time {text!r}: use e.g. 1ms, 500us")
    scale = {"us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, None: 1_000_000}[m.group(2)]
    return int(float(m.group(1)) * scale)


def frequency(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid frequency {text!r}: an integer 1..1000 (Hz)") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"frequency {value} out of range: 1..1000 Hz")
    return value


def _label(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", name):
        raise argparse.ArgumentTypeError(f"invalid label {text!r}: use name=value")
    return name, value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `collector` and `record` to the `hotpath` parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("collector", help="run the always-on BPF collector and ship to a server",
                              epilog=COLLECTOR_EPILOG, formatter_class=fmt)
    p.add_argument("--server", required=True, help="server base URL, e.g. http://hotpath:8080")
    p.add_argument("--token-file", required=True, help="file holding an ingest token")
    p.add_argument("--frequency", type=frequency, default=19, help="on-CPU samples per second (1-1000)")
    p.add_argument("--interval", type=duration, default=10.0, help="batch interval (default 10s)")
    p.add_argument("--no-offcpu", action="store_true", help="disable off-CPU (sched_switch) profiling")
    p.add_argument("--min-block", type=min_block, default=1_000_000,
                   help="shortest off-CPU span recorded (default 1ms)")
    p.add_argument("--offcpu-kernel-stacks", action="store_true",
                   help="also take kernel stacks at each switch-out (costs ~1 us per context switch)")
    p.add_argument("--service", default="", help="service label (default: the host name)")
    p.add_argument("--host", default="", help="host label (default: the host name)")
    p.add_argument("--label", type=_label, action="append", default=[], help="extra series label name=value")
    p.add_argument("--pid", type=positive_int, action="append", default=[], help="only these processes")
    p.add_argument("--spool-dir", default="/var/lib/hotpath/spool", help="on-disk queue directory")
    p.add_argument("--spool-max-mb", type=positive_int, default=100, help="spool bound in MiB")
    p.add_argument("--metrics-addr", default="", help="serve Prometheus metrics on HOST:PORT")
    p.add_argument("--no-unwind", action="store_true",
                   help="user stacks by frame pointer only (no .eh_frame tables in the kernel)")
    p.add_argument("--unwind-rows", type=positive_int, default=1 << 22,
                   help="unwind table rows in the kernel, all binaries together (12 B each, allocated "
                        "at load; default 4194304 = 48 MiB); tables that do not fit are counted")
    p.add_argument("--unwind-procs", type=positive_int, default=1024,
                   help="processes with a mapping table in the kernel (8 KiB each, as used); more are "
                        "counted and walked by frame pointer")
    p.add_argument("--stack-entries", type=positive_int, default=32768,
                   help="unique stacks per stack-map generation (two maps, ~1.1 KiB a stack, as used); "
                        "a generation is recycled before its measured rate could fill it")
    p.add_argument("--perf-map-max-mb", type=positive_int, default=32,
                   help="largest /tmp/perf-PID.map read, in MiB (larger ones are refused and counted)")
    p.set_defaults(func=run_collector)

    r = subparsers.add_parser("record", help="capture a profile locally, like perf record",
                              epilog=RECORD_EPILOG, formatter_class=fmt)
    r.add_argument("--duration", type=duration, default=30.0, help="how long (default 30s)")
    r.add_argument("--frequency", type=frequency, default=99, help="samples per second (1-1000)")
    r.add_argument("--type", choices=("cpu", "offcpu"), default="cpu")
    r.add_argument("--min-block", type=min_block, default=1_000_000, help="shortest off-CPU span")
    r.add_argument("--offcpu-kernel-stacks", action="store_true", help="kernel stacks for off-CPU too")
    r.add_argument("--pid", type=positive_int, action="append", default=[], help="only these processes")
    r.add_argument("--folded", action="store_true", help="write folded stacks instead of pprof")
    r.add_argument("-o", "--output", required=True, help="output file (pprof .pb.gz, or folded text)")
    r.set_defaults(func=run_record)


def _loader_error(exc: Exception) -> Exception:

    return CommandError(str(exc))


def run_collector(args: argparse.Namespace) -> int:
    from collector.agent import AgentConfig, run_agent
    from collector.bpf_loader import LoaderError
    from collector.spool import SpoolError, secure_dir

    try:
        token = Path(args.token_file).read_text().strip()
    except OSError as exc:
        raise CommandError(f"cannot read --token-file {args.token_file}: {exc.strerror}") from None
    if not token:
        raise CommandError(f"--token-file {args.token_file} is empty")
    if not re.match(r"^https?://[^/\s]+", args.server):
        raise CommandError(f"--server {args.server!r} must be an http:// or https:// URL")
    config = AgentConfig(server=args.server, token=token, frequency=args.frequency,
                         interval_s=args.interval, offcpu=not args.no_offcpu, min_block_ns=args.min_block,
                         offcpu_kernel_stacks=args.offcpu_kernel_stacks,
                         service=args.service, host=args.host, pids=tuple(args.pid),
                         spool_dir=args.spool_dir, spool_max_bytes=args.spool_max_mb * 1024 * 1024,
                         metrics_addr=args.metrics_addr, extra_labels=dict(args.label),
                         perf_map_max_bytes=args.perf_map_max_mb * 1024 * 1024,
                         unwind=not args.no_unwind, unwind_rows=args.unwind_rows, unwind_procs=args.unwind_procs,
                         stack_entries=args.stack_entries)
    try:
        secure_dir(Path(config.spool_dir))  # before BPF loads: a bad --spool-dir fails at once
    except SpoolError as exc:
        raise CommandError(f"--spool-dir: {exc}") from None
    try:
        return run_agent(config)
    except LoaderError as exc:
        raise _loader_error(exc) from None


def run_record(args: argparse.Namespace) -> int:
    from collector.record import record

    return record(args.duration, args.frequency, args.type, args.pid, args.output, args.folded,
                  args.min_block, out=sys.stderr, offcpu_kernel_stacks=args.offcpu_kernel_stacks)
