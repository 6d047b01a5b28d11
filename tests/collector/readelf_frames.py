"""`readelf --debug-dump=frames-interp` (binutils) parsed: the independent oracle for unwind tables.

readelf prints, per CIE and FDE, the interpreted rule table: a `LOC CFA <regs...> ra` header and one
line per row (`rsp+8`, `rbp+16`, `exp`; `c-16` = saved at CFA-16, `u` = undefined or never set,
`s` = same value, `r<N>`/`v…`/`exp` for the rest). FDEs whose instructions are all nops print no
table: their rows are their CIE's.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

_SECTION = re.compile(r"^Contents of the (\.\S+) section")
_CIE = re.compile(r'^([0-9a-f]+) [0-9a-f]+ [0-9a-f]+ CIE "([^"]*)"')
_FDE = re.compile(r"^([0-9a-f]+) [0-9a-f]+ [0-9a-f]+ FDE cie=([0-9a-f]+) pc=([0-9a-f]+)\.\.([0-9a-f]+)")
_ROW = re.compile(r"^([0-9a-f]{8,16}) +(\S.*)$")
_CELL = re.compile(r"r\d+ \([^)]*\)|\S+")  # "r10 (r10)": a register rule is one cell


@dataclass(slots=True)
class Record:
    section: str
    offset: int
    augmentation: str = ""  # CIEs
    cie: int = -1  # FDEs: the CIE's offset
    pc_begin: int = 0
    pc_end: int = 0
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)


def parse(text: str) -> tuple[dict[tuple[str, int], Record], list[Record]]:
    """CIEs by (section, offset) and FDEs in print order."""
    cies: dict[tuple[str, int], Record] = {}
    fdes: list[Record] = []
    section = ""
    cur: Record | None = None
    for line in text.splitlines():
        if m := _SECTION.match(line):
            section, cur = m.group(1), None
        elif m := _CIE.match(line):
            cur = Record(section, int(m.group(1), 16), augmentation=m.group(2))
            cies[(section, cur.offset)] = cur
        elif m := _FDE.match(line):
            cur = Record(section, int(m.group(1), 16), cie=int(m.group(2), 16), pc_begin=int(m.group(3), 16),
                         pc_end=int(m.group(4), 16))
            fdes.append(cur)
        elif cur is not None and line.strip().startswith("LOC"):
            cur.columns = line.split()[1:]
        elif cur is not None and (m := _ROW.match(line)) and cur.columns:
            cur.rows.append((int(m.group(1), 16), dict(zip(cur.columns, _CELL.findall(m.group(2)), strict=False))))
        elif not line.strip():
            cur = None if cur is None or cur.rows else cur
    return cies, fdes


def dump(path: str) -> str:
    """readelf's frame tables; its exit status is 1 on e.g. libc.so.6 with nothing on stderr, so
    the output itself is what is checked (a parse with no FDEs fails the test)."""
    return subprocess.run(["readelf", "--debug-dump=frames-interp", path], check=False, capture_output=True,
                          text=True).stdout
