"""End-to-end: a memory profile type picked in the UI shows bytes, and the timeline agrees with the flame graph."""

from __future__ import annotations

import time

import pytest

from tests.web.conftest import ingest
from tests.web.helpers import q

pytestmark = pytest.mark.browser
MIB = 1 << 20


def test_memory_type_shows_bytes_and_timeline_agrees_on_the_average(ui):
    from profiler import pprof
    from profiler.model import Profile, Sample, ValueType
    from tests.web.conftest import _frame

    types = (ValueType("alloc_objects", "count"), ValueType("alloc_space", "bytes"),
             ValueType("inuse_objects", "count"), ValueType("inuse_space", "bytes"))
    now = int(time.time())
    for i in range(6):  # six snapshots of the same 64 MiB live heap, 30 s apart
        prof = Profile(sample_types=types, period_type=ValueType("space", "bytes"), period=512 * 1024,
                       time_nanos=(now - 400 + 30 * i) * 1_000_000_000)
        prof.samples.append(Sample((_frame("main"), _frame("holdHeap")), (64, 64 * MIB, 64, 64 * MIB)))
        ingest(ui.server.url, ui.server.ingest_token, pprof.encode(prof), service="heapui")
    page = ui.open(q(type="memory:inuse_space", query='{service="heapui"}', **{"from": "now-15m", "until": "now"}))
    options = page.locator("#type option").all_inner_texts()
    assert {"memory:inuse_space", "memory:alloc_space", "memory:alloc_objects"} <= set(options), options
    assert page.locator("#type").input_value() == "memory:inuse_space"
    page.wait_for_function("() => window.hotpath.model && window.hotpath.model.numTicks > 0")
    assert ui.js("() => window.hotpath.model.numTicks") == 64 * MIB  # the average, not 6x
    assert "64.00 MiB" in page.locator("body").inner_text()
    page.wait_for_function("() => window.hotpath.timeline.points.some((p) => p[1] > 0)")
    points = ui.js("() => window.hotpath.timeline.points.filter((p) => p[1] > 0).map((p) => p[1])")
    assert points and set(points) == {64 * MIB}, points  # every point is the heap, as the flame graph says
    assert ui.js("() => window.hotpath.timeline.unit") == "bytes"
    ui.shot("memory-type")
