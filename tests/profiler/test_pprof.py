"""pprof codec: invariants, broken inputs, Go runtime profiles vs `go tool pprof`, fuzzing, round trips."""

from __future__ import annotations

import filecmp
import gzip
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiler import pprof
from profiler import profile_pb2 as pb
from profiler.errors import PprofError
from profiler.model import Frame, FrameKind, Profile, ProfileTable, Sample, ValueType, make_labels
from profiler.types import new_cpu_profile
from tests.profiler.go_profile import build_go_profile, go_pprof

DATA = Path(__file__).resolve().parents[1] / "data"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def go_profile(go_bin: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    tmp = tmp_path_factory.mktemp("goprof")
    return go_bin, tmp, build_go_profile(go_bin, tmp)


def small() -> Profile:
    return pprof.decode((DATA / "small_cpu.pb.gz").read_bytes())


def raw_msg() -> pb.Profile:
    m = pb.Profile()
    m.ParseFromString(pprof.encode(small(), compress=False))
    return m


def test_generated_module_in_sync(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'profiler'}",
                    f"--python_out={tmp_path}", str(ROOT / "profiler" / "profile.proto")], check=True)
    assert filecmp.cmp(tmp_path / "profile_pb2.py", ROOT / "profiler" / "profile_pb2.py", shallow=False)


def test_small_profile_decodes_with_kinds_labels_counters() -> None:
    p = small()
    assert [str(v) for v in p.sample_types] == ["samples/count", "cpu/nanoseconds"]
    assert p.total(1) == 50_000_000 and p.counters == {"missed_stacks": 4}
    s0 = p.samples[0]
    assert [f.function for f in s0.stack] == ["main", "work", "do_syscall_64"]  # root first
    assert [f.kind for f in s0.stack] == [FrameKind.NATIVE, FrameKind.NATIVE, FrameKind.KERNEL]
    assert s0.stack[0].build_id == "abc" and s0.stack[2].binary == "[kernel.kallsyms]"
    assert p.samples[1].stack[1].kind is FrameKind.INTERPRETED
    assert s0.label("thread") == "w"
    assert p.samples[0].stack[0] is p.samples[1].stack[0]  # interned


@pytest.mark.parametrize("name,pattern", [
    ("truncated.pb.gz", "truncated gzip"),
    ("garbage.pb.gz", "not a valid pprof protobuf"),
    ("unknown_location.pb", "sample 1 references unknown location id 17"),
])
def test_broken_files(name: str, pattern: str) -> None:
    with pytest.raises(PprofError, match=pattern):
        pprof.decode((DATA / name).read_bytes())


def _breakers() -> list[tuple[str, object]]:
    def st0(m): m.string_table[0] = "x"
    def dup_loc(m): m.location[1].id = m.location[0].id
    def zero_fn(m): m.function[0].id = 0
    def bad_map(m): m.location[0].mapping_id = 99
    def bad_fn(m): m.location[0].line[0].function_id = 77
    def values(m): m.sample[0].value.append(1)
    def str_range(m): m.function[0].name = 10_000
    def neg_str(m): m.sample[0].label[0].key = -1
    def dup_map(m): m.mapping.add(id=m.mapping[0].id)
    return [("string_table\\[0\\]", st0), ("duplicate location id", dup_loc), ("function with id 0", zero_fn),
            ("references unknown mapping id 99", bad_map), ("unknown function id 77", bad_fn),
            ("sample 0 has 3 values but the profile has 2", values), ("string index 10000 out of range", str_range),
            ("label key string index -1", neg_str), ("duplicate mapping id", dup_map)]


@pytest.mark.parametrize("pattern,breaker", _breakers())
def test_invariant_violations_named(pattern: str, breaker) -> None:
    m = raw_msg()
    breaker(m)
    with pytest.raises(PprofError, match=pattern):
        pprof.decode(m.SerializeToString())


def test_empty_and_non_bytes() -> None:
    with pytest.raises(PprofError, match="empty"):
        pprof.decode(b"")
    with pytest.raises(PprofError):
        pprof.decode("text")  # type: ignore[arg-type]


def _raw_totals(text: str) -> tuple[int, int]:
    rows = re.findall(r"^\s+(\d+)\s+(\d+):", text.split("Locations")[0], re.MULTILINE)
    return sum(int(a) for a, _ in rows), sum(int(b) for _, b in rows)


def test_go_runtime_profile_agrees_with_go_tool_pprof(go_profile) -> None:
    go, tmp, path = go_profile
    p = pprof.decode(path.read_bytes())
    count, nanos = _raw_totals(go_pprof(go, tmp, "-raw", str(path)))
    assert count > 0 and (p.total(0), p.total(1)) == (count, nanos)
    top = go_pprof(go, tmp, "-top", "-nodecount=1000", str(path))
    names = set(re.findall(r"%\s+(\S+)\s*$", top, re.MULTILINE))
    ours = {f.function for s in p.samples for f in s.stack}
    assert "main.leafSpin" in names and names == ours
    assert all(f.binary.endswith("burn.bin") and f.kind is FrameKind.NATIVE for s in p.samples for f in s.stack)


def test_go_tool_pprof_proto_output_and_our_reencode(go_profile) -> None:
    go, tmp, path = go_profile
    proto = tmp / "via_go.pb.gz"
    proto.write_bytes(b"")
    subprocess.run([go, "tool", "pprof", "-proto", "-output", str(proto), str(path)], check=True,
                   capture_output=True, env=__import__("tests.profiler.go_profile", fromlist=["go_env"]).go_env(tmp))
    a, b = pprof.decode(path.read_bytes()), pprof.decode(proto.read_bytes())
    assert a.total(1) == b.total(1)
    ours = tmp / "ours.pb"
    ours.write_bytes(pprof.encode(a, compress=False))
    assert _raw_totals(go_pprof(go, tmp, "-raw", str(ours))) == (a.total(0), a.total(1))


def test_fuzz_10000_mutations_raise_only_pprof_error() -> None:
    rng = random.Random(20261123)
    seeds = [(DATA / "small_cpu.pb.gz").read_bytes(), pprof.encode(small(), compress=False)]
    for i in range(10_000):
        data = bytearray(rng.choice(seeds))
        mode = i % 3
        if mode == 0:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            if mode == 2 and data[:2] == b"\x1f\x8b":
                data = bytearray(gzip.compress(bytes(gzip.decompress(seeds[0]))[: rng.randrange(200)] +
                                               bytes(rng.randrange(256) for _ in range(8))))
        try:
            pprof.decode(bytes(data))
        except PprofError:
            pass


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_raise_only_pprof_error(data: bytes) -> None:
    try:
        pprof.decode(data)
    except PprofError:
        pass


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
frames = st.builds(
    lambda fn, binary, kind: Frame(fn, binary if binary or kind is not FrameKind.KERNEL else "[kernel.kallsyms]", kind),
    names, st.sampled_from(["", "/usr/bin/app", "libc.so.6", "[kernel.kallsyms]"]), st.sampled_from(list(FrameKind)))
samples = st.builds(
    lambda stack, v, labels: Sample(tuple(stack), (v, v * 7), make_labels(labels)),
    st.lists(frames, max_size=8), st.integers(0, 2**40),
    st.dictionaries(names, st.text(max_size=6).filter(lambda x: "\ud800" > x or True), max_size=3))


@given(st.lists(samples, max_size=20), st.dictionaries(names, st.integers(0, 2**40), max_size=3))
@settings(max_examples=150, deadline=None)
def test_encode_decode_round_trip(smps: list[Sample], counters: dict[str, int]) -> None:
    smps = [s for s in smps if all(v != "" or True for _, v in s.labels)]
    p = new_cpu_profile(97, 5, 6)
    p.samples, p.counters, p.comments = smps, counters, ["hello"]
    d = pprof.decode(pprof.encode(p))
    assert d.samples == p.samples
    assert [tuple((f.kind, f.binary) for f in s.stack) for s in d.samples] == \
        [tuple((f.kind, f.binary) for f in s.stack) for s in p.samples]
    assert d.counters == counters and d.comments == ["hello"]
    assert (d.period, d.time_nanos, d.duration_nanos, d.sample_types) == (p.period, 5, 6, p.sample_types)


def test_unsymbolized_location_named_binary_plus_offset() -> None:
    m = pb.Profile(string_table=["", "samples", "count", "/lib/x.so"])
    m.sample_type.add(type=1, unit=2)
    m.mapping.add(id=1, memory_start=0x1000, file_offset=0x10, filename=3)
    m.location.add(id=1, mapping_id=1, address=0x1234)
    m.sample.add(location_id=[1], value=[5])
    p = pprof.decode(m.SerializeToString())
    assert p.samples[0].stack[0].function == "/lib/x.so+0x244"
    assert p.samples[0].stack[0].kind is FrameKind.NATIVE


def test_inline_lines_expand_root_first_and_numeric_labels() -> None:
    m = pb.Profile(string_table=["", "samples", "count", "inner", "outer", "bytes"])
    m.sample_type.add(type=1, unit=2)
    m.function.add(id=1, name=3)
    m.function.add(id=2, name=4)
    loc = m.location.add(id=1)
    loc.line.add(function_id=1)
    loc.line.add(function_id=2)
    smp = m.sample.add(location_id=[1], value=[1])
    smp.label.add(key=5, num=4096)
    p = pprof.decode(m.SerializeToString())
    assert [f.function for f in p.samples[0].stack] == ["outer", "inner"]
    assert p.samples[0].labels == (("bytes", "4096"),)


def test_encode_dedupes() -> None:
    p = new_cpu_profile(100)
    f = [Frame(f"f{i}", "/bin/a", FrameKind.NATIVE) for i in range(5)]
    p.samples = [Sample(tuple(f), (1, 1), (("k", "v"),)) for _ in range(100)]
    m = pb.Profile()
    m.ParseFromString(pprof.encode(p, compress=False))
    assert (len(m.location), len(m.function), len(m.mapping), len(m.sample)) == (5, 5, 1, 100)
    assert len(m.string_table) == len(set(m.string_table))


def test_merged_empty_profile_round_trips() -> None:
    p = Profile(sample_types=(ValueType("x", "y"),))
    assert pprof.decode(pprof.encode(p)).samples == []


def test_decode_table_columns_match_decode() -> None:
    data = (DATA / "small_cpu.pb.gz").read_bytes()
    t = pprof.decode_table(data)
    p = pprof.decode(data)
    assert t.values.dtype == np.int64 and t.values.shape == (len(p.samples), len(p.sample_types))
    assert len(t.frames) == len(set(t.frames))  # unique by identity
    assert [tuple(t.frames[i] for i in st) for st in t.stacks] == [s.stack for s in p.samples]
    assert t.values.tolist() == [list(s.values) for s in p.samples]
    assert t.labels == [s.labels for s in p.samples]
    assert (t.counters, t.comments, t.sample_types, t.period, t.period_type) == \
        (p.counters, p.comments, p.sample_types, p.period, p.period_type)
    assert t.to_profile() == p


def test_table_from_profile_round_trips_and_interns_by_identity() -> None:
    p = small()
    twin = Frame(p.samples[0].stack[0].function, p.samples[0].stack[0].binary, p.samples[0].stack[0].kind, 999)
    p.samples.append(Sample((twin,), (1, 2), (("k", "v"),)))
    t = ProfileTable.from_profile(p)
    assert t.stacks[-1] == (t.stacks[0][0],)  # equal frame (address differs) -> same index
    back = t.to_profile()
    assert back == p
    empty = ProfileTable.from_profile(Profile(sample_types=(ValueType("x", "y"),)))
    assert empty.values.shape == (0, 1) and empty.to_profile().samples == []


def test_decode_table_inline_locations_expand_root_first() -> None:
    m = pb.Profile(string_table=["", "samples", "count", "inner", "outer"])
    m.sample_type.add(type=1, unit=2)
    m.function.add(id=1, name=3)
    m.function.add(id=2, name=4)
    loc = m.location.add(id=1)
    loc.line.add(function_id=1)
    loc.line.add(function_id=2)
    m.location.add(id=2).line.add(function_id=2)
    m.sample.add(location_id=[1, 2], value=[3])
    t = pprof.decode_table(m.SerializeToString())
    assert [[t.frames[i].function for i in st] for st in t.stacks] == [["outer", "outer", "inner"]]
    assert t.stacks[0][0] == t.stacks[0][1]  # same identity, one frame entry


@pytest.mark.parametrize("pattern,breaker", _breakers())
def test_decode_table_invariant_violations_named(pattern: str, breaker) -> None:
    m = raw_msg()
    breaker(m)
    with pytest.raises(PprofError, match=pattern):
        pprof.decode_table(m.SerializeToString())


def test_decode_table_unknown_location_named() -> None:
    with pytest.raises(PprofError, match="sample 1 references unknown location id 17"):
        pprof.decode_table((DATA / "unknown_location.pb").read_bytes())
