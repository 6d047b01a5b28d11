"""server/storage/codec.py: the column codecs round-trip and refuse corrupt input."""

from __future__ import annotations

import numpy as np
import pytest

from server.storage import codec


def test_codecs_round_trip() -> None:
    rng = np.random.default_rng(3)
    ids = np.sort(rng.integers(0, 5_000_000, 1000))
    assert np.array_equal(codec.unpack_sorted_ids(codec.pack_sorted_ids(ids), ids.size), ids)
    counts = rng.integers(1, 50, 1000)
    vals = np.stack([counts, counts * 52_631_578, rng.integers(-5, 5, 1000)], axis=1)
    packed = codec.pack_values(vals)
    assert np.array_equal(codec.unpack_values(packed, 1000), vals)
    assert len(packed) < 1000 * 10  # count column narrow, ns column derived, signed column raw
    with pytest.raises(codec.CodecError):
        codec.unpack_sorted_ids(b"\x02", 3)
