"""Other profilers' wire protocols, decoded to Hotpath's model (pure: bytes in, tables and labels out).

`pyroscope`: Grafana Pyroscope's push API and legacy `/ingest`; `otlp`: OpenTelemetry profiles.
The HTTP edges are server/api/pyroscope.py and server/api/otlp.py; both end in the native ingest path.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """A request that does not follow the protocol; the message says what is wrong (a 400)."""


def label_name(key: str) -> str:
    """A foreign label or attribute key as a Hotpath label name: dots become underscores
    (`k8s.pod.name` -> `k8s_pod_name`), as Prometheus names OTel attributes, because the query
    selector's label names are `[A-Za-z_][A-Za-z0-9_]*`."""
    return key.replace(".", "_")
