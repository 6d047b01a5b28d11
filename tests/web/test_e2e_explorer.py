"""End-to-end: the explorer's robustness and exact numbers (issue 19), in real Chromium on known data."""

from __future__ import annotations

import pytest

from tests.web.helpers import q

pytestmark = pytest.mark.browser
KNOWN_Q = '{service="known"}'


def _loaded(ui):
    ui.page.wait_for_function("() => window.hotpath.model && window.hotpath.model.numTicks > 0"
                              " && !document.getElementById('graph').classList.contains('stale')")


def test_bad_time_never_needs_a_reload(ui):
    page = ui.open(q(query=KNOWN_Q))
    _loaded(ui)
    ticks = ui.js("() => window.hotpath.model.numTicks")
    page.locator("#from").fill("yesterday")
    page.locator("#run").click()
    err = page.locator("#err-from")
    err.wait_for(state="visible")
    assert "yesterday" in err.inner_text() and "now-1h" in err.inner_text()
    assert page.locator("#from").get_attribute("aria-invalid") == "true"
    # The last good graph stays, marked stale; the URL never took the bad value.
    assert ui.js("() => window.hotpath.model.numTicks") == ticks
    assert "stale" in page.locator("#graph").get_attribute("class")
    assert "yesterday" not in page.url
    # Every way out works without a reload: a good value, a preset, a view switch.
    page.locator("#from").fill("now-1h")
    page.locator("#run").click()
    _loaded(ui)
    assert err.is_hidden()
    page.locator("#from").fill("garbage")
    page.locator("#run").click()
    err.wait_for(state="visible")
    page.locator("#preset").select_option("now-6h")
    page.wait_for_function("() => window.hotpath.state.from === 'now-6h'")
    _loaded(ui)
    assert err.is_hidden()
    page.locator("#from").fill("also bad")
    page.locator("#run").click()
    err.wait_for(state="visible")
    page.locator("#views button[data-view='table']").click()
    page.wait_for_function("() => window.hotpath.state.view === 'table'")
    _loaded(ui)
    assert err.is_hidden()
    # A bad time straight from a shared URL: the error sits next to the field, the page stays usable.
    page.goto(f"{ui.server.url}/ui/{q(query=KNOWN_Q, until='tomorrow')}")
    page.locator("#err-until").wait_for(state="visible")
    assert "tomorrow" in page.locator("#err-until").inner_text()
    page.locator("#until").fill("now")
    page.locator("#run").click()
    _loaded(ui)
    assert ui.js("() => window.hotpath.model.numTicks") == ticks


def test_server_errors_keep_last_good_graph_marked_stale(ui):
    page = ui.open(q(query=KNOWN_Q))
    _loaded(ui)
    ticks = ui.js("() => window.hotpath.model.numTicks")
    # A selector the server refuses: its message next to the selector field, the graph kept.
    page.locator("#query").fill('{service=')
    page.locator("#run").click()
    page.locator("#err-query").wait_for(state="visible")
    assert "selector" in page.locator("#err-query").inner_text()
    assert "stale" in page.locator("#graph").get_attribute("class")
    assert ui.js("() => window.hotpath.model.numTicks") == ticks
    assert ui.js("() => window.hotpath.graph.canvas.width") > 0
    # The server goes away: still the last graph, marked stale, and it recovers when it is back.
    page.route("**/api/v1/flamegraph*", lambda route: route.abort())
    page.locator("#query").fill(KNOWN_Q)
    page.locator("#run").click()
    page.wait_for_function("() => document.getElementById('status').textContent.includes('unreachable')")
    assert "stale" in page.locator("#status").inner_text()
    assert "stale" in page.locator("#graph").get_attribute("class")
    assert ui.js("() => window.hotpath.model.numTicks") == ticks
    page.unroute("**/api/v1/flamegraph*")
    page.locator("#run").click()
    _loaded(ui)
    assert page.locator("#err-query").is_hidden()


def _table(ui):
    """Table rows as {function: (self text, total text)} once the exact numbers are drawn."""
    ui.page.wait_for_function("() => document.getElementById('table-note').textContent.startsWith('Exact')")
    return ui.js("""() => Object.fromEntries([...document.querySelectorAll('#top-table tbody tr')].map(
        (tr) => [tr.dataset.name, [tr.children[2].textContent, tr.children[3].textContent]]))""")


def test_table_is_exact_when_the_graph_is_trimmed(ui):
    # Four nodes: root, main and "other" boxes hide every other frame of the known profile.
    page = ui.open(q(query=KNOWN_Q, view="table", nodes="4"))
    assert ui.js("() => window.hotpath.model.n") <= 4
    assert ui.js("() => window.hotpath.model.others.length") >= 1
    rows = _table(ui)
    # Ground truth from KNOWN (1000 samples): self and total as shares of all.
    expect = {"leaf": ("40.0%", "40.0%"), "hash": ("20.0%", "20.0%"), "decode": ("30.0%", "30.0%"),
              "vfs_read": ("5.00%", "5.00%"), "work": ("0%", "60.0%"), "compute": ("0%", "40.0%"),
              "main": ("0%", "100.0%"), "entry_SYSCALL_64": ("0%", "5.00%")}
    for fn, (self_pct, total_pct) in expect.items():
        assert fn in rows, f"{fn} missing from the table: {sorted(rows)}"
        assert rows[fn][0].endswith(self_pct) and rows[fn][1].endswith(total_pct), (fn, rows[fn])
    assert not any(name.startswith("other (") for name in rows)
    assert "all 11 functions" in page.locator("#table-note").inner_text()
    # Search filters the table too.
    page.locator("#search").fill("^(hash|leaf)$")
    page.wait_for_function("() => document.querySelectorAll('#top-table tbody tr').length === 2")
    assert set(_table(ui)) == {"hash", "leaf"}
    assert "2 of 11 rows" in page.locator("#table-note").inner_text()


def test_table_keeps_numbers_visible_with_long_paths(ui):
    from profiler import pprof
    from profiler.model import Frame, FrameKind, Sample
    from profiler.types import new_cpu_profile
    from tests.web.conftest import ingest

    long_bin = "/opt/" + "/".join(f"very-long-directory-name-{k}" for k in range(12)) + "/libsomething-huge.so.1"
    long_fn = "ns::" * 30 + "the_function_that_matters"
    prof = new_cpu_profile(19, time_nanos=int((ui.server.t_known) * 1e9), duration_nanos=10_000_000_000)
    prof.samples.append(Sample((Frame("main", "/usr/bin/app", FrameKind.NATIVE), Frame(long_fn, long_bin, FrameKind.NATIVE)),
                               (10, 10 * prof.period)))
    ingest(ui.server.url, ui.server.ingest_token, pprof.encode(prof), service="longpaths", host="h1")
    page = ui.open(q(query='{service="longpaths"}', view="table"))
    _table(ui)
    row = page.locator("#top-table tbody tr", has_text="the_function")
    assert row.locator("td.bin").inner_text() == "libsomething-huge.so.1"
    assert row.locator("td.bin").get_attribute("title") == long_bin
    for cell in row.locator("td.num").all():
        box = cell.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 1400, box
        assert cell.inner_text().endswith("100.0%")


def _ingest_stacks(ui, service, stacks):
    from profiler import pprof
    from tests.web.conftest import ingest, known_profile

    ingest(ui.server.url, ui.server.ingest_token, pprof.encode(known_profile(stacks, ui.server.t_known)),
           service=service, host="h1")


def test_collapsed_boxes_under_the_root_expand_and_zoom(ui):
    # 10 heavy root functions and 290 of one sample each (each under a child "leaf"): with 50 nodes the
    # server folds most root functions into one "other" box directly under the root.
    stacks = {f"r{k}": 10_000 for k in range(10)} | {f"r{k};leaf{k}": 1 for k in range(10, 300)}
    _ingest_stacks(ui, "wide", stacks)
    page = ui.open(q(query='{service="wide"}', nodes="50"))
    other = ui.js("""() => { const m = window.hotpath.model, g = window.hotpath.graph;
        for (let i = 1; i < m.n; i++) if (m.isOther[i] && m.parent[i] === 0) {
            const c = g.centerOf(i); const b = g.canvas.getBoundingClientRect();
            return c && [b.left + c.x, b.top + c.y]; }
        return null; }""")
    assert other, "an 'other' box directly under the root"
    page.mouse.move(*other)
    assert "click to expand" in page.locator("#tooltip").inner_text()
    with page.expect_response(lambda r: "/api/v1/flamegraph" in r.url and "max_nodes=50&" not in r.url
                              and not r.url.endswith("max_nodes=50")):
        page.mouse.click(*other)
    ui.wait_idle()
    page.wait_for_function("() => Number(window.hotpath.state.nodes) > 50")
    names = set(ui.js("() => { const m = window.hotpath.model; return [...m.nameIdx].map((j) => String(m.names[j])); }"))
    assert {f"r{k}" for k in range(300)} <= names and "leaf299" in names, "every root function is a frame now"
    assert ui.js("() => window.hotpath.model.others.length") == 0
    # The one-sample functions are far under a pixel: the layout groups them under the root, and
    # clicking that group zooms into a member instead of saying "find them elsewhere".
    group = ui.js("() => window.hotpath.widestGroup()")
    assert group is not None and group["path"] == []
    box = page.locator("#graph canvas.fg-canvas").bounding_box()
    page.mouse.move(box["x"] + group["x"], box["y"] + group["y"])
    assert "click to zoom in" in page.locator("#tooltip").inner_text()
    page.mouse.click(box["x"] + group["x"], box["y"] + group["y"])
    page.wait_for_function("() => window.hotpath.state.zoom.length === 1")
    assert ui.js("() => window.hotpath.state.zoom[0]").startswith("r")
    assert ui.js("() => window.hotpath.graph.zoom") > 0


def test_detail_cap_is_measured_and_raisable(ui):
    # 12,000 distinct two-frame stacks under main: 24,002 nodes, more than the old fixed cap of 16,384.
    stacks = {f"main;g{k};h{k}": 1 + k % 3 for k in range(12_000)}
    _ingest_stacks(ui, "big", stacks)
    page = ui.page
    with page.expect_response(lambda r: "/api/v1/flamegraph" in r.url) as resp:
        ui.open(q(query='{service="big"}', nodes="16384"))
    # Measured on the first load of this browser profile, then remembered (stable across loads).
    cal = ui.js("() => window.hotpath.calibration")
    assert cal["nodes"] >= 10_000 and cal["zoomMs"] > 0 and cal["cached"], cal
    assert cal["cap"] in (16384, 32768, 65536, 131072, 200000), cal
    assert resp.value.headers.get("content-encoding") == "gzip", "flame graphs are sent compressed"
    assert "max_nodes=16384" in resp.value.url
    assert ui.js("() => window.hotpath.model.others.length") > 0, "16,384 nodes cannot hold 24,002"
    assert page.locator("#nodes option").first.inner_text() == f"auto ({cal['cap']:,})"
    with page.expect_response(lambda r: "/api/v1/flamegraph" in r.url and "max_nodes=65536" in r.url):
        page.locator("#nodes").select_option("65536")
    ui.wait_idle()
    page.wait_for_function("() => window.hotpath.model && window.hotpath.model.others.length === 0")
    assert "nodes=65536" in page.url
    assert ui.js("() => window.hotpath.model.n") == 24_002
    # auto: the request carries the measured cap.
    with page.expect_response(lambda r: "/api/v1/flamegraph" in r.url and f"max_nodes={cal['cap']}" in r.url):
        page.locator("#nodes").select_option("")


def test_labels_keep_the_function_name(ui):
    name = "service_zero_zero::module_twenty_nine::fn_parse_request_body"
    _ingest_stacks(ui, "labels", {f"main;{name}": 200, "main;other_work": 800})
    ui.open(q(query='{service="labels"}'))
    # 20% of 1400 px: room for ~38 characters, fewer than the name's 61.
    label = ui.js("""(name) => { const g = window.hotpath.graph, m = g.m;
        for (let k = 0; k < g.r.count; k++) if (String(m.names[m.nameIdx[g.r.node[k]]]) === name) return g.labelOf(k);
        return null; }""", name)
    assert label == "s::m::fn_parse_request_body", label


def test_timeline_steps_follow_the_data_interval_and_show_cores(ui):
    # The fleet simulator: 4 hosts each send a 10 s batch every 10 s of 120 stacks x (1 + geometric(0.5))
    # samples at 19 Hz: a steady 4 * 120 * 3 / 19 / 10 = 7.58 cores from 30 to 5 minutes ago.
    page = ui.open(q(query='{service=~"svc-.*"}'))
    page.wait_for_function("() => window.hotpath.timeline.points.length > 20")
    tl = ui.js("() => ({step: window.hotpath.timeline.step, points: window.hotpath.timeline.points,"
               " label: window.hotpath.timeline.peakLabel})")
    assert tl["step"] % 10 == 0, tl["step"]
    inner = [v for _t, v in tl["points"] if v > 0][2:-2]  # the simulated half hour, without its edges
    assert len(inner) > 30
    assert max(inner) / min(inner) < 1.35, "a steady load draws steady bars"
    mean = sum(inner) / len(inner)
    assert 6.8 < mean < 8.4, mean
    assert tl["label"].startswith("peak ") and tl["label"].endswith(" cores"), tl["label"]


def test_group_by_stacks_the_timeline_per_label_value(ui):
    # 4 simulated hosts over 3 services (host % 3): svc-00 has two hosts, the others one each.
    page = ui.open(q(query='{service=~"svc-.*"}'))
    with page.expect_response(lambda r: "/api/v1/series" in r.url and "group_by=service" in r.url):
        page.locator("#groupby").select_option("service")
    page.wait_for_function("() => document.querySelectorAll('#timeline-legend .item').length === 3")
    assert "groupby=service" in page.url
    shares = ui.js("""() => Object.fromEntries([...document.querySelectorAll('#timeline-legend .item')].map(
        (e) => [e.dataset.group, parseFloat(e.textContent.split(' ').pop())]))""")
    assert set(shares) == {"svc-00", "svc-01", "svc-02"}
    assert shares["svc-00"] == pytest.approx(50, abs=4) and shares["svc-01"] == pytest.approx(25, abs=4)
    # The stack adds up to the ungrouped total at every step.
    gap = ui.js("""() => { const tl = window.hotpath.timeline; let worst = 0;
        for (const [t, v] of tl.points) { let s = 0; for (const g of tl.groups) s += (g.values.get(t) || 0) * tl.rate.scale;
            worst = Math.max(worst, Math.abs(s - v)); }
        return worst; }""")
    assert gap < 1e-9
    # Per-sample labels group too: the simulator's processes.
    page.locator("#groupby").select_option("process")
    page.wait_for_function("() => [...document.querySelectorAll('#timeline-legend .item')].some("
                           "(e) => e.dataset.group.startsWith('svc-00-w'))")


def test_quality_strip_is_one_line_expandable_and_says_what_it_covers(ui):
    page = ui.open(q(query='{service="known", process="app"}'))
    strip = page.locator("#quality")
    assert strip.bounding_box()["height"] <= 26, "one line"
    assert "missed stacks: 7" in strip.inner_text()
    assert "not narrowed by process" in strip.inner_text()
    page.locator("#quality .quality-toggle").click()
    assert "expanded" in strip.get_attribute("class")
    page.locator("#quality .quality-toggle").click()
    assert strip.bounding_box()["height"] <= 26
    # The diff legend stays in a 900 px viewport.
    diff = q(query=KNOWN_Q, rquery='{service="known-v2"}', view="diff")
    page.goto(f"{ui.server.url}/ui/{diff}")
    ui.wait_idle()
    page.wait_for_function("() => document.getElementById('legend').textContent.includes('grew')")
    legend = page.locator("#legend").bounding_box()
    assert legend["y"] + legend["height"] <= 900, legend


def test_binaries_in_the_legend_never_share_a_color(ui):
    import colorsys
    import re as _re

    from profiler import pprof
    from profiler.model import Frame, FrameKind, Sample
    from profiler.types import new_cpu_profile
    from tests.web.conftest import ingest

    # The binaries that collided on a real host (libpython/gzip/libc one pink; postgres/ad-hoc/unknown one green).
    bins = ["/usr/lib/libpython3.11.so.1.0", "/usr/bin/gzip", "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/postgresql/16/bin/postgres", "/tmp/adhoc-binary", ""]
    prof = new_cpu_profile(19, time_nanos=int(ui.server.t_known * 1e9), duration_nanos=10_000_000_000)
    for k, b in enumerate(bins):
        prof.samples.append(Sample((Frame("main", "/usr/bin/app", FrameKind.NATIVE), Frame(f"f{k}", b, FrameKind.NATIVE)),
                                   (100 - k, (100 - k) * prof.period)))
    ingest(ui.server.url, ui.server.ingest_token, pprof.encode(prof), service="colors", host="h1")
    page = ui.open(q(query='{service="colors"}'))
    colors = page.locator("#legend .item[data-binary] .swatch").evaluate_all(
        "(els) => els.map((e) => getComputedStyle(e).backgroundColor)")
    assert len(colors) == 7  # the six plus /usr/bin/app (main)
    rgb = [tuple(int(v) for v in _re.findall(r"\d+", c)[:3]) for c in colors]
    for i in range(len(rgb)):
        for j in range(i):
            dist = sum((a - b) ** 2 for a, b in zip(rgb[i], rgb[j])) ** 0.5
            assert dist > 40, (colors[i], colors[j])
    # The graph uses the legend's colors: a frame of gzip is painted in gzip's legend hue family.
    gzip_frame = ui.js("""() => { const g = window.hotpath.graph, m = g.m;
        for (let j = 0; j < m.names.length; j++) if (m.binaries[j] === '/usr/bin/gzip') return g.nameColors[j]; }""")
    legend_gzip = page.locator('#legend .item[data-binary="/usr/bin/gzip"] .swatch').evaluate(
        "(e) => getComputedStyle(e).backgroundColor")
    r, g, b = (int(v) / 255 for v in _re.findall(r"\d+", legend_gzip)[:3])
    legend_hue = colorsys.rgb_to_hls(r, g, b)[0] * 360
    frame_hue = float(_re.match(r"hsl\((\d+)", gzip_frame).group(1))
    assert abs(legend_hue - frame_hue) < 3, (gzip_frame, legend_gzip)
