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
    key = (name, binary, kind._value_, address, filename, line)  # the enum's own hash is Python-level
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

    def _all_locations(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Every location's frame ids at once (each location's count, then the flat ids), the same
        as `location(i)` for each i in order, with a Python step per distinct frame only; None when
        any index is out of its table (then `location` names it)."""
        c, n = self.cols, self.n_locations
        nstr, nfn, nmap, nattr = len(self.strings), len(self.fn_name), len(self.d.mapping_table), len(self.d.attribute_table)
        if ((c.loc_mapping < 0) | (c.loc_mapping >= nmap)).any() or ((c.loc_attrs < 0) | (c.loc_attrs >= nattr)).any() \
                or ((c.line_function < 0) | (c.line_function >= nfn)).any() \
                or ((c.fn_name < 0) | (c.fn_name >= nstr)).any() or ((c.fn_filename < 0) | (c.fn_filename >= nstr)).any():
            return None
        try:
            # (binary, kind) classes: per mapping, then overridden by a location's frame-type attribute
            classes: dict[tuple[str, FrameKind], int] = {}
            map_ids = np.unique(c.loc_mapping).tolist()
            map_class = np.zeros(max(map_ids, default=0) + 1, np.int64)
            map_binary: dict[int, str] = {}
            for m in map_ids:
                binary, kind = self.mapping(m)
                map_binary[m] = binary
                map_class[m] = classes.setdefault((binary, kind), len(classes))
            loc_class = map_class[c.loc_mapping] if n else np.zeros(0, np.int64)
            if c.loc_attrs.size:
                attr_ids = np.unique(c.loc_attrs).tolist()
                attr_kind = np.full(max(attr_ids) + 1, -1, np.int64)
                kinds = list(FrameKind)
                for a in attr_ids:
                    key, value = self.attribute(a)
                    if key == FRAME_TYPE_ATTR:
                        attr_kind[a] = kinds.index(FRAME_KINDS.get(value, FrameKind.INTERPRETED))
                typed = attr_kind[c.loc_attrs]
                owner = np.repeat(np.arange(n), c.loc_nattrs)[typed >= 0]
                if owner.size:  # the last frame-type attribute of a location wins, as in `location`
                    last = owner.size - 1 - np.unique(owner[::-1], return_index=True)[1]
                    locs, kind_codes = owner[last], typed[typed >= 0][last]
                    binaries = c.loc_mapping[locs].tolist()
                    loc_class[locs] = [classes.setdefault((map_binary[b], kinds[k]), len(classes))
                                       for b, k in zip(binaries, kind_codes.tolist())]
        except Unreadable:
            return None
        # one slot per frame: a location's lines reversed (root first), or its address when it has none
        n_slots = np.maximum(c.loc_nlines, 1)
        slot_loc = np.repeat(np.arange(n), n_slots)
        line_start = np.cumsum(c.loc_nlines) - c.loc_nlines
        pos = np.arange(slot_loc.size) - np.repeat(np.cumsum(n_slots) - n_slots, n_slots)
        symbolized = c.loc_nlines[slot_loc] > 0
        line_of = np.where(symbolized, (line_start + c.loc_nlines - 1)[slot_loc] - pos, 0)
        names: dict[str, int] = {}
        for i, text in enumerate(self.strings):
            names.setdefault(text, i)
        fn_name_id = np.fromiter((names[t] if t else names.setdefault("?", len(names) + nstr)
                                  for t in map(self.strings.__getitem__, c.fn_name.tolist())), np.int64, nfn)
        slot_name = np.zeros(slot_loc.size, np.int64)
        if c.line_function.size:
            slot_name[symbolized] = fn_name_id[c.line_function[line_of[symbolized]]]
        unsym = np.flatnonzero(~symbolized)
        addresses = c.loc_address.tolist()
        for k, loc in zip(unsym.tolist(), slot_loc[unsym].tolist()):
            binary = map_binary[int(c.loc_mapping[loc])]
            address = addresses[loc]
            text = f"{binary}+0x{address:x}" if binary else f"0x{address:x}"
            slot_name[k] = names.setdefault(text, len(names) + nstr + 1)
        by_id = {i: t for t, i in names.items()}
        key = slot_name * (len(classes) + 1) + loc_class[slot_loc]
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")  # ids in first-seen order, as `location` numbers them
        rank = np.empty(order.size, np.int64)
        rank[order] = np.arange(order.size)
        class_of = {v: (binary, kind, kind.value) for (binary, kind), v in classes.items()}
        base = len(self.frames)
        # the one Python step per distinct frame, over plain lists
        slots = first[order]
        locs = slot_loc[slots]
        lines = line_of[slots]
        fns = np.where(symbolized[slots], c.line_function[lines] if c.line_function.size else 0, 0)
        strings, frame_ids, frames = self.strings, self._frame_ids, self.frames
        for loc, cls, sym, fname, ffile, line, name_id in zip(
                locs.tolist(), loc_class[locs].tolist(), symbolized[slots].tolist(),
                c.fn_name[fns].tolist() if nfn else [0] * slots.size,
                c.fn_filename[fns].tolist() if nfn else [0] * slots.size,
                np.where(symbolized[slots], c.line_line[lines] if c.line_line.size else 0, 0).tolist(),
                slot_name[slots].tolist()):
            binary, kind, kind_value = class_of[cls]
            if sym:
                name, filename = strings[fname] or "?", strings[ffile]
            else:
                name, filename, line = by_id[name_id], "", 0
            frame_ids[(name, binary, kind_value)] = len(frames)
            frames.append(_frame(name, binary, kind, addresses[loc], filename, line))
        return n_slots.astype(np.int64), base + rank[inverse.reshape(-1)]

    def stack_frames(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
        """Every stack as frame ids, root first, built once per request with numpy:
        (flat frame ids, each stack's start in them, each stack's depth, {stack index: why unreadable})."""
        if self._stack_frames is not None:
            return self._stack_frames
        bad_locations: dict[int, str] = {}
        n_locations = self.n_locations
        whole = self._all_locations()
        if whole is not None:
            loc_len, loc_flat = whole
        else:  # some location is unreadable: one by one, to know which and why
            per_location = []
            for i in range(n_locations):
                try:
                    per_location.append(self.location(i))
                except Unreadable as exc:
                    bad_locations[i] = str(exc)
                    per_location.append(())
            loc_len = np.fromiter(map(len, per_location), np.int64, n_locations)
            loc_flat = np.fromiter(chain.from_iterable(per_location), np.int64, int(loc_len.sum()))
        loc_len = np.append(loc_len, 0)  # where invalid references point, so indexing never fails
        loc_start = np.cumsum(loc_len) - loc_len
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
