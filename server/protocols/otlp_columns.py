"""An OTLP profiles request's big repeated tables as flat integer columns: locations (with their
lines and attributes), functions, stacks and every Profile's samples.

Why: reading these messages field by field through the generated classes costs ~1 us per field,
which made an OTLP request cost twice the native pprof ingest. `scan` reads them from the request's
bytes with the C pass (_otlpscan.c) in one go; `from_messages` reads the same columns through the
generated classes, which stay the decoder of record: they parse (and so validate) every request
first, they are the fallback whenever the C pass finds anything unusual or the body was JSON, and
the tests check both readers give equal columns. Indexes are not checked here: that is
otlp_dictionary's and otlp.py's job, on these columns whichever reader made them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as svc

from server.protocols import _otlpscan


@dataclass
class Columns:
    """int64 columns (loc_address uint64); `n*` columns say how many entries of the flat column
    after them each row owns, in order."""

    loc_mapping: np.ndarray
    loc_address: np.ndarray
    loc_nlines: np.ndarray
    line_function: np.ndarray  # lines in wire order (lines[0] is the innermost)
    line_line: np.ndarray
    loc_nattrs: np.ndarray
    loc_attrs: np.ndarray
    fn_name: np.ndarray
    fn_filename: np.ndarray
    stack_len: np.ndarray
    stack_locations: np.ndarray  # leaf first, as sent
    smp_profile: np.ndarray  # ordinal of the sample's Profile, in request order (resource, scope, profile)
    smp_stack: np.ndarray
    smp_nvalues: np.ndarray
    smp_values: np.ndarray
    smp_nstamps: np.ndarray
    smp_nattrs: np.ndarray
    smp_attrs: np.ndarray

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Columns) and all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))


NAMES = [f.name for f in fields(Columns)]


def scan(raw: bytes) -> Columns | None:
    """The columns of a request's protobuf bytes (already parsed whole by the generated classes),
    or None when the C pass finds anything unusual (then read them with `from_messages`)."""
    got = _otlpscan.scan(raw)
    if got is None:
        return None
    cols = [np.frombuffer(b, dtype=np.int64) for b in got]
    cols[NAMES.index("loc_address")] = cols[NAMES.index("loc_address")].view(np.uint64)
    return Columns(*cols)


def from_messages(req: svc.ExportProfilesServiceRequest) -> Columns:
    """The same columns, read through the generated classes (the reference reader)."""
    out: dict[str, list[int]] = {name: [] for name in NAMES}
    d = req.dictionary
    for loc in d.location_table:
        out["loc_mapping"].append(loc.mapping_index)
        out["loc_address"].append(loc.address)
        out["loc_nlines"].append(len(loc.lines))
        for line in loc.lines:
            out["line_function"].append(line.function_index)
            out["line_line"].append(line.line)
        out["loc_nattrs"].append(len(loc.attribute_indices))
        out["loc_attrs"].extend(loc.attribute_indices)
    for fn in d.function_table:
        out["fn_name"].append(fn.name_strindex)
        out["fn_filename"].append(fn.filename_strindex)
    for st in d.stack_table:
        out["stack_len"].append(len(st.location_indices))
        out["stack_locations"].extend(st.location_indices)
    ordinal = 0
    for rp in req.resource_profiles:
        for sp in rp.scope_profiles:
            for p in sp.profiles:
                for s in p.samples:
                    out["smp_profile"].append(ordinal)
                    out["smp_stack"].append(s.stack_index)
                    out["smp_nvalues"].append(len(s.values))
                    out["smp_values"].extend(s.values)
                    out["smp_nstamps"].append(len(s.timestamps_unix_nano))
                    out["smp_nattrs"].append(len(s.attribute_indices))
                    out["smp_attrs"].extend(s.attribute_indices)
                ordinal += 1
    return Columns(*(np.array(out[name], dtype=np.uint64 if name == "loc_address" else np.int64) for name in NAMES))


def read(req: svc.ExportProfilesServiceRequest, raw: bytes | None) -> Columns:
    """`scan` when the protobuf bytes are at hand and it can, else `from_messages`."""
    return (scan(raw) if raw is not None else None) or from_messages(req)
