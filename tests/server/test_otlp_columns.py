"""The C column reader of OTLP profiles (server/protocols/_otlpscan.c) against the generated classes
(otlp_columns.from_messages, the decoder of record): equal columns on real and odd requests, None
(so the generated classes decide) on anything unusual, and the same conversion either way."""

from __future__ import annotations

import random
from typing import Any

import pytest
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as svc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp

from profiler import pprof
from server.protocols import otlp_columns
from server.protocols.otlp import convert
from server.protocols.otlp_dictionary import Dictionary
from tests.server.helpers import cpu_profile
from tests.server.otlp_convert import pprof_to_otlp


def _fleet_like(with_labels: bool = True) -> svc.ExportProfilesServiceRequest:
    rng = random.Random(7)
    names = [f"fn_{i}" for i in range(60)]
    stacks = {";".join(rng.choices(names, k=rng.randint(1, 30))): rng.randint(1, 50) for _ in range(200)}
    labels = {k: {"thread": f"t{i % 3}", "pid": str(100 + i % 5)} for i, k in enumerate(stacks) if with_labels}
    return pprof_to_otlp(pprof.encode(cpu_profile(stacks, labels)), {"service.name": "api", "host.name": "h1"})


def _odd() -> svc.ExportProfilesServiceRequest:
    """Several resources, scopes and Profiles (one empty), negative and out-of-range indexes,
    a location without lines, timestamps without values, inlined lines, attributes."""
    req = svc.ExportProfilesServiceRequest()
    d = req.dictionary
    d.string_table.extend(["", "cpu", "ns", "main", "leaf"])
    d.function_table.add()
    d.function_table.add(name_strindex=3, filename_strindex=4, system_name_strindex=3, start_line=9)
    d.function_table.add(name_strindex=-2)
    d.location_table.add()
    d.location_table.add(mapping_index=-1, address=2**64 - 1, attribute_indices=[3, -4],
                         lines=[otlp.Line(function_index=1, line=-5, column=2), otlp.Line(function_index=2)])
    d.location_table.add(address=7)
    d.stack_table.add()
    d.stack_table.add(location_indices=[1, 2, -1, 99])
    for r in range(2):
        rp = req.resource_profiles.add()
        for s in range(2):
            sp = rp.scope_profiles.add()
            sp.profiles.add()  # no samples
            p = sp.profiles.add(sample_type=otlp.ValueType(type_strindex=1, unit_strindex=2))
            p.samples.add(stack_index=1, values=[r, -s, 2**62], attribute_indices=[5, 1])
            p.samples.add(stack_index=-3, timestamps_unix_nano=[1, 2], link_index=4)
            p.samples.add(values=[1, 2], timestamps_unix_nano=[5])
            p.samples.add()
    return req


def _typed() -> svc.ExportProfilesServiceRequest:
    """Every index valid: kernel and native mappings, unsymbolized addresses, frame-type attributes
    (the last one wins), inlined lines, an empty function name, a string stored twice."""
    req = svc.ExportProfilesServiceRequest()
    d = req.dictionary
    d.string_table.extend(["", "cpu", "ns", "main", "a.py", "[kernel.kallsyms]", "/bin/app",
                           "profile.frame.type", "python", "kernel", "main", "?"])
    d.mapping_table.add()
    d.mapping_table.add(filename_strindex=5)
    d.mapping_table.add(filename_strindex=6)
    d.attribute_table.add()
    d.attribute_table.add(key_strindex=7, value=common_pb2.AnyValue(string_value="python"))
    d.attribute_table.add(key_strindex=7, value=common_pb2.AnyValue(string_value="kernel"))
    d.attribute_table.add(key_strindex=1, value=common_pb2.AnyValue(string_value="x"))
    d.function_table.add()
    d.function_table.add(name_strindex=3, filename_strindex=4)
    d.function_table.add(name_strindex=10, filename_strindex=6)  # "main" again, another string
    d.function_table.add(name_strindex=0)  # no name: "?", like the string "?"
    d.function_table.add(name_strindex=11)
    d.location_table.add(mapping_index=2, address=0x10, lines=[otlp.Line(function_index=1, line=3)])
    d.location_table.add(mapping_index=2, address=0x20, lines=[otlp.Line(function_index=2, line=4),
                                                               otlp.Line(function_index=3)])
    d.location_table.add(mapping_index=1, address=0xffff)  # kernel, unsymbolized
    d.location_table.add(mapping_index=2, address=0x30)  # native, unsymbolized
    d.location_table.add(address=0x40)  # no mapping, unsymbolized
    d.location_table.add(mapping_index=2, lines=[otlp.Line(function_index=1)], attribute_indices=[1, 3])
    d.location_table.add(mapping_index=2, lines=[otlp.Line(function_index=4)], attribute_indices=[1, 2])
    d.location_table.add(mapping_index=1, lines=[otlp.Line(function_index=1, line=9)])
    d.stack_table.add()
    d.stack_table.add(location_indices=[1, 0])
    d.stack_table.add(location_indices=[2, 3, 4, 5, 6, 7, 0])
    p = req.resource_profiles.add().scope_profiles.add().profiles.add(
        sample_type=otlp.ValueType(type_strindex=1, unit_strindex=2))
    p.samples.add(stack_index=1, values=[3])
    p.samples.add(stack_index=2, values=[4], attribute_indices=[3])
    return req


def _columns(req: svc.ExportProfilesServiceRequest) -> tuple[otlp_columns.Columns | None, otlp_columns.Columns]:
    raw = req.SerializeToString()
    return otlp_columns.scan(raw), otlp_columns.from_messages(svc.ExportProfilesServiceRequest.FromString(raw))


def test_scan_equals_the_generated_classes() -> None:
    for req in (_fleet_like(), _odd(), _typed(), svc.ExportProfilesServiceRequest()):
        fast, reference = _columns(req)
        assert fast is not None and fast == reference
    fast, _ = _columns(_odd())
    assert fast is not None
    assert fast.smp_profile.tolist() == [1, 1, 1, 1, 3, 3, 3, 3, 5, 5, 5, 5, 7, 7, 7, 7]
    assert fast.loc_address.tolist()[1] == 2**64 - 1 and fast.line_line.tolist() == [-5, 0]
    assert fast.stack_locations.tolist() == [1, 2, -1, 99] and fast.smp_nstamps.tolist()[:4] == [0, 2, 1, 0]


def test_unpacked_repeated_fields_read_like_packed() -> None:
    # Sample{stack_index: 1, values: 4 (unpacked), values: 5 (unpacked), attribute_indices: 2 (unpacked)}
    sample = bytes([0x08, 1, 0x20, 4, 0x20, 5, 0x10, 2])
    profile = bytes([0x12, len(sample)]) + sample
    scope = bytes([0x12, len(profile)]) + profile
    resource = bytes([0x12, len(scope)]) + scope
    raw = bytes([0x0A, len(resource)]) + resource
    fast = otlp_columns.scan(raw)
    assert fast is not None and fast == otlp_columns.from_messages(svc.ExportProfilesServiceRequest.FromString(raw))
    assert fast.smp_values.tolist() == [4, 5] and fast.smp_attrs.tolist() == [2]


def test_anything_unusual_is_left_to_the_generated_classes() -> None:
    raw = _fleet_like().SerializeToString()
    dictionary = svc.ExportProfilesServiceRequest(dictionary=otlp.ProfilesDictionary(string_table=["x"]))
    assert otlp_columns.scan(raw[:-3]) is None  # truncated
    assert otlp_columns.scan(raw + dictionary.SerializeToString()) is None  # a second dictionary (merged)
    dup = bytes([0x08, 1, 0x08, 2])  # Sample.stack_index twice: the last wins in protobuf
    nested = bytes([0x12, len(dup)]) + dup
    for _ in range(3):
        nested = bytes([0x12 if _ < 2 else 0x0A, len(nested)]) + nested
    assert otlp_columns.scan(nested) is None
    group = bytes([0x0B])  # a group wire type
    assert otlp_columns.scan(group) is None


def _frames(out: Any) -> list[list[tuple[str, str, str, int, str, int]]]:
    return [[(f.function, f.binary, f.kind.value, f.address, f.filename, f.line) for f in b.table.frames]
            for b in out.batches]


def test_convert_is_the_same_with_either_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C columns and whole-table location resolution against the generated classes and
    location-by-location resolution (the decoder of record): same tables, same frames, same order."""
    for req in (_fleet_like(), _fleet_like(with_labels=False), _odd(), _typed()):
        raw = req.SerializeToString()
        fast = convert(req, raw)
        with monkeypatch.context() as m:
            m.setattr(Dictionary, "_all_locations", lambda self: None)
            slow = convert(req)
        assert _frames(fast) == _frames(slow)
        assert (fast.rejected, fast.errors) == (slow.rejected, slow.errors)
        assert len(fast.batches) == len(slow.batches)
        for a, b in zip(fast.batches, slow.batches):
            assert a.labels == b.labels and a.table.to_profile() == b.table.to_profile()
    typed = convert(_typed(), _typed().SerializeToString())
    assert typed.rejected == 0, typed.errors
    kinds = {(f.function, f.binary, f.kind.value) for f in typed.batches[0].table.frames}
    assert kinds == {("main", "/bin/app", "native"), ("main", "/bin/app", "interpreted"), ("?", "/bin/app", "native"),
                     ("?", "/bin/app", "kernel"), ("[kernel.kallsyms]+0xffff", "[kernel.kallsyms]", "kernel"),
                     ("/bin/app+0x30", "/bin/app", "native"), ("0x40", "", "unknown"),
                     ("main", "[kernel.kallsyms]", "kernel")}
    out = convert(_fleet_like(), _fleet_like().SerializeToString())
    assert out.rejected == 0 and len(out.batches) == 1 and out.batches[0].table.values.shape[0] == 200
