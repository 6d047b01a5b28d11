"""Pure parts of the Pyroscope protocols: legacy names, `lines`, label mapping, sample_type_config."""

from __future__ import annotations

import pytest

from server.protocols import ProtocolError, label_name
from server.protocols.pyroscope import (
    lines_to_folded,
    map_labels,
    parse_legacy_name,
    parse_sample_type_config,
)


def test_legacy_names() -> None:
    name = parse_legacy_name("my.app.cpu{env=prod, zone = b,k8s.pod=x-1}")
    assert (name.service, name.suffix) == ("my.app", "cpu")
    assert name.labels == {"env": "prod", "zone": "b", "k8s_pod": "x-1"}
    assert parse_legacy_name("app.inuse_space").suffix == "inuse_space"
    assert parse_legacy_name("app.unknownsuffix").service == "app.unknownsuffix"
    assert parse_legacy_name("app{}").labels == {}
    assert parse_legacy_name("app{__name__=x,service_name=y}").labels == {}
    for bad in ("", "app{a=b", "app{a}", "app{a=1,a=2}", ".cpu", "{a=b}"):
        with pytest.raises(ProtocolError):
            parse_legacy_name(bad)


def test_lines_counts_each_line() -> None:
    assert lines_to_folded("a;b\n\na;b\r\na;c\n") == "a;b 2\na;c 1\n"
    assert lines_to_folded("") == ""


def test_label_mapping() -> None:
    labels, name = map_labels([("service_name", "api"), ("__name__", "process_cpu"), ("otel.scope.name", "s")],
                              tenant="t1")
    assert labels == {"service": "api", "otel_scope_name": "s", "tenant": "t1"} and name == "process_cpu"
    with pytest.raises(ProtocolError, match="twice"):
        map_labels([("a", "1"), ("a", "2")])
    with pytest.raises(ProtocolError, match="both"):
        map_labels([("service", "a"), ("service_name", "b")])
    with pytest.raises(ProtocolError, match="X-Scope-OrgID"):
        map_labels([("tenant", "a")], tenant="b")
    assert label_name("k8s.pod.name") == "k8s_pod_name"


def test_sample_type_config() -> None:
    assert parse_sample_type_config('{"cpu": {"units": "samples"}}') == {"cpu": {"units": "samples"}}
    for bad in ("[1]", "{", '{"cpu": 1}'):
        with pytest.raises(ProtocolError):
            parse_sample_type_config(bad)
