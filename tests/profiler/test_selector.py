"""Selector parser: ground-truth parses, precise errors, and hypothesis robustness/round-trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiler.errors import SelectorError
from profiler.selector import Matcher, Selector, parse_selector


def test_full_selector() -> None:
    sel = parse_selector('cpu{service="api", host=~"web-.*", process!="java"}')
    assert sel.profile_type == "cpu"
    assert [(m.name, m.op, m.value) for m in sel.matchers] == [
        ("service", "=", "api"), ("host", "=~", "web-.*"), ("process", "!=", "java")]
    assert sel.matches({"service": "api", "host": "web-3", "process": "python"})
    assert not sel.matches({"service": "api", "host": "xweb-3", "process": "python"})
    assert not sel.matches({"service": "api", "host": "web-3", "process": "java"})


def test_optional_parts_whitespace_trailing_comma_escapes() -> None:
    assert parse_selector("cpu") == Selector("cpu", ())
    assert parse_selector("  {  }  ") == Selector("", ())
    sel = parse_selector(' offcpu { a = "x\\"y\\\\z\\n" , } ')
    assert sel.matchers[0].value == 'x"y\\z\n'
    assert parse_selector(str(sel)) == sel


def test_regex_fully_anchored() -> None:
    m = parse_selector('{host=~"web"}').matchers[0]
    assert m.matches("web") and not m.matches("web-1") and not m.matches("aweb")
    assert Matcher("h", "!~", "a|b").matches("ab")
    assert not Matcher("h", "!~", "a|b").matches("a")


@pytest.mark.parametrize("text,pos,expected", [
    ('cpu{service "api"}', 12, "'=', '!='"),
    ('cpu{1a="x"}', 4, "label name"),
    ('cpu{a="x"', 9, "',' or '}'"),
    ('cpu{a="x}', 6, "closing"),
    ('cpu{a=~"("}', 7, "regular expression"),
    ('cpu{a="x"} junk', 11, "end of input"),
])
def test_errors_give_position_and_expectation(text: str, pos: int, expected: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(text)
    assert info.value.position == pos
    assert expected in str(info.value)


def test_limits() -> None:
    with pytest.raises(SelectorError):
        parse_selector("cpu{" + 'a="' + "x" * 5000 + '"}')
    with pytest.raises(SelectorError):
        parse_selector("{" + ",".join(f'a{i}="x"' for i in range(100)) + "}")


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('cpu{}=!~",\\ a_b1.*()[]\n')), max_size=40) | st.text(max_size=40))
def test_arbitrary_text_raises_only_selector_error(text: str) -> None:
    try:
        sel = parse_selector(text)
    except SelectorError:
        return
    assert parse_selector(str(sel)) == sel


names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.just(""), names),
       st.lists(st.tuples(names, st.sampled_from(["=", "!="]), st.text(max_size=12)), max_size=5))
def test_str_round_trips(ptype: str, items: list[tuple[str, str, str]]) -> None:
    sel = Selector(ptype, tuple(Matcher(n, o, v) for n, o, v in items))
    again = parse_selector(str(sel))
    assert again == sel
    assert str(again) == str(sel)


def test_regex_that_python_warns_about_still_parses() -> None:
    m = parse_selector('{a=~"[[x]"}').matchers[0]  # one set holding "[" and "x"
    assert m.matches("x") and m.matches("[") and not m.matches("[x")


# Backtracking `re` needs minutes for each of these against 1,024 `a`s (issue 15, point 1); RE2 is
# linear in the value. pytest-timeout turns a regression into a failure rather than a hung suite.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("pattern", ["(a+)+b", "(.*a){25}", "(a|a)*b", "(a*)*b", "((a+)+)+c", "(a|aa)+$b"])
def test_pathological_regex_is_linear(pattern: str) -> None:
    value = "a" * 1024
    m = parse_selector(f'cpu{{l=~"{pattern}"}}').matchers[0]
    hit = m.matches(value)
    assert hit == (pattern == "(.*a){25}")
    assert parse_selector(f'cpu{{l!~"{pattern}"}}').matchers[0].matches(value) is not hit


@pytest.mark.parametrize(("pattern", "construct"), [
    ("(a)\\\\1", "backreferences"), ("(?P<n>a)(?P=n)", "backreferences"), ("a(?=b)", "lookahead"),
    ("a(?!b)", "lookahead"), ("(?<=a)b", "lookbehind"), ("(?<!a)b", "lookbehind"), ("(?>a)", "atomic groups"),
    ("a++", "possessive"), ("(a)?(?(1)b|c)", "conditionals"), ("a\\\\Z", "\\Z"), ("a{1001}", "over 1000"),
])
def test_unsupported_regex_syntax_is_named(pattern: str, construct: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(f'cpu{{l=~"{pattern}"}}')
    assert "RE2" in str(info.value) and construct in str(info.value)
    assert info.value.position == 7


def test_regex_values_beyond_ascii() -> None:
    m = parse_selector('{a=~"é.+"}').matchers[0]
    assert m.matches("éèx") and not m.matches("é")
    assert parse_selector('{a=~".*"}').matchers[0].matches("\ud800x")  # a lone surrogate matches, no error
    assert parse_selector('{a=~"a.b"}').matchers[0].matches("a\nb")  # `.` matches newlines (Prometheus (?s))
