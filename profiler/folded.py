"""Folded stacks (`a;b;c 42`, Brendan Gregg's flamegraph.pl input): parse and render.

Parsing is tolerant (CRLF, trailing spaces, blank lines, `#` comments) and counts bad lines
instead of failing on the first, so one corrupt line never drops a whole upload silently.
Kernel frames are suffixed `_[k]` as flamegraph.pl does; parse turns them back into kernel frames.
A root frame whose name starts with `#` or `\\` is rendered with a `\\` in front (parse strips it), so
a frame named `#x` is never read back as a comment line and silently lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from profiler.errors import FoldedError
from profiler.model import Frame, FrameKind, Profile, Sample, ValueType
from profiler.types import SAMPLES_COUNT

KERNEL_SUFFIX = "_[k]"
EMPTY_STACK = "[no stack]"


@dataclass
class FoldedParse:
    """The parsed profile plus every rejected line as (1-based line number, reason)."""

    profile: Profile
    bad_lines: list[tuple[int, str]] = field(default_factory=list)


def parse(text: str, sample_type: ValueType = SAMPLES_COUNT) -> FoldedParse:
    """Parse folded text; raises `FoldedError` only when no line is usable."""
    if not isinstance(text, str):
        raise FoldedError(f"expected text, got {type(text).__name__}")
    frames: dict[str, Frame] = {}
    merged: dict[tuple[Frame, ...], int] = {}
    bad: list[tuple[int, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        stack_text, sep, count_text = line.rpartition(" ")
        stack_text = stack_text.rstrip()
        if not sep or not stack_text:
            bad.append((lineno, "missing count after the stack"))
            continue
        if not count_text.isascii() or not count_text.isdigit():
            bad.append((lineno, f"count {count_text[:40]!r} is not a non-negative integer"))
            continue
        names = stack_text.split(";")
        if names[0][:2] in ("\\#", "\\\\"):
            names[0] = names[0][1:]
        if any(not n for n in names):
            bad.append((lineno, "empty frame name"))
            continue
        stack = []
        for name in names:
            fr = frames.get(name)
            if fr is None:
                if name.endswith(KERNEL_SUFFIX) and len(name) > len(KERNEL_SUFFIX):
                    fr = Frame(name[: -len(KERNEL_SUFFIX)], kind=FrameKind.KERNEL)
                else:
                    fr = Frame(name)
                frames[name] = fr
            stack.append(fr)
        key = tuple(stack)
        merged[key] = merged.get(key, 0) + int(count_text)
    if not merged:
        detail = f"; first bad line {bad[0][0]}: {bad[0][1]}" if bad else ""
        raise FoldedError(f"no usable folded-stack line ({len(bad)} bad){detail}")
    profile = Profile(sample_types=(sample_type,), default_sample_type=sample_type.type)
    profile.samples = [Sample(stack, (value,)) for stack, value in merged.items()]
    if bad:
        profile.counters["folded_bad_lines"] = len(bad)
    return FoldedParse(profile, bad)


def _name(fr: Frame) -> str:
    # `;` separates frames and a trailing space would be read as the count separator
    name = fr.function.replace(";", ":").replace("\n", " ").replace("\r", " ") or "?"
    return name + KERNEL_SUFFIX if fr.kind is FrameKind.KERNEL else name


def render(profile: Profile, value_index: int = 0) -> str:
    """Render `a;b;c 42` lines (root first), merging equal stacks; zero-value stacks are omitted."""
    if profile.sample_types and not 0 <= value_index < len(profile.sample_types):
        raise IndexError(f"value_index {value_index} out of range")
    totals: dict[tuple[Frame, ...], int] = {}
    for smp in profile.samples:
        totals[smp.stack] = totals.get(smp.stack, 0) + smp.values[value_index]
    cache: dict[Frame, str] = {}
    lines = []
    for stack, value in totals.items():
        if value == 0:
            continue
        if not stack:  # keep the value visible rather than dropping it
            lines.append(f"{EMPTY_STACK} {value}\n")
            continue
        parts = []
        for fr in stack:
            text = cache.get(fr)
            if text is None:
                text = cache[fr] = _name(fr)
            parts.append(text)
        if parts[0][:1] in ("#", "\\"):
            parts[0] = "\\" + parts[0]
        lines.append(f"{';'.join(parts)} {value}\n")
    return "".join(lines)
