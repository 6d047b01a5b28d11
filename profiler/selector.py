"""Label selectors such as `cpu{service="api", host=~"web-.*"}`: parse, match, render canonically.

Prometheus semantics (anchored regexes, `= != =~ !~`) so users' habits carry over; errors give the
0-based position and what was expected so the UI can point at the mistake.

Regexes are RE2 (the `google-re2` package), as in Prometheus: matching runs in time linear in the
value whatever the pattern, so a selector cannot hold a worker (Python's backtracking `re` needs
minutes for `(a+)+b` against 1,024 `a`s). The price is the syntax RE2 leaves out (`RE2_UNSUPPORTED`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import re2

from profiler.errors import SelectorError

MAX_LENGTH = 4096
MAX_MATCHERS = 64
OPS = ("=", "!=", "=~", "!~")
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")  # a profile type
# The one rule for label names, used by ingest (every protocol), the label APIs and this parser: what
# ingest stores must be selectable. Dots are allowed because OpenTelemetry-style keys
# (`k8s.namespace.name`) arrive on the native /api/v1/ingest as they are.
LABEL_NAME_CHARS = "[A-Za-z_][A-Za-z0-9_.]*"
LABEL_NAME = re.compile(LABEL_NAME_CHARS)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
_OPS_EXPECTED = "one of '=', '!=', '=~', '!~'"
REGEX_MAX_MEM = 8 << 20  # RE2's compile budget per pattern: a bigger program is refused, not built
RE2_UNSUPPORTED = ("selector regexes use RE2 syntax, which matches in linear time and has no backreferences "
                   "(\\1, (?P=name)), lookahead or lookbehind ((?=, (?!, (?<=, (?<!), atomic groups (?>...), "
                   "possessive quantifiers (a*+, a++), conditionals (?(1)...), \\Z or \\G (use $ or \\z), "
                   "nor repetition counts over 1000")


@dataclass(frozen=True)
class Matcher:
    """One `name op "value"` condition; regex ops hold the compiled, fully anchored pattern."""

    name: str
    op: str
    value: str
    regex: FullMatch | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise SelectorError(f"unknown operator {self.op!r}", 0, _OPS_EXPECTED)
        if self.op in ("=~", "!~") and self.regex is None:
            object.__setattr__(self, "regex", _compile(self.value, 0))

    def matches(self, value: str) -> bool:
        """Does a label value satisfy this matcher? (a missing label is the empty string)."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(value)
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{_quote(self.value)}"


@dataclass(frozen=True)
class Selector:
    """A profile type (may be "") plus matchers that must all hold."""

    profile_type: str
    matchers: tuple[Matcher, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels.get(m.name, "")) for m in self.matchers)

    def __str__(self) -> str:
        return self.profile_type + "{" + ", ".join(str(m) for m in self.matchers) + "}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") + '"'


def _re2_options() -> Any:
    options = re2.Options()
    options.dot_nl = True  # `.` matches a newline too, as Prometheus's (?s) does
    options.max_mem = REGEX_MAX_MEM
    options.never_capture = True  # only yes/no is asked: no submatch bookkeeping
    options.log_errors = False  # the error goes to the client, not to the server's stderr
    return options


_OPTIONS = _re2_options()
_BOTH = getattr(getattr(re2, "_Anchor", None), "ANCHOR_BOTH", None)


class FullMatch:
    """An RE2 pattern asked only whether it matches a whole value.

    `re2`'s Python-level `fullmatch` builds a match object and maps byte offsets back to characters
    (~10 us a call); a selector scanning 10k label values asks the C++ matcher directly (~3 us),
    falling back to the public API if a future `google-re2` moves it.
    """

    __slots__ = ("_direct", "_pattern")

    def __init__(self, pattern: Any) -> None:
        self._pattern = pattern
        raw = getattr(pattern, "_regexp", None)
        self._direct = raw.Match if _BOTH is not None and hasattr(raw, "Match") else None

    def fullmatch(self, value: str) -> bool:
        data = value.encode("utf-8", "surrogatepass")  # RE2 reads UTF-8; a lone surrogate stays unmatched bytes
        if self._direct is not None:
            return self._direct(_BOTH, data, 0, len(data))[0][0] >= 0
        try:
            return self._pattern.fullmatch(value) is not None
        except UnicodeEncodeError:
            return self._pattern.fullmatch(data.decode("utf-8", "replace")) is not None


def _compile(pattern: str, position: int) -> FullMatch:
    """The pattern compiled by RE2, matched against whole values (anchored at both ends)."""
    try:
        return FullMatch(re2.compile(f"(?:{pattern})", _OPTIONS))
    except UnicodeEncodeError:
        raise SelectorError("invalid regular expression (not valid Unicode: a lone surrogate)", position,
                            "a valid RE2 regular expression") from None
    except (re2.error, ValueError, TypeError, OverflowError) as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise SelectorError(f"invalid regular expression ({detail}); {RE2_UNSUPPORTED}", position,
                            "a valid RE2 regular expression") from None


class _Parser:
    """A hand-written scanner: the grammar is tiny and errors need exact positions."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def fail(self, what: str, expected: str) -> SelectorError:
        return SelectorError(what, self.pos, expected)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def name(self, expected: str, pattern: re.Pattern[str] = _NAME) -> str:
        m = pattern.match(self.text, self.pos)
        if not m:
            got = repr(self.peek()) if self.peek() else "end of input"
            raise self.fail(f"unexpected {got}", expected)
        self.pos = m.end()
        return m.group(0)

    def op(self) -> str:
        two = self.text[self.pos:self.pos + 2]
        if two in ("!=", "=~", "!~"):
            self.pos += 2
            return two
        if self.peek() == "=":
            self.pos += 1
            return "="
        got = repr(self.peek()) if self.peek() else "end of input"
        raise self.fail(f"unexpected {got}", _OPS_EXPECTED)

    def string(self) -> str:
        if self.peek() != '"':
            got = repr(self.peek()) if self.peek() else "end of input"
            raise self.fail(f"unexpected {got}", 'a double-quoted value')
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                self.pos = start
                raise self.fail("unterminated string", 'a closing \'"\'')
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                esc = self.text[self.pos + 1:self.pos + 2]
                if esc not in _ESCAPES:
                    raise self.fail("invalid escape", "one of '\\\"', '\\\\', '\\n', '\\t'")
                out.append(_ESCAPES[esc])
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1


def parse_selector(text: str) -> Selector:
    """Parse `type{name op "value", ...}` (type: `cpu` or `memory:inuse_space`); type and braces optional;
    raises only `SelectorError`."""
    if not isinstance(text, str):
        raise SelectorError("selector must be a string", 0, "text")
    if len(text) > MAX_LENGTH:
        raise SelectorError(f"selector longer than {MAX_LENGTH} characters", MAX_LENGTH, "a shorter selector")
    p = _Parser(text)
    p.skip_ws()
    profile_type = ""
    if _NAME.match(text, p.pos):
        profile_type = p.name("a profile type")
        if p.peek() == ":":  # `memory:inuse_space`: a profile name and one of its sample types
            p.pos += 1
            profile_type += ":" + p.name("a sample type after ':'")
        p.skip_ws()
    matchers: list[Matcher] = []
    if p.peek() == "{":
        p.pos += 1
        while True:
            p.skip_ws()
            if p.peek() == "}":
                p.pos += 1
                break
            if len(matchers) >= MAX_MATCHERS:
                raise p.fail(f"more than {MAX_MATCHERS} matchers", "'}'")
            name = p.name("a label name or '}'", LABEL_NAME)
            p.skip_ws()
            op = p.op()
            p.skip_ws()
            value_pos = p.pos
            value = p.string()
            regex = _compile(value, value_pos) if op in ("=~", "!~") else None
            matchers.append(Matcher(name, op, value, regex))
            p.skip_ws()
            if p.peek() == ",":
                p.pos += 1
                continue
            if p.peek() == "}":
                p.pos += 1
                break
            got = repr(p.peek()) if p.peek() else "end of input"
            raise p.fail(f"unexpected {got}", "',' or '}'")
        p.skip_ws()
    if p.pos != len(text):
        raise p.fail(f"unexpected {p.peek()!r}", "'{' or end of input" if not matchers and text[:p.pos].strip()
                     == profile_type else "end of input")
    return Selector(profile_type, tuple(matchers))
