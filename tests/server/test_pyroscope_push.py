"""Pyroscope's push API (`/push.v1.PusherService/Push`, Connect unary): codecs, label mapping, auth,
idempotency by sample ID, and every kind of bad input as a Connect-shaped 4xx that stores nothing."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from typing import Any

import pytest

from profiler import pprof
from profiler.model import Profile, Sample
from profiler.types import CPU_NANOS
from server.protocols import pyroscope_push_pb2 as pb
from tests.pprof_raw import _field
from tests.server.conftest import bearer
from tests.server.helpers import cpu_profile, frame
from tests.server.protocol_helpers import gzip_bomb, n_batches, self_by_function, top

URL = "/push.v1.PusherService/Push"
PERIOD = 10_000_000  # 100 Hz, as pyroscope-io samples


def sdk_profile(stacks: dict[str, int]) -> bytes:
    """A pprof shaped as Pyroscope SDKs write it: one `cpu/nanoseconds` column, period 1e9/rate."""
    prof = Profile(sample_types=(CPU_NANOS,), period_type=CPU_NANOS, period=PERIOD, time_nanos=0)
    for key, count in stacks.items():
        prof.samples.append(Sample(tuple(frame(n) for n in key.split(";")), (count * PERIOD,)))
    return pprof.encode(prof)


def push_request(labels: dict[str, str], *samples: tuple[bytes, str]) -> pb.PushRequest:
    req = pb.PushRequest()
    series = req.series.add()
    for name, value in labels.items():
        series.labels.add(name=name, value=value)
    for raw, ident in samples:
        series.samples.add(raw_profile=raw, ID=ident)
    return req


def basic(token: str, user: str = "pyroscope") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def push(client: Any, auth: dict[str, str], body: bytes, content_type: str = "application/proto",
         **headers: str) -> Any:
    return client.post(URL, data=body, headers={**auth, "Content-Type": content_type, **headers})


def connect_error(resp: Any, status: int, code: str, words: str) -> None:
    assert resp.status_code == status, resp.data
    body = json.loads(resp.data)
    assert body["code"] == code and words in body["message"], body


def test_proto_gzip_basic_auth_maps_labels_and_tenant(client: Any, tokens: dict[str, str]) -> None:
    labels = {"service_name": "pushsvc", "__name__": "process_cpu", "region": "eu", "otel.scope.name": "sdk"}
    req = push_request(labels, (sdk_profile({"main;work;leaf": 30, "main;idle": 10}), str(uuid.uuid4())))
    resp = push(client, basic(tokens["ingest"]), gzip.compress(req.SerializeToString()),
                **{"Content-Encoding": "gzip", "X-Scope-OrgID": "team-a"})
    assert resp.status_code == 200 and resp.mimetype == "application/proto", resp.data
    got = top(client, tokens["read"], 'cpu{service="pushsvc", region="eu", tenant="team-a"}')
    assert got["total"] == 40 * PERIOD
    assert self_by_function(client, tokens["read"], 'cpu{service="pushsvc"}') == {"leaf": 30 * PERIOD,
                                                                                  "idle": 10 * PERIOD}
    values = client.get("/api/v1/labels/tenant/values", headers=bearer(tokens["read"])).get_json()
    assert "team-a" in json.dumps(values)
    names = json.dumps(client.get("/api/v1/labels", headers=bearer(tokens["read"])).get_json())
    assert "__name__" not in names and "service_name" not in names
    # the CPU column got its twin: the series has Hotpath's cpu shape (samples/count, cpu/nanoseconds)
    types = client.get("/api/v1/profile-types", headers=bearer(tokens["read"])).get_json()
    assert "cpu" in json.dumps(types)


def test_connect_json_with_and_without_gzip_bearer(client: Any, tokens: dict[str, str]) -> None:
    raw = sdk_profile({"a;b": 7})
    doc = {"series": [{"labels": [{"name": "service_name", "value": "jsonsvc"}, {"name": "__name__", "value": "process_cpu"}],
                       "samples": [{"rawProfile": base64.b64encode(raw).decode(), "ID": str(uuid.uuid4())}]}]}
    resp = push(client, bearer(tokens["ingest"]), json.dumps(doc).encode(), "application/json")
    assert resp.status_code == 200 and resp.get_json() == {}, resp.data
    doc["series"][0]["samples"][0]["ID"] = str(uuid.uuid4())
    resp = push(client, bearer(tokens["ingest"]), gzip.compress(json.dumps(doc).encode()), "application/json",
                **{"Content-Encoding": "gzip"})
    assert resp.status_code == 200, resp.data
    assert top(client, tokens["read"], 'cpu{service="jsonsvc"}')["total"] == 14 * PERIOD


def test_sample_id_makes_resends_harmless(app: Any, client: Any, tokens: dict[str, str]) -> None:
    ident = str(uuid.uuid4())
    body = push_request({"service_name": "idemsvc", "__name__": "process_cpu"},
                        (sdk_profile({"x;y": 5}), ident)).SerializeToString()
    before = n_batches(app)
    for _ in range(3):
        assert push(client, basic(tokens["ingest"]), body).status_code == 200
    assert n_batches(app) == before + 1
    assert top(client, tokens["read"], 'cpu{service="idemsvc"}')["total"] == 5 * PERIOD
    # the same ID in another series is another sample, not a duplicate
    other = push_request({"service_name": "idemsvc2", "__name__": "process_cpu"}, (sdk_profile({"x;y": 5}), ident))
    assert push(client, basic(tokens["ingest"]), other.SerializeToString()).status_code == 200
    assert n_batches(app) == before + 2


def test_native_multi_type_pprof_is_accepted(client: Any, tokens: dict[str, str]) -> None:
    raw = pprof.encode(cpu_profile({"main;go": 3}))
    req = push_request({"service_name": "gosdk", "__name__": "process_cpu"}, (raw, ""))
    assert push(client, basic(tokens["ingest"]), req.SerializeToString()).status_code == 200
    assert top(client, tokens["read"], 'cpu{service="gosdk"}')["total"] == 3 * (1_000_000_000 // 19)


def _labels_raw(name: bytes, value: bytes) -> bytes:
    """A PushRequest with one label whose bytes are given as is (protobuf refuses to write bad UTF-8)."""
    label = _field(1, name) + _field(2, value)
    return _field(1, _field(1, label) + _field(2, _field(1, sdk_profile({"a": 1}))))


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()


def test_bad_input_is_a_connect_4xx_and_stores_nothing(app: Any, client: Any, tokens: dict[str, str],
                                                       bomb: bytes) -> None:
    good = sdk_profile({"a;b": 2})
    body = push_request({"service_name": "badsvc", "__name__": "process_cpu"}, (good, "")).SerializeToString()
    ing = basic(tokens["ingest"])
    before = n_batches(app)
    connect_error(push(client, {}, body), 401, "unauthenticated", "authentication required")
    connect_error(push(client, basic("hp_wrong"), body), 401, "unauthenticated", "unknown or revoked")
    connect_error(push(client, {"Authorization": "Basic !!!"}, body), 401, "unauthenticated", "base64")
    connect_error(push(client, basic(tokens["read"]), body), 403, "permission_denied", "`ingest` scope")
    connect_error(push(client, ing, body, "text/plain"), 415, "unimplemented", "application/proto")
    connect_error(push(client, ing, body[: len(body) // 2]), 400, "invalid_argument", "truncated or malformed")
    connect_error(push(client, ing, b"{not json", "application/json"), 400, "invalid_argument", "JSON")
    connect_error(push(client, ing, b'{"series": [{"labels": [{"name": "\xff"}]}]}', "application/json"),
                  400, "invalid_argument", "UTF-8")
    connect_error(push(client, ing, _labels_raw(b"region", b"\xff\xfe")), 400, "invalid_argument", "PushRequest")
    connect_error(push(client, ing, bomb, **{"Content-Encoding": "gzip"}), 429, "resource_exhausted",
                  "decompressed")
    inner = push_request({"service_name": "badsvc"}, (bomb, "")).SerializeToString()
    connect_error(push(client, ing, inner), 429, "resource_exhausted", "decompressed")
    connect_error(push(client, ing, b"\x0a" * (9 << 20)), 429, "resource_exhausted", "exceeds the limit")
    many = push_request({f"l{i}": "v" for i in range(100_000)}, (good, "")).SerializeToString()
    connect_error(push(client, ing, many), 429, "resource_exhausted", "series labels exceed")
    bad_name = push_request({"service_name": "badsvc", "bad-name": "x"}, (good, "")).SerializeToString()
    connect_error(push(client, ing, bad_name), 400, "invalid_argument", "label name")
    dup = push_request({"service_name": "badsvc", "service": "other"}, (good, "")).SerializeToString()
    connect_error(push(client, ing, dup), 400, "invalid_argument", "both `service` and `service_name`")
    # one good sample and one broken one: the request is refused whole
    half = push_request({"service_name": "badsvc"}, (good, "1"), (b"\x0a\x09garbage", "2")).SerializeToString()
    connect_error(push(client, ing, half), 400, "invalid_argument", "series 0 sample 1")
    offcpu = pprof.encode(Profile(sample_types=(pprof.ValueType("off_cpu", "nanoseconds"),)))
    mislabeled = push_request({"service_name": "badsvc", "__name__": "process_cpu"}, (offcpu, "")).SerializeToString()
    connect_error(push(client, ing, mislabeled), 400, "invalid_argument", "__name__='process_cpu'")
    assert n_batches(app) == before
    assert top(client, tokens["read"], 'cpu{service="badsvc"}')["total"] == 0
    assert client.get("/healthz").status_code == 200
