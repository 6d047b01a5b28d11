"""OTLP profiles (`POST /v1development/profiles`): a real Go runtime profile converted by the test's own
converter, sent as protobuf and JSON; totals, names and labels equal `go tool pprof -raw`'s on the
original; the old field numbering gets a partial-success message; bad input gets a precise 4xx."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as svc

from profiler import pprof
from server.protocols.otlp import field_number_mismatches
from tests.profiler.go_profile import build_go_profile, go_env, go_pprof
from tests.server.conftest import bearer
from tests.server.helpers import cpu_profile
from tests.server.otlp_convert import pprof_to_otlp
from tests.server.protocol_helpers import gzip_bomb, n_batches, pprof_raw_totals, top

URL = "/v1development/profiles"
PROTO = "application/x-protobuf"


GO_LABELS_MAIN = r"""
package main

import (
	"context"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

//go:noinline
func leafSpin(n int) int { s := 0; for i := 0; i < n; i++ { s += i * i % 7 }; return s }

var keep [][]byte

//go:noinline
func allocate(n int) { for i := 0; i < n; i++ { keep = append(keep, make([]byte, 4096)) } }

func main() {
	runtime.MemProfileRate = 4096
	f, _ := os.Create(os.Args[1])
	pprof.StartCPUProfile(f)
	deadline := time.Now().Add(1500 * time.Millisecond)
	s := 0
	for time.Now().Before(deadline) {
		pprof.Do(context.Background(), pprof.Labels("worker", "hot"), func(context.Context) { s += leafSpin(200000) })
		pprof.Do(context.Background(), pprof.Labels("worker", "cold"), func(context.Context) { s += leafSpin(50000) })
	}
	pprof.StopCPUProfile()
	f.Close()
	allocate(2000)
	runtime.GC()
	h, _ := os.Create(os.Args[2])
	pprof.WriteHeapProfile(h)
	h.Close()
	if s == 42 { println(s) }
}
"""


@pytest.fixture(scope="module")
def go_labeled(go_bin: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path, Path]:
    """(go, tmp, cpu profile with pprof.Do labels, heap profile) from a real Go program."""
    tmp = tmp_path_factory.mktemp("golab")
    src = tmp / "src"
    src.mkdir()
    (src / "main.go").write_text(GO_LABELS_MAIN)
    (src / "go.mod").write_text("module golab\n\ngo 1.19\n")
    env = go_env(tmp)
    subprocess.run([go_bin, "build", "-o", str(tmp / "golab"), "."], cwd=src, env=env, check=True,
                   capture_output=True, timeout=300)
    cpu, heap = tmp / "cpu.pb.gz", tmp / "heap.pb.gz"
    subprocess.run([str(tmp / "golab"), str(cpu), str(heap)], env=env, check=True, capture_output=True, timeout=60)
    return go_bin, tmp, cpu, heap


@pytest.fixture(scope="module")
def go_profile(go_bin: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    tmp = tmp_path_factory.mktemp("go")
    return go_bin, tmp, build_go_profile(go_bin, tmp)


def export(client: Any, token: str, body: bytes, content_type: str = PROTO, **headers: str) -> Any:
    return client.post(URL, data=body, headers={**bearer(token), "Content-Type": content_type, **headers})


def test_installed_classes_have_the_current_field_numbers() -> None:
    assert field_number_mismatches() == []


def test_go_profile_as_proto_and_json_equals_go_tool_pprof(client: Any, tokens: dict[str, str],
                                                          go_profile: tuple[str, Path, Path]) -> None:
    go, tmp, path = go_profile
    types, totals, names = pprof_raw_totals(go_pprof(go, tmp, "-raw", str(path)))
    assert types == ["samples/count", "cpu/nanoseconds"] and totals[1] > 0
    for codec, service in (("proto", "otlp-proto"), ("json", "otlp-json")):
        req = pprof_to_otlp(path.read_bytes(), {"service.name": service, "host.name": "builder",
                                                "k8s.namespace.name": "prod"})
        if codec == "proto":
            resp = export(client, tokens["ingest"], req.SerializeToString())
            answer = svc.ExportProfilesServiceResponse.FromString(resp.data)
        else:
            resp = export(client, tokens["ingest"], json_format.MessageToJson(req).encode(), "application/json")
            answer = json_format.Parse(resp.data, svc.ExportProfilesServiceResponse())
        assert resp.status_code == 200, resp.data
        assert not answer.HasField("partial_success"), answer
        query = f'cpu{{service="{service}", host="builder", k8s_namespace_name="prod"}}'
        got = top(client, tokens["read"], query)
        assert got["total"] == totals[1]
        assert {f["name"] for f in got["functions"]} == names
        # both columns came back as one cpu profile: the sample count matches too
        series = client.get("/api/v1/series", query_string={"query": query, "from": "now-1h", "until": "now+5m"},
                            headers=bearer(tokens["read"])).get_json()
        assert series and "error" not in series


def test_go_labels_and_heap_equal_go_tool_pprof(client: Any, tokens: dict[str, str],
                                               go_labeled: tuple[str, Path, Path, Path]) -> None:
    go, tmp, cpu, heap = go_labeled
    for path, service in ((cpu, "otlp-golab"), (heap, "otlp-goheap")):
        req = pprof_to_otlp(path.read_bytes(), {"service.name": service})
        resp = export(client, tokens["ingest"], req.SerializeToString())
        assert resp.status_code == 200 and not resp.data, resp.data
    _, totals, names = pprof_raw_totals(go_pprof(go, tmp, "-raw", str(cpu)))
    got = top(client, tokens["read"], 'cpu{service="otlp-golab"}')
    assert got["total"] == totals[1] and {f["name"] for f in got["functions"]} == names
    for worker in ("hot", "cold"):  # per-sample labels: each label's total as go tool pprof -tagfocus counts it
        _, totals, _ = pprof_raw_totals(go_pprof(go, tmp, "-raw", f"-tagfocus=worker={worker}", str(cpu)))
        got = top(client, tokens["read"], f'cpu{{service="otlp-golab", worker="{worker}"}}')
        assert got["total"] == totals[1] > 0, worker
        assert {f["name"] for f in got["functions"]} <= names and "main.leafSpin" in str(got["functions"])
    types, totals, _ = pprof_raw_totals(go_pprof(go, tmp, "-raw", str(heap)))
    assert types[-1] == "inuse_space/bytes" and totals[-1] > 4096 * 1000
    got = top(client, tokens["read"], 'memory:inuse_space{service="otlp-goheap"}')
    assert got["total"] == totals[-1] and got["unit"] == "bytes"
    assert "main.allocate" in {f["name"] for f in got["functions"]}


def test_sample_attributes_become_sample_labels(client: Any, tokens: dict[str, str]) -> None:
    prof = cpu_profile({"main;a": 4, "main;b": 6}, labels={"main;a": {"thread_name": "w1"}})
    req = pprof_to_otlp(pprof.encode(prof), {"service.name": "otlp-labels"})
    assert export(client, tokens["ingest"], req.SerializeToString()).status_code == 200
    assert top(client, tokens["read"], 'cpu{service="otlp-labels", thread_name="w1"}')["total"] == 4 * prof.period
    assert top(client, tokens["read"], 'cpu{service="otlp-labels"}')["total"] == 10 * prof.period


def test_old_field_numbering_is_a_partial_success_not_silent_loss(app: Any, client: Any,
                                                                  tokens: dict[str, str]) -> None:
    req = pprof_to_otlp(pprof.encode(cpu_profile({"main;a": 4})), {"service.name": "otlp-old"})
    for p in req.resource_profiles[0].scope_profiles[0].profiles:
        for s in p.samples:  # Sample.values at field 2, as builds before the renumbering write it
            values = list(s.values)
            s.ClearField("values")
            s.attribute_indices.extend(values)
    before = n_batches(app)
    resp = export(client, tokens["ingest"], req.SerializeToString())
    assert resp.status_code == 200
    answer = svc.ExportProfilesServiceResponse.FromString(resp.data)
    assert answer.partial_success.rejected_profiles == 2
    assert "renumbering" in answer.partial_success.error_message
    assert n_batches(app) == before


def _status(resp: Any) -> tuple[int, str]:
    if resp.mimetype == "application/json":
        body = json.loads(resp.data)
        return body["code"], body["message"]
    assert resp.data[0] == 0x08 and resp.data[2] == 0x12  # google.rpc.Status: code, message
    return resp.data[1], resp.data[4 if resp.data[3] < 0x80 else 5:].decode()


def test_bad_input_is_a_precise_4xx_and_stores_nothing(app: Any, client: Any, tokens: dict[str, str]) -> None:
    good = pprof_to_otlp(pprof.encode(cpu_profile({"a;b": 1})), {"service.name": "otlp-bad"}).SerializeToString()
    before = n_batches(app)

    def refused(status: int, code: int, words: str, body: bytes, content_type: str = PROTO, **headers: str) -> None:
        resp = client.post(URL, data=body, headers={**bearer(tokens["ingest"]), "Content-Type": content_type,
                                                    **headers})
        assert resp.status_code == status, resp.data
        got_code, message = _status(resp)
        assert got_code == code and words in message, (got_code, message)

    refused(401, 16, "authentication required", good, Authorization="")
    refused(403, 7, "`ingest` scope", good, Authorization=f"Bearer {tokens['read']}")
    refused(415, 3, "application/x-protobuf", good, "text/plain")
    refused(400, 3, "truncated or malformed", good[: len(good) // 2])
    refused(400, 3, "not valid UTF-8", b'{"resourceProfiles": [{"schemaUrl": "\xff"}]}', "application/json")
    refused(400, 3, "not JSON", b"{", "application/json")
    refused(413, 8, "decompressed", gzip_bomb(), **{"Content-Encoding": "gzip"})
    refused(413, 8, "exceeds the limit", b"\x0a" * (9 << 20))
    many = pprof_to_otlp(pprof.encode(cpu_profile({"a;b": 1})),
                         {f"attr{i}": "v" for i in range(100_000)}).SerializeToString()
    refused(413, 8, "series labels exceed", many)
    bad_key = pprof_to_otlp(pprof.encode(cpu_profile({"a;b": 1})), {"bad key": "v"}).SerializeToString()
    refused(400, 3, "label name", bad_key)
    assert n_batches(app) == before
    assert client.get("/healthz").status_code == 200


def test_convert_inlined_lines_unsymbolized_and_frame_types() -> None:
    from opentelemetry.proto.common.v1 import common_pb2
    from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp

    from profiler.model import FrameKind
    from server.protocols.otlp import convert

    req = svc.ExportProfilesServiceRequest()
    d = req.dictionary
    d.string_table.extend(["", "samples", "count", "cpu", "nanoseconds", "main", "inlined_leaf", "caller",
                           "/bin/app", "[kernel.kallsyms]", "profile.frame.type", "python", "handler"])
    d.mapping_table.add()
    d.mapping_table.add(filename_strindex=8)
    d.mapping_table.add(filename_strindex=9)
    d.function_table.add()
    for name in (5, 6, 7, 12):
        d.function_table.add(name_strindex=name)
    d.attribute_table.add()
    d.attribute_table.add(key_strindex=10, value=common_pb2.AnyValue(string_value_strindex=11))
    d.location_table.add(mapping_index=1, address=0x10, lines=[otlp.Line(function_index=1)])  # main
    # one location, two lines: lines[0] is the innermost (inlined into the caller)
    d.location_table.add(mapping_index=1, address=0x20, lines=[otlp.Line(function_index=2), otlp.Line(function_index=3)])
    d.location_table.add(mapping_index=2, address=0xffff0000)  # kernel, unsymbolized
    d.location_table.add(lines=[otlp.Line(function_index=4)], attribute_indices=[1])  # a python frame
    d.stack_table.add()
    d.stack_table.add(location_indices=[2, 1, 3, 0])  # leaf first
    p = req.resource_profiles.add().scope_profiles.add().profiles.add(
        sample_type=otlp.ValueType(type_strindex=1, unit_strindex=2),
        period_type=otlp.ValueType(type_strindex=3, unit_strindex=4), period=1_000_000)
    p.samples.add(stack_index=1, timestamps_unix_nano=[1, 2, 3])  # no values: one per timestamp
    out = convert(req)
    assert out.rejected == 0 and len(out.batches) == 1, out.errors
    table = out.batches[0].table
    frames = [table.frames[i] for i in table.stacks[0]]
    assert [f.function for f in frames] == ["main", "handler", "caller", "inlined_leaf",
                                           "[kernel.kallsyms]+0xffff0000"]
    assert frames[1].kind == FrameKind.INTERPRETED and frames[0].kind == FrameKind.NATIVE
    assert frames[-1].kind == FrameKind.KERNEL
    # samples/count with a cpu period became Hotpath's cpu pair
    assert [str(t) for t in table.sample_types] == ["samples/count", "cpu/nanoseconds"]
    assert table.values.tolist() == [[3, 3_000_000]]
    p.samples.add(stack_index=7, values=[1])
    out = convert(req)
    assert out.rejected == 1 and "stack index 7" in out.errors[0] and not out.batches
