"""A pprof -> OTLP profiles (v1development, opentelemetry-proto 1.45.x) converter for the tests.

Independent of Hotpath's decoders: it reads the pprof with the protobuf classes generated from
profile.proto and writes the request with opentelemetry-proto's generated classes, one `Profile`
per pprof sample type (how the v1development layout carries a multi-type pprof) sharing one dictionary.
"""

from __future__ import annotations

import gzip

from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as svc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp

from profiler import profile_pb2


def pprof_to_otlp(data: bytes, resource: dict[str, str], labels_as: str = "sample") -> svc.ExportProfilesServiceRequest:
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    prof = profile_pb2.Profile.FromString(raw)
    names = list(prof.string_table)
    req = svc.ExportProfilesServiceRequest()
    d = req.dictionary
    strings: dict[str, int] = {}

    def s(text: str) -> int:
        if text not in strings:
            strings[text] = len(d.string_table)
            d.string_table.append(text)
        return strings[text]

    s("")
    d.mapping_table.add()
    d.function_table.add()
    d.attribute_table.add()
    d.stack_table.add()
    d.link_table.add()
    mapping_index = {}
    for m in prof.mapping:
        mapping_index[m.id] = len(d.mapping_table)
        d.mapping_table.add(memory_start=m.memory_start, memory_limit=m.memory_limit, file_offset=m.file_offset,
                            filename_strindex=s(names[m.filename]))
    function_index = {}
    for f in prof.function:
        function_index[f.id] = len(d.function_table)
        d.function_table.add(name_strindex=s(names[f.name]), system_name_strindex=s(names[f.system_name]),
                             filename_strindex=s(names[f.filename]), start_line=f.start_line)
    location_index = {}
    for loc in prof.location:
        location_index[loc.id] = len(d.location_table)
        d.location_table.add(mapping_index=mapping_index.get(loc.mapping_id, 0), address=loc.address,
                             lines=[otlp.Line(function_index=function_index[ln.function_id], line=ln.line)
                                    for ln in loc.line])
    stacks: dict[tuple[int, ...], int] = {}
    attrs: dict[tuple[str, str], int] = {}

    def attr(key: str, value: str | int) -> int:
        if (key, value) not in attrs:
            attrs[(key, value)] = len(d.attribute_table)
            any_value = (common_pb2.AnyValue(string_value=value) if isinstance(value, str)
                         else common_pb2.AnyValue(int_value=value))
            d.attribute_table.add(key_strindex=s(key), value=any_value)
        return attrs[(key, value)]

    rp = req.resource_profiles.add()
    for key, value in resource.items():
        rp.resource.attributes.add(key=key, value=common_pb2.AnyValue(string_value=value))
    sp = rp.scope_profiles.add()
    sp.scope.name = "tests.otlp_convert"
    for i, vt in enumerate(prof.sample_type):
        p = sp.profiles.add(sample_type=otlp.ValueType(type_strindex=s(names[vt.type]), unit_strindex=s(names[vt.unit])),
                            time_unix_nano=prof.time_nanos, duration_nano=prof.duration_nanos, period=prof.period)
        if prof.HasField("period_type"):
            p.period_type.type_strindex = s(names[prof.period_type.type])
            p.period_type.unit_strindex = s(names[prof.period_type.unit])
        for smp in prof.sample:
            key = tuple(location_index[loc] for loc in smp.location_id)
            if key not in stacks:
                stacks[key] = len(d.stack_table)
                d.stack_table.add(location_indices=list(key))
            labels = [attr(names[lb.key], names[lb.str] if lb.str else lb.num) for lb in smp.label]
            p.samples.add(stack_index=stacks[key], values=[smp.value[i]], attribute_indices=labels)
    return req
