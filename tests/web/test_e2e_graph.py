"""End-to-end: the flame graph against a real server with real ingested data, in real Chromium."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil

import pytest

from tests.web.conftest import ROOT, XSS_NAME
from tests.web.helpers import frame_point, painted_rows, pixel, q, url_state

pytestmark = pytest.mark.browser
KNOWN_Q = '{service="known"}'


def test_page_loads_fleet_data_and_draws_pixels(ui):
    page = ui.open()
    assert page.title() == "Hotpath"
    assert ui.js("() => window.hotpath.model.numTicks") > 0
    rows = painted_rows(ui)
    assert rows[0] > 0.95, "root row spans the canvas"
    assert sum(1 for r in rows if r > 0) >= 10, f"simulator stacks are deep: {rows[:12]}"
    quality = page.locator("#quality").inner_text()
    assert "in view" in quality
    legend = page.locator("#legend").inner_text()
    assert "kernel" in legend and "color = binary" in legend
    shot = ui.shot("fleet-flame")
    readme_shot = ROOT / "docs" / "screenshot.png"
    # The README's screenshot is refreshed on request only, so test runs leave the tree clean.
    if not readme_shot.exists() or os.environ.get("HOTPATH_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, readme_shot)


def test_known_graph_pixels_tooltip_and_quality(ui):
    page = ui.open(q(query=KNOWN_Q))
    rows = painted_rows(ui)
    # total, main, {parse, work, io, xss}, {decode, compute, hash, entry}, {leaf, vfs_read}: the canvas is
    # exactly 5 rows tall (its height follows the depth) and every row has frames on it.
    assert len(rows) == 5 and all(r > 0 for r in rows), rows
    assert rows[1] > 0.95
    assert rows[4] == pytest.approx(0.45, abs=0.01), "leaf 40% + vfs_read 5%"
    width = ui.js("() => window.hotpath.graph.widthPx")
    work = ui.js("""() => { const g = window.hotpath.graph, m = g.m;
        for (let k = 0; k < g.r.count; k++) if (m.names[m.nameIdx[g.r.node[k]]] === 'work') return g.r.pw[k]; }""")
    assert abs(work / width - 0.6) < 0.01, "work is 600 of 1000 samples"
    x, y = frame_point(ui, "work")
    assert pixel(ui, x, y)[3] == 255, "the frame is painted where the layout put it"
    page.mouse.move(x, y)
    tip = page.locator("#tooltip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    assert "work" in text and "/usr/bin/app" in text
    assert "total 31.58 s (60.0% of all)" in text, text  # 600 samples at 19 Hz
    assert "self 0 ns" in text
    kx, ky = frame_point(ui, "vfs_read")
    page.mouse.move(kx, ky)
    assert "[kernel.kallsyms]" in tip.inner_text() and "kernel" in tip.inner_text()
    quality = page.locator("#quality").inner_text()
    assert "missed stacks: 7" in quality and "unsymbolized frames: 3" in quality


def test_click_zoom_breadcrumb_reset_and_history(ui):
    page = ui.open(q(query=KNOWN_Q))
    page.mouse.click(*frame_point(ui, "work"))
    page.wait_for_function("() => window.hotpath.state.zoom.length === 2")
    assert url_state(page.url)["zoom"] == ["main", "work"]
    crumbs = page.locator("#breadcrumb").inner_text()
    assert re.search(r"all\s*›\s*main\s*›\s*work", crumbs), crumbs
    width = ui.js("() => window.hotpath.graph.widthPx")
    x, y = frame_point(ui, "compute")
    assert ui.js("""() => { const g = window.hotpath.graph, m = g.m;
        for (let k = 0; k < g.r.count; k++) if (m.names[m.nameIdx[g.r.node[k]]] === 'compute') return g.r.pw[k]; }"""
                 ) == pytest.approx(width * 400 / 600, abs=1)
    page.mouse.click(x, y)
    page.wait_for_function("() => window.hotpath.state.zoom.length === 3")
    page.locator("#breadcrumb button", has_text="work").click()
    page.wait_for_function("() => window.hotpath.state.zoom.length === 2")
    page.go_back()
    page.wait_for_function("() => window.hotpath.state.zoom.length === 3")
    assert "compute" in page.locator("#breadcrumb").inner_text()
    page.keyboard.press("Escape")
    page.wait_for_function("() => window.hotpath.state.zoom.length === 0")
    assert "zoom" not in url_state(page.url)
    page.mouse.click(*frame_point(ui, "parse"))
    page.wait_for_function("() => window.hotpath.state.zoom.length === 2")
    page.locator("#reset-zoom").click()
    page.wait_for_function("() => window.hotpath.state.zoom.length === 0")


def test_search_highlights_and_counts_nested_matches_once(ui):
    page = ui.open(q(query=KNOWN_Q))
    page.keyboard.press("/")
    assert ui.js("() => document.activeElement.id") == "search"
    page.keyboard.type("compute|leaf")
    page.wait_for_function("() => document.getElementById('matched').textContent.includes('matched')")
    # compute (400) contains leaf (400): 40%, not 80%.
    assert page.locator("#matched").inner_text().startswith("40.0% matched")
    r, g, b, _ = pixel(ui, *frame_point(ui, "compute"))
    assert r > 200 and b > 200 and g < 150, "matches drawn magenta"
    *_, ha = pixel(ui, *frame_point(ui, "hash"))
    assert ha < 255, "non-matches dimmed"
    assert url_state(page.url)["search"] == "compute|leaf"
    page.locator("#search").fill("^work$|hash")
    page.wait_for_function("() => document.getElementById('matched').textContent.startsWith('60.0%')")


def test_untrusted_function_name_is_text(ui):
    page = ui.open(q(query=KNOWN_Q, view="table"))
    cell = page.locator("#top-table td.fn", has_text="onerror")
    assert cell.inner_text() == XSS_NAME
    assert ui.js("() => document.querySelectorAll('img').length") == 0
    page.mouse.move(*frame_point(ui, XSS_NAME))
    assert page.locator("#tooltip .name").inner_text() == XSS_NAME
    page.locator("#search").fill("onerror")
    page.wait_for_function("() => document.getElementById('matched').textContent.startsWith('5.00%')")
    assert ui.dialogs == []


def test_timeline_drag_selects_range(ui):
    page = ui.open(q(**{"from": "now-1h", "until": "now"}))
    page.wait_for_function("() => window.hotpath.model && window.hotpath.model.numTicks > 0")
    box = page.locator("#timeline").bounding_box()
    assert box and box["width"] > 100
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.75, y, steps=5)
    page.mouse.up()
    page.wait_for_function("() => window.hotpath.state.from !== 'now-1h'")
    st = url_state(page.url)
    # The drag fills from/until with readable RFC 3339 times (UTC), not raw Unix seconds.
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", st["from"]), st["from"]
    t0, t1 = (int(dt.datetime.fromisoformat(st[k]).timestamp()) for k in ("from", "until"))
    assert 1500 <= t1 - t0 <= 2100, "half of the hour-long axis"
    ui.wait_idle()
    assert page.locator("#from").input_value() == st["from"]
    page.go_back()
    page.wait_for_function("() => window.hotpath.state.from === 'now-1h'")


def test_url_round_trip_restores_view(ui):
    page = ui.open(q(query=KNOWN_Q))
    page.mouse.click(*frame_point(ui, "work"))
    page.wait_for_function("() => window.hotpath.state.zoom.length === 2")
    page.locator("#search").fill("hash")
    page.wait_for_function("() => window.hotpath.state.search === 'hash'")
    page.locator("#orient").click()
    page.wait_for_function("() => window.hotpath.state.orient === 'flame'")
    url = page.url
    matched = page.locator("#matched").inner_text()
    other = ui.context.new_page()
    other.goto(url)
    other.wait_for_function("() => window.hotpath && window.hotpath.model && "
                            "document.getElementById('matched').textContent !== ''")
    assert other.locator("#matched").inner_text() == matched
    assert other.locator("#search").input_value() == "hash"
    assert "work" in other.locator("#breadcrumb").inner_text()
    assert other.evaluate("() => window.hotpath.graph.zoom > 0 && window.hotpath.graph.orient") == "flame"
    assert other.locator("#orient").inner_text() == "flame"
    other.close()


def test_empty_and_error_states(ui):
    page = ui.open(q(query='{service="does-not-exist"}'))
    page.wait_for_function("() => document.getElementById('status').textContent.includes('No data')")
    page.goto(f"{ui.server.url}/ui/{q(query='{service=')}")
    page.wait_for_function("() => document.getElementById('status').classList.contains('error')")
    assert "selector" in page.locator("#status").inner_text().lower()
    page.route("**/api/v1/flamegraph*", lambda route: route.abort())
    page.goto(f"{ui.server.url}/ui/{q(query=KNOWN_Q)}")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('unreachable')")


def test_grouped_frames_drill_in_by_prefix(ui):
    page = ui.open()
    before = ui.js("() => window.hotpath.model.n")
    group = ui.js("() => window.hotpath.widestGroup()")
    assert group is not None, "the fleet graph has frames grouped into hatched boxes"
    box = page.locator("#graph canvas.fg-canvas").bounding_box()
    page.mouse.move(box["x"] + group["x"], box["y"] + group["y"])
    tip = page.locator("#tooltip").inner_text()
    assert "click to drill in" in tip
    with page.expect_response(lambda r: "/api/v1/flamegraph" in r.url and "prefix=" in r.url) as resp:
        page.mouse.click(box["x"] + group["x"], box["y"] + group["y"])
    assert resp.value.ok
    ui.wait_idle()
    page.wait_for_function("() => window.hotpath.state.prefix.length > 0")
    assert url_state(page.url)["prefix"] == group["path"]
    assert "drilled into" in page.locator("#breadcrumb").inner_text()
    # The focused graph is zoomed on the prefix and shows frames the full graph had to group.
    zoom_path = ui.js("""() => { const m = window.hotpath.model; const out = [];
        for (let i = window.hotpath.graph.zoom; i > 0; i = m.parent[i]) out.push(m.names[m.nameIdx[i]]);
        return out.reverse(); }""")
    assert zoom_path == group["path"]
    assert ui.js("() => window.hotpath.model.n") > 1 and before > 1
    page.locator("#breadcrumb button.prefix").click()
    page.wait_for_function("() => window.hotpath.state.prefix.length === 0")


def test_selector_autocomplete_and_presets(ui):
    page = ui.open()
    page.locator("#query").click()
    page.locator("#query").type("{serv")
    page.wait_for_function("() => [...document.querySelectorAll('#query-suggest option')]"
                           ".some(o => o.value === '{service=\"')")
    page.locator("#query").fill("")
    page.locator("#query").type('{service="kn')
    page.wait_for_function("() => [...document.querySelectorAll('#query-suggest option')]"
                           ".some(o => o.value === '{service=\"known\"}')")
    page.locator("#query").fill('{service="known"}')
    page.locator("#query").press("Enter")
    page.wait_for_function("() => window.hotpath.state.query === '{service=\"known\"}'")
    ui.wait_idle()
    assert ui.js("() => window.hotpath.model.numTicks") == 1000 * ui.js("() => window.hotpath.model.period")
    page.locator("#preset").select_option("now-6h")
    page.wait_for_function("() => window.hotpath.state.from === 'now-6h'")
    assert url_state(page.url)["from"] == "now-6h"


def test_thousand_deep_stack_renders_scrolls_and_zooms(ui):
    page = ui.open(q(query='{service="deep"}'))
    assert ui.js("() => window.hotpath.model.levels") == 1001
    scroll_h = ui.js("() => document.getElementById('graph').scrollHeight")
    assert scroll_h == 1001 * 18, "the scroll container grows with the depth"
    ui.js("() => { const g = document.getElementById('graph'); g.scrollTop = g.scrollHeight; }")
    page.wait_for_timeout(100)
    x, y = frame_point(ui, "d999")
    assert pixel(ui, x, y)[3] == 255, "the deepest frame is painted once scrolled into view"
    page.mouse.move(x, y)
    assert "d999" in page.locator("#tooltip .name").inner_text()
    page.mouse.click(x, y)
    page.wait_for_function("() => window.hotpath.state.zoom.length === 1000")
    assert ui.js("() => window.hotpath.graph.r.levels") == 1001
    assert "d999" in page.locator("#breadcrumb").inner_text()
    page.keyboard.press("Escape")
    page.wait_for_function("() => window.hotpath.state.zoom.length === 0")
