"""The columnar pprof reader: same table as the reference decoder, or None (never a different answer)."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from profiler import pprof, pprof_columns
from profiler import profile_pb2 as pb
from profiler.errors import PprofError
from profiler.model import Frame, FrameKind, ProfileTable, Sample, make_labels
from profiler.types import new_cpu_profile
from tests.conftest import require
from tests.pprof_raw import varint
from tests.profiler.go_profile import build_go_profile

DATA = Path(__file__).resolve().parents[1] / "data"
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def assert_same(a: ProfileTable, b: ProfileTable) -> None:
    assert a.frames == b.frames
    assert [(f.kind, f.address, f.build_id, f.filename, f.line) for f in a.frames] == \
        [(f.kind, f.address, f.build_id, f.filename, f.line) for f in b.frames]
    assert a.stacks == b.stacks and a.labels == b.labels
    for x, y in zip(a.flat_stacks(), b.flat_stacks(), strict=True):  # a decoder's arrays, or made from `stacks`
        assert x.dtype == y.dtype == np.int64 and np.array_equal(x, y)
    assert a.values.dtype == b.values.dtype == np.int64 and a.values.shape == b.values.shape
    assert np.array_equal(a.values, b.values)
    for key in ("sample_types", "period_type", "period", "time_nanos", "duration_nanos", "default_sample_type",
                "counters", "comments"):
        assert getattr(a, key) == getattr(b, key), key


def fast(raw: bytes) -> ProfileTable | None:
    return pprof_columns.read(raw, pprof._header)


def check_agrees(raw: bytes, expect_fast: bool = False) -> None:
    """Fast answer must equal the reference's; where the fast reader declines, fine, unless expected."""
    got = fast(raw)
    if got is None:
        assert not expect_fast, "fast reader declined an input it should read"
        return
    assert_same(got, pprof._reference(raw))  # would raise if the reference rejects what we accepted


def test_fleet_batches_read_fast_and_agree() -> None:
    from fleet_sim import Fleet, FleetConfig, encode

    fleet = Fleet(FleetConfig(stacks_per_service=500, functions_per_service=200))
    for host in range(6):
        check_agrees(gzip.decompress(encode(fleet.batch(host, 1000.0 + host))), expect_fast=True)


def test_small_file_inline_and_empty_profiles_agree() -> None:
    check_agrees(gzip.decompress((DATA / "small_cpu.pb.gz").read_bytes()), expect_fast=True)
    check_agrees(pprof.encode(new_cpu_profile(99), compress=False), expect_fast=True)
    m = pb.Profile(string_table=["", "samples", "count", "inner", "outer", "k", "v", "inner"])
    m.sample_type.add(type=1, unit=2)
    m.function.add(id=1, name=3)
    m.function.add(id=2, name=4)
    m.function.add(id=3, name=7)  # same name stored twice in the string table: one frame
    loc = m.location.add(id=1)
    loc.line.add(function_id=1)
    loc.line.add(function_id=2)
    m.location.add(id=2).line.add(function_id=3)
    smp = m.sample.add(location_id=[2, 1], value=[4])
    smp.label.add(key=5, str=6)
    smp.label.add(key=5, num=7)
    m.sample.add(location_id=[1], value=[1])
    check_agrees(m.SerializeToString(), expect_fast=True)
    t = fast(m.SerializeToString())
    assert t is not None and [[t.frames[i].function for i in s] for s in t.stacks] == [["outer", "inner", "inner"],
                                                                                        ["outer", "inner"]]
    assert len(t.frames) == 2


def test_unpacked_repeated_fields_as_go_writes_them() -> None:
    # Go's encoder writes short repeated fields unpacked; protobuf readers must take both forms.
    m = pb.Profile()
    m.ParseFromString(pprof.encode(new_cpu_profile(99), compress=False))
    m.string_table.extend(["f", "g"])
    m.function.add(id=1, name=len(m.string_table) - 2)
    m.function.add(id=2, name=len(m.string_table) - 1)
    m.location.add(id=1).line.add(function_id=1)
    m.location.add(id=2).line.add(function_id=2)
    body = b"".join(b"\x08" + varint(i) for i in (2, 1)) + b"\x10\x03" + b"\x12\x01\x07"  # ids, value 3, packed 7
    sample = b"\x12" + varint(len(body)) + body
    raw = m.SerializeToString() + sample
    check_agrees(raw, expect_fast=True)
    t = pprof.decode_table(raw)
    assert t.values.tolist() == [[3, 7]] and [t.frames[i].function for i in t.stacks[0]] == ["f", "g"]


@pytest.mark.parametrize("mutate", ["dup_loc", "zero_fn", "bad_fn", "values", "str_range", "neg_label", "no_lines"])
def test_broken_inputs_are_left_to_the_reference(mutate: str) -> None:
    m = pb.Profile()
    m.ParseFromString(pprof.encode(pprof.decode((DATA / "small_cpu.pb.gz").read_bytes()), compress=False))
    if mutate == "dup_loc":
        m.location[1].id = m.location[0].id
    elif mutate == "zero_fn":
        m.function[0].id = 0
    elif mutate == "bad_fn":
        m.location[0].line[0].function_id = 77
    elif mutate == "values":
        m.sample[0].value.append(1)
    elif mutate == "str_range":
        m.function[0].name = 10_000
    elif mutate == "neg_label":
        m.sample[0].label[0].key = -1
    elif mutate == "no_lines":
        del m.location[0].line[:]
    raw = m.SerializeToString()
    assert fast(raw) is None
    if mutate == "no_lines":
        assert pprof.decode_table(raw).frames  # unsymbolized: the reference names it binary+0x...
    else:
        with pytest.raises(PprofError):
            pprof.decode_table(raw)


def test_mutated_bytes_never_give_a_different_answer() -> None:
    rng = random.Random(7)
    seeds = [gzip.decompress((DATA / "small_cpu.pb.gz").read_bytes())]
    from fleet_sim import Fleet, FleetConfig, encode

    seeds.append(gzip.decompress(encode(Fleet(FleetConfig(stacks_per_service=50, functions_per_service=40,
                                                          unique_per_batch=20)).batch(1, 5.0))))
    for i in range(3000):
        data = bytearray(rng.choice(seeds))
        if i % 2:
            data = data[: rng.randrange(1, len(data))]
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        raw = bytes(data)
        got = fast(raw)
        if got is not None:
            assert_same(got, pprof._reference(raw))


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8)
frames = st.builds(Frame, names, st.sampled_from(["", "/usr/bin/app", "[kernel.kallsyms]"]),
                   st.sampled_from(list(FrameKind)), st.integers(0, 2**64 - 1), st.sampled_from(["", "abc"]),
                   st.sampled_from(["", "x.c"]), st.integers(-(2**63), 2**63 - 1))
samples = st.builds(lambda stack, v, labels: Sample(tuple(stack), (v, -v), make_labels(labels)),
                    st.lists(frames, max_size=6), st.integers(0, 2**62), st.dictionaries(names, names, max_size=3))


@given(st.lists(samples, max_size=15))
@settings(max_examples=150, deadline=None)
def test_round_trips_read_fast_and_agree(smps: list[Sample]) -> None:
    p = new_cpu_profile(97, 5, 6)
    p.samples = smps
    check_agrees(pprof.encode(p, compress=False), expect_fast=True)


def test_go_runtime_profile_agrees(go_bin: str, tmp_path: Path) -> None:
    raw = gzip.decompress(build_go_profile(go_bin, tmp_path).read_bytes())
    check_agrees(raw)
    assert pprof.decode_table(raw).stacks


def test_many_fields_in_one_message_read_fast() -> None:
    m = pb.Profile()
    m.ParseFromString(pprof.encode(new_cpu_profile(99), compress=False))
    m.string_table.extend(["f", "k", "v"])
    n = len(m.string_table)
    m.function.add(id=1, name=n - 3)
    m.location.add(id=1).line.add(function_id=1)
    smp = m.sample.add(location_id=[1], value=[1, 2])
    for _ in range(200):
        smp.label.add(key=n - 2, str=n - 1)
    raw = m.SerializeToString()
    check_agrees(raw, expect_fast=True)
    assert pprof.decode_table(raw).labels == [(("k", "v"),) * 200]


def _fn(body: bytes) -> bytes:
    """A profile whose only Function message has this body."""
    return b"\x2a" + varint(len(body)) + body


@pytest.mark.parametrize("raw", [
    _fn(b"\x08\x01\x08\x02"),  # Function.id twice (proto3 keeps the last): left to the reference
    _fn(b"\x09" + b"\x00" * 8),  # fixed64 wire type
    _fn(b"\x08" + b"\xff" * 9 + b"\x02"),  # tenth varint byte beyond bit 63
    _fn(b"\x08\x80"),  # truncated varint
    _fn(b"\x12\x05ab"),  # length past its message
    b"\x12\x06\x0a\x02\x01\x80\x10\x01",  # packed location ids ending inside a varint
    b"\x12\x0a\x1a\x02\x08\x01\x10\x01\x1a\x02\x08\x01",  # labels interleaved with a value
    b"\x22\x02\x08\x01",  # a location without lines
], ids=["repeated_scalar", "fixed64", "varint_overflow", "truncated_varint", "long_length", "packed_split",
        "labels_interleaved", "no_lines"])
def test_scanner_declines_what_it_does_not_read_exactly(raw: bytes) -> None:
    from profiler import _pprofscan

    assert _pprofscan.scan(raw) is None


@given(st.binary(max_size=300))
@settings(max_examples=2000, deadline=None)
def test_scanner_takes_any_bytes(raw: bytes) -> None:
    from profiler import _pprofscan

    got = _pprofscan.scan(raw)
    assert got is None or (len(got) == 10 and all(len(c) % 8 == 0 for c in got))


def test_scanner_is_memory_safe_under_sanitizers(tmp_path: Path) -> None:
    """The scanner reads untrusted bytes in C: build it with ASan + UBSan and feed it mutated batches."""
    require(shutil.which("gcc") is not None, "gcc")
    root = Path(__file__).resolve().parents[2]
    so = tmp_path / "_pprofscan.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer",
                    f"-I{sysconfig.get_paths()['include']}", str(root / "profiler" / "_pprofscan.c"),
                    "-o", str(so)], check=True)
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True,
                             check=True).stdout.strip()
    seed = gzip.decompress((DATA / "small_cpu.pb.gz").read_bytes())
    (tmp_path / "seed.pb").write_bytes(seed)
    script = f"""
import ctypes, importlib.util, mmap, random
spec = importlib.util.spec_from_file_location("_pprofscan", {str(so)!r})
scan = importlib.util.module_from_spec(spec); spec.loader.exec_module(scan)
seed = open({str(tmp_path / "seed.pb")!r}, "rb").read()
# Inputs end right at a PROT_NONE page, so reading one byte past the end faults (a Python bytes
# object has a spare NUL byte, and pymalloc memory is invisible to ASan).
n = (len(seed) + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
region = mmap.mmap(-1, n + mmap.PAGESIZE)
base = ctypes.addressof(ctypes.c_char.from_buffer(region))
assert ctypes.CDLL(None).mprotect(ctypes.c_void_p(base + n), mmap.PAGESIZE, 0) == 0
rng = random.Random(11)
read = 0
for i in range(20000):
    data = bytearray(seed[: rng.randrange(1, len(seed) + 1)] if i % 2 else seed)
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    region[n - len(data):n] = data
    read += scan.scan(memoryview(region)[n - len(data):n]) is not None
assert scan.scan(seed) is not None
print("read", read)
"""
    env = {**os.environ, "LD_PRELOAD": libasan, "ASAN_OPTIONS": "detect_leaks=0"}
    out = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0 and "read" in out.stdout, (out.returncode, out.stderr[-3000:])
    assert "Sanitizer" not in out.stderr and "runtime error" not in out.stderr, out.stderr[-3000:]

