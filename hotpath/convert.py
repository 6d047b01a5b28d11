"""`hotpath convert IN OUT [--type NAME]`: pprof <-> folded stacks, chosen by file extension.

pprof: `.pb.gz`, `.pb`, `.pprof`; folded: `.folded`, `.txt`. Bad input becomes a `CommandError`
(`hotpath: error: ...`, exit 2) rather than a traceback.
"""

from __future__ import annotations

import argparse
import sys

from hotpath.command import CommandError
from profiler import folded, pprof
from profiler.errors import ProfileError
from profiler.model import Profile, Sample

PPROF_EXT = (".pb.gz", ".pb", ".pprof")
FOLDED_EXT = (".folded", ".txt")


def _format(path: str) -> str:
    low = path.lower()
    if low.endswith(PPROF_EXT):
        return "pprof"
    if low.endswith(FOLDED_EXT):
        return "folded"
    raise CommandError(
        f"{path}: unknown extension (pprof: {', '.join(PPROF_EXT)}; folded: {', '.join(FOLDED_EXT)})"
    )


def _pick(profile: Profile, type_name: str | None) -> int:
    """Index of the sample type to use: --type, else default_sample_type, else the last one."""
    names = [vt.type for vt in profile.sample_types]
    if not names:
        raise CommandError("profile has no sample types")
    if type_name:
        if type_name not in names:
            raise CommandError(f"no sample type {type_name!r} in profile (has: {', '.join(names)})")
        return names.index(type_name)
    if profile.default_sample_type in names:
        return names.index(profile.default_sample_type)
    return len(names) - 1


def run(args: argparse.Namespace) -> int:
    src_fmt, dst_fmt = _format(args.input), _format(args.output)
    try:
        with open(args.input, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise CommandError(f"cannot read {args.input}: {exc.strerror or exc}") from None
    try:
        if src_fmt == "pprof":
            profile = pprof.decode(data)
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CommandError(f"{args.input}: not UTF-8 text (byte {exc.start})") from None
            parsed = folded.parse(text)
            for lineno, reason in parsed.bad_lines[:5]:
                print(f"hotpath: warning: {args.input}:{lineno}: {reason}", file=sys.stderr)
            if parsed.bad_lines:
                print(f"hotpath: warning: {len(parsed.bad_lines)} bad line(s) skipped", file=sys.stderr)
            profile = parsed.profile
    except ProfileError as exc:
        raise CommandError(f"{args.input}: {exc}") from None
    idx = _pick(profile, args.type)
    if dst_fmt == "folded":
        out = folded.render(profile, idx).encode()
    else:
        if len(profile.sample_types) > 1:  # keep only the chosen type
            profile = Profile(
                sample_types=(profile.sample_types[idx],),
                samples=[Sample(s.stack, (s.values[idx],), s.labels) for s in profile.samples],
                period_type=profile.period_type, period=profile.period,
                time_nanos=profile.time_nanos, duration_nanos=profile.duration_nanos,
                default_sample_type=profile.sample_types[idx].type,
                counters=profile.counters, comments=profile.comments,
            )
        out = pprof.encode(profile, compress=args.output.lower().endswith(".gz"))
    try:
        with open(args.output, "wb") as fh:
            fh.write(out)
    except OSError as exc:
        raise CommandError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `convert` to the `hotpath` parser."""
    p = subparsers.add_parser("convert", help="convert between pprof (.pb.gz/.pb/.pprof) and folded (.folded/.txt)")
    p.add_argument("input", help="input file")
    p.add_argument("output", help="output file")
    p.add_argument("--type", help="sample type to use when a pprof holds several (e.g. cpu, samples)")
    p.set_defaults(func=run)
