"""Other profilers' wire protocols, decoded to Hotpath's model (pure: bytes in, tables and labels out).

`pyroscope`: Grafana Pyroscope's push API and legacy `/ingest`; `otlp`: OpenTelemetry profiles.
The HTTP edges are server/api/pyroscope.py and server/api/otlp.py; both end in the native ingest path.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """A request that does not follow the protocol; the message says what is wrong (a 400)."""


def label_name(key: str) -> str:
    """A foreign label or attribute key as a Hotpath label name: dots become underscores
    (`k8s.pod.name` -> `k8s_pod_name`), as Prometheus names OTel attributes, so series from the
    Pyroscope and OTel SDKs keep the names their users query them by elsewhere. (Dotted names are
    valid too -- profiler/selector.LABEL_NAME_CHARS -- and native ingest stores them as sent.)"""
    return key.replace(".", "_")
