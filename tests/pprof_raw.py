"""Hand-encoded pprof protobuf, for inputs our encoder refuses to produce (invalid UTF-8, unpacked fields, ...)."""

from __future__ import annotations


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(num: int, payload: bytes) -> bytes:
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def _int_field(num: int, value: int) -> bytes:
    return varint(num << 3) + varint(value)


def _packed(num: int, values: list[int]) -> bytes:
    return _field(num, b"".join(varint(v) for v in values))


def raw_profile(function_names: list[bytes], values: list[int], period: int = 10_000_000) -> bytes:
    """A cpu pprof with one sample per function (each its own one-frame stack); names as raw bytes."""
    strings = [b"", b"samples", b"count", b"cpu", b"nanoseconds", *function_names]
    body = _field(1, _int_field(1, 1) + _int_field(2, 2))  # sample_type samples/count
    body += _field(1, _int_field(1, 3) + _int_field(2, 4))  # sample_type cpu/nanoseconds
    for i, value in enumerate(values):
        body += _field(2, _packed(1, [i + 1]) + _packed(2, [value, value * period]))
    for i in range(len(function_names)):
        body += _field(4, _int_field(1, i + 1) + _field(4, _int_field(1, i + 1)))  # location -> line -> function
        body += _field(5, _int_field(1, i + 1) + _int_field(2, 5 + i))  # function id, name index
    for s in strings:
        body += _field(6, s)
    body += _field(11, _int_field(1, 3) + _int_field(2, 4))  # period_type cpu/nanoseconds
    body += _int_field(12, period)
    return body
