"""The 3.11 location-table decoder against CPython's own co_positions() over real code."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Iterator

import pytest

from collector.python.linetable import decode, line_at, line_for


def _codes(co: types.CodeType) -> Iterator[types.CodeType]:
    todo = [co]
    while todo:
        c = todo.pop()
        yield c
        todo.extend(k for k in c.co_consts if isinstance(k, types.CodeType))


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="this decoder's oracle is the running 3.11")
@pytest.mark.parametrize("module", ["json.decoder", "argparse", "dataclasses", "asyncio.base_events"])
def test_every_instruction_line_matches_co_positions(module: str) -> None:
    mod = importlib.import_module(module)
    with open(mod.__file__, encoding="utf-8") as fh:
        top = compile(fh.read(), mod.__file__, "exec")
    checked = 0
    for co in _codes(top):
        ends, lines = decode(co.co_linetable, co.co_firstlineno)
        for unit, (line, *_cols) in enumerate(co.co_positions()):
            assert line_for(co.co_linetable, co.co_firstlineno, unit) == (line or 0), (co, unit)
            assert line_at(ends, lines, co.co_firstlineno, unit) == (line or 0), (co, unit)
            checked += 1
    assert checked > 1000


def test_edges() -> None:
    def f() -> int:
        return 1

    co = f.__code__
    assert line_for(co.co_linetable, co.co_firstlineno, -1) == co.co_firstlineno
    units = len(co.co_code) // 2
    assert line_for(co.co_linetable, co.co_firstlineno, units + 5) == 0  # past the end: no line
    assert line_for(b"\x05\x06", 10, 0) == 0  # corrupt (no entry start): no line, not a wrong one
    assert line_for(b"", 10, 0) == 0
    assert line_at(*decode(b"\x05\x06", 10), 10, 0) == 0 and line_at(*decode(b"", 10), 10, 0) == 0
