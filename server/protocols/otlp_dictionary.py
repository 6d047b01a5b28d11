"""The shared `ProfilesDictionary` of an OTLP profiles request, resolved for server/protocols/otlp.py:
strings, attributes, functions, mappings and locations each once, and every stack as frame ids
(root first) with numpy, every index checked against its table. Locations, functions and stacks are
read from their columns (otlp_columns), the small tables from the generated classes."""

from __future__ import annotations

from itertools import chain

import numpy as np
from google.protobuf import json_format
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb

from profiler.model import Frame, FrameKind
from server.protocols.otlp_columns import Columns

FRAME_KINDS = {"kernel": FrameKind.KERNEL, "native": FrameKind.NATIVE}
FRAME_TYPE_ATTR = "profile.frame.type"


class Unreadable(Exception):
    """A dictionary entry or sample this request cannot be read by (its Profile is rejected)."""


_FRAMES: dict[tuple, Frame] = {}  # type: ignore[type-arg]  # frames recur across a fleet's requests
_FRAMES_MAX = 1 << 16  # cleared whole when full (as profiler.pprof_columns does)


def _frame(name: str, binary: str, kind: FrameKind, address: int, filename: str, line: int) -> Frame:
    key = (name, binary, kind.value, address, filename, line)  # the enum's own hash is Python-level
    hit = _FRAMES.get(key)
    if hit is None:
        if len(_FRAMES) >= _FRAMES_MAX:
            _FRAMES.clear()
        hit = _FRAMES[key] = Frame(name, binary, kind, address, filename=filename, line=line)
    return hit


class Dictionary:
    """The request's shared tables, resolved lazily (each entry once) and checked index by index."""

    def __init__(self, d: pb.ProfilesDictionary, cols: Columns) -> None:
        self.d = d
        self.cols = cols
        self.strings = list(d.string_table)
        # Plain lists once: element access on numpy arrays is slower than on lists.
        self.n_locations = cols.loc_mapping.size
        self.loc_mapping = cols.loc_mapping.tolist()
        self.loc_address = cols.loc_address.tolist()
        self.loc_nlines = cols.loc_nlines.tolist()
        self.loc_line_start = (np.cumsum(cols.loc_nlines) - cols.loc_nlines).tolist()
        self.line_function = cols.line_function.tolist()
        self.line_line = cols.line_line.tolist()
        self.loc_nattrs = cols.loc_nattrs.tolist()
        self.loc_attr_start = (np.cumsum(cols.loc_nattrs) - cols.loc_nattrs).tolist()
        self.loc_attrs = cols.loc_attrs.tolist()
        self.fn_name = cols.fn_name.tolist()
        self.fn_filename = cols.fn_filename.tolist()
        self.frames: list[Frame] = []
        self._frame_ids: dict[tuple[str, str, str], int] = {}
        self._locations: dict[int, tuple[int, ...]] = {}
        self._attrs: dict[int, tuple[str, str]] = {}
        self._stack_frames: tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]] | None = None
        self._functions: dict[int, tuple[str, str]] = {}
        self._mappings: dict[int, tuple[str, FrameKind]] = {0: ("", FrameKind.UNKNOWN)}

    def string(self, i: int, what: str) -> str:
        if not 0 <= i < len(self.strings):
            raise Unreadable(f"{what} string index {i} is outside string_table ({len(self.strings)} entries)")
        return self.strings[i]

    def attribute(self, i: int) -> tuple[str, str]:
        hit = self._attrs.get(i)
        if hit is None:
            table = self.d.attribute_table
            if not 0 <= i < len(table):
                raise Unreadable(f"attribute index {i} is outside attribute_table ({len(table)} entries)")
            kv = table[i]
            hit = self._attrs[i] = (self.string(kv.key_strindex, "attribute key"), self.value(kv.value))
        return hit

    def value(self, v) -> str:  # type: ignore[no-untyped-def]
        kind = v.WhichOneof("value")
        if kind == "string_value_strindex":
            return self.string(v.string_value_strindex, "attribute value")
        if kind in ("string_value", "int_value", "double_value"):
            return str(getattr(v, kind))
        if kind == "bool_value":
            return "true" if v.bool_value else "false"
        if kind is None:
            return ""
        return json_format.MessageToJson(v, indent=None)

    def function(self, i: int) -> tuple[str, str]:
        hit = self._functions.get(i)
        if hit is None:
            if not 0 <= i < len(self.fn_name):
                raise Unreadable(f"function index {i} is outside function_table")
            hit = self._functions[i] = (self.string(self.fn_name[i], "function name") or "?",
                                        self.string(self.fn_filename[i], "file name"))
        return hit

    def mapping(self, i: int) -> tuple[str, FrameKind]:
        hit = self._mappings.get(i)
        if hit is None:
            if not 0 <= i < len(self.d.mapping_table):
                raise Unreadable(f"mapping index {i} is outside mapping_table")
            binary = self.string(self.d.mapping_table[i].filename_strindex, "mapping filename")
            kind = FrameKind.KERNEL if binary.startswith(("[kernel", "[vmlinux")) else FrameKind.NATIVE
            hit = self._mappings[i] = (binary, kind)
        return hit

    def location(self, i: int) -> tuple[int, ...]:
        """Frame ids of location `i`, root first (its inlined lines reversed: lines[0] is innermost)."""
        hit = self._locations.get(i)
        if hit is not None:
            return hit
        if not 0 <= i < self.n_locations:
            raise Unreadable(f"location index {i} is outside location_table ({self.n_locations} entries)")
        binary, kind = self.mapping(self.loc_mapping[i])
        a0 = self.loc_attr_start[i]
        for a in self.loc_attrs[a0:a0 + self.loc_nattrs[i]]:
            key, value = self.attribute(a)
            if key == FRAME_TYPE_ATTR:
                kind = FRAME_KINDS.get(value, FrameKind.INTERPRETED)
        address = self.loc_address[i]
        l0, nlines = self.loc_line_start[i], self.loc_nlines[i]
        if not nlines:  # unsymbolized: the address, as the pprof codec shows it
            hit = self._locations[i] = (self._frame_id(f"{binary}+0x{address:x}" if binary else f"0x{address:x}",
                                                       binary, kind, address, "", 0),)
            return hit
        ids = []
        for k in range(l0 + nlines - 1, l0 - 1, -1):
            name, filename = self.function(self.line_function[k])
            ids.append(self._frame_id(name, binary, kind, address, filename, self.line_line[k]))
        hit = self._locations[i] = tuple(ids)
        return hit

    def _frame_id(self, name: str, binary: str, kind: FrameKind, address: int, filename: str, line: int) -> int:
        """The request-wide id of a frame, by Frame identity (function, binary, kind); first seen wins."""
        key = (name, binary, kind.value)  # the enum's own hash is Python-level: key by its value
        fid = self._frame_ids.get(key)
        if fid is None:
            fid = self._frame_ids[key] = len(self.frames)
            self.frames.append(_frame(name, binary, kind, address, filename, line))
        return fid

    def stack_frames(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
        """Every stack as frame ids, root first, built once per request with numpy:
        (flat frame ids, each stack's start in them, each stack's depth, {stack index: why unreadable})."""
        if self._stack_frames is not None:
            return self._stack_frames
        bad_locations: dict[int, str] = {}
        per_location = []
        for i in range(self.n_locations):
            try:
                per_location.append(self.location(i))
            except Unreadable as exc:
                bad_locations[i] = str(exc)
                per_location.append(())
        n_locations = len(per_location)
        per_location.append(())  # where invalid references point, so indexing never fails
        loc_len = np.fromiter(map(len, per_location), np.int64, len(per_location))
        loc_start = np.cumsum(loc_len) - loc_len
        loc_flat = np.fromiter(chain.from_iterable(per_location), np.int64, int(loc_len.sum()))
        st_len, st_flat = self.cols.stack_len, self.cols.stack_locations
        n_stacks = st_len.size
        seg = np.repeat(np.arange(n_stacks), st_len)
        invalid = (st_flat < 0) | (st_flat >= n_locations)
        if bad_locations:
            invalid |= np.isin(st_flat, list(bad_locations))
        bad: dict[int, str] = {}
        for k in np.unique(seg[invalid]).tolist():
            loc = int(st_flat[(seg == k) & invalid][0])
            bad[k] = bad_locations.get(loc) or (f"location index {loc} is outside location_table "
                                                f"({n_locations} entries)")
        # pprof order is leaf first: reverse each stack's locations, then expand each to its frames
        st_start = np.cumsum(st_len) - st_len
        pos = np.arange(st_flat.size) - np.repeat(st_start, st_len)
        locs = np.where(invalid, n_locations, st_flat)[np.repeat(st_start + st_len - 1, st_len) - pos]
        counts = loc_len[locs]
        frame_pos = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        flat = loc_flat[np.repeat(loc_start[locs], counts) + frame_pos]
        depth = np.bincount(seg, weights=counts, minlength=n_stacks).astype(np.int64)
        self._stack_frames = (flat, np.cumsum(depth) - depth, depth, bad)
        return self._stack_frames
