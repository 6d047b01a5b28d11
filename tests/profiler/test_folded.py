"""Folded stacks: tolerant parsing with counted bad lines, kernel `_[k]` frames, merged rendering."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiler import folded
from profiler.errors import FoldedError
from profiler.model import Frame, FrameKind, Profile, Sample
from profiler.types import CPU_NANOS, SAMPLES_COUNT


def test_parse_tolerates_crlf_spaces_comments_and_counts_bad_lines() -> None:
    text = "# comment\r\nmain;work 3   \r\n\r\nmain;sys_read_[k] 2\nno-count-here\nmain;work 4\na;b x1\n"
    res = folded.parse(text)
    assert res.bad_lines == [(5, "missing count after the stack"), (7, "count 'x1' is not a non-negative integer")]
    assert res.profile.counters["folded_bad_lines"] == 2
    totals = {tuple(f.function for f in s.stack): s.values[0] for s in res.profile.samples}
    assert totals == {("main", "work"): 7, ("main", "sys_read"): 2}
    kernel = next(s for s in res.profile.samples if s.stack[-1].function == "sys_read")
    assert kernel.stack[-1].kind is FrameKind.KERNEL and kernel.stack[0].kind is FrameKind.UNKNOWN


def test_parse_raises_only_when_nothing_usable() -> None:
    with pytest.raises(FoldedError, match="no usable.*first bad line 1"):
        folded.parse("garbage\n;; 3\n")
    with pytest.raises(FoldedError):
        folded.parse("")


def test_render_merges_equal_stacks_and_suffixes_kernel() -> None:
    a, k = Frame("main", "/bin/x", FrameKind.NATIVE), Frame("do_sys", kind=FrameKind.KERNEL)
    p = Profile(sample_types=(SAMPLES_COUNT, CPU_NANOS))
    p.samples = [Sample((a, k), (1, 10)), Sample((a, k), (2, 20), (("pid", "1"),)), Sample((), (1, 5))]
    assert folded.render(p, 1) == "main;do_sys_[k] 30\n[no stack] 5\n"
    back = folded.parse(folded.render(p)).profile
    assert back.samples[0].stack[1] == Frame("do_sys", kind=FrameKind.KERNEL)
    assert back.total() == p.total()


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_arbitrary_text_raises_only_folded_error(text: str) -> None:
    try:
        res = folded.parse(text)
    except FoldedError:
        return
    assert res.profile.samples


frame_names = st.text(st.characters(blacklist_characters=";\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
                                    blacklist_categories=("Zs", "Cc", "Cs")), min_size=1, max_size=8)


@given(st.lists(st.tuples(st.lists(frame_names, min_size=1, max_size=5), st.integers(1, 10**9)), min_size=1,
                max_size=10))
@settings(max_examples=150, deadline=None)
def test_render_parse_round_trip_totals(stacks) -> None:
    # a raw line starting with "#" is a comment; the format's escape for such a root frame is "\\"
    esc = "\\"
    text = "".join(f"{esc if s[0][0] in '#' + esc else ''}{';'.join(s)} {n}\n" for s, n in stacks)
    p = folded.parse(text).profile
    again = folded.parse(folded.render(p)).profile
    assert again.total() == p.total() == sum(n for _, n in stacks)


def test_root_frame_starting_with_hash_or_backslash_round_trips() -> None:
    p = Profile(sample_types=(SAMPLES_COUNT,))
    p.samples = [Sample((Frame("#x"), Frame("#y")), (3,)), Sample((Frame("\\z"),), (4,))]
    text = folded.render(p)
    assert text == "\\#x;#y 3\n\\\\z 4\n"
    back = folded.parse(text).profile
    assert {tuple(f.function for f in s.stack): s.values[0] for s in back.samples} == {("#x", "#y"): 3, ("\\z",): 4}
