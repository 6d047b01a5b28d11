"""End-to-end: table, sandwich, diff, wall-clock, downloads, login, theme — real server, real Chromium."""

from __future__ import annotations

import subprocess

import pytest

from tests.web.conftest import KNOWN, Page
from tests.web.helpers import frame_point, pixel, q, url_state

pytestmark = pytest.mark.browser
KNOWN_Q = '{service="known"}'


def _names(ui) -> list[str]:
    return ui.page.locator("#top-table td.fn").all_inner_texts()


def _expected_self() -> dict[str, int]:
    out: dict[str, int] = {}
    for stack, n in KNOWN.items():
        leaf = stack.split(";")[-1].removeprefix("k:")
        out[leaf] = out.get(leaf, 0) + n
    return out


def test_table_sorts_and_highlights_frames(ui):
    page = ui.open(q(query=KNOWN_Q, view="table"))
    page.locator("#top-table tbody tr").first.wait_for()
    selfs = _expected_self()
    by_self = sorted(selfs, key=lambda k: (-selfs[k], k))
    names = _names(ui)
    assert names[:3] == by_self[:3], names  # leaf 400, decode 300, hash 200
    page.locator("th button[data-sort='self']").click()  # same column: ascending
    page.wait_for_function("() => window.hotpath.state.dir === '1'")
    assert _names(ui)[-1] == "leaf"
    page.locator("th button[data-sort='total']").click()
    page.wait_for_function("() => window.hotpath.state.sort === 'total'")
    assert _names(ui)[:2] == ["main", "work"]
    assert url_state(page.url)["sort"] == "total"
    page.locator("#top-table tbody tr", has_text="hash").first.click()
    page.wait_for_function("() => window.hotpath.graph.marked && window.hotpath.graph.marked.size === 1")
    assert page.locator("#top-table tr.selected td.fn").inner_text() == "hash"
    x, y = frame_point(ui, "hash")
    # The highlight is a dark outline around the frame: its top-left inner corner is near black.
    r, g, b, _ = pixel(ui, x, y - 8)
    assert r + g + b < 200, (r, g, b)
    ui.shot("table")


def test_sandwich_shows_callers_and_callees(ui):
    page = ui.open(q(query=KNOWN_Q, view="table"))
    page.locator("#top-table tbody tr", has_text="work").first.locator("button.sw").click()
    page.wait_for_function("() => window.hotpath.state.view === 'sandwich'")
    assert url_state(page.url)["fn"] == "work"
    title = page.locator("#sw-title").inner_text()
    assert "work" in title and "total 60.0%" in title
    frame_point(ui, "main", which="callers")
    for callee in ("compute", "leaf", "hash"):
        frame_point(ui, callee, which="callees")
    callers = ui.js("() => { const m = window.hotpath.sandwich.callers.m; return [m.w[0], m.names[m.nameIdx[0]]]; }")
    assert callers == [600 * ui.js("() => window.hotpath.model.period"), "work"]
    page.mouse.click(*frame_point(ui, "compute", which="callees"))
    page.wait_for_function("() => window.hotpath.state.fn === 'compute'")
    ui.shot("sandwich")


def test_shift_click_opens_sandwich(ui):
    page = ui.open(q(query=KNOWN_Q))
    x, y = frame_point(ui, "hash")
    page.keyboard.down("Shift")
    page.mouse.click(x, y)
    page.keyboard.up("Shift")
    page.wait_for_function("() => window.hotpath.state.view === 'sandwich' && window.hotpath.state.fn === 'hash'")


def test_diff_colors_and_legend(ui):
    page = ui.open(q(query=KNOWN_Q, view="diff", rquery='{service="known-v2"}'))
    legend = page.locator("#legend").inner_text()
    assert "red: grew" in legend and "blue: shrank" in legend and "within noise" in legend
    r, g, b, _ = pixel(ui, *frame_point(ui, "hash"))
    assert r > b + 60, f"hash grew 20% -> 50%: red, got {(r, g, b)}"
    r, g, b, _ = pixel(ui, *frame_point(ui, "decode"))
    assert b > r + 40, f"decode shrank 30% -> 18.75%: blue, got {(r, g, b)}"
    page.mouse.move(*frame_point(ui, "hash"))
    tip = page.locator("#tooltip").inner_text()
    assert "left (baseline)" in tip and "20.0%" in tip and "50.0%" in tip
    # A huge threshold turns every change into noise (grey).
    page.locator("#noise").fill("1000")
    page.locator("#noise").dispatch_event("change")
    page.wait_for_function("() => window.hotpath.state.noise === '1000'")
    r, g, b, _ = pixel(ui, *frame_point(ui, "hash"))
    assert abs(r - b) < 10 and abs(r - g) < 10, "grey within noise"
    ui.shot("diff")


def test_wall_clock_splits_on_and_off_cpu(ui):
    page = ui.open(q(query=KNOWN_Q, view="wall"))
    assert "on-CPU" in page.locator("#legend").inner_text()
    m = ui.js("() => { const m = window.hotpath.model; return [m.format, m.lt[0], m.rt[0]]; }")
    assert m[0] == "wall" and m[1] > 0 and m[2] == 4_000_000_000
    x, y = frame_point(ui, "lock_wait")
    page.mouse.move(x, y)
    assert "off-CPU 1.00 s (100.0% of this frame)" in page.locator("#tooltip").inner_text()
    ui.shot("wall")


def test_downloads_pprof_folded_png(ui, go_bin, tmp_path):
    page = ui.open(q(query=KNOWN_Q))
    with page.expect_download() as dl:
        page.locator("#dl-pprof").click()
    path = tmp_path / "profile.pb.gz"
    dl.value.save_as(path)
    top = subprocess.run([go_bin, "tool", "pprof", "-top", str(path)], check=False, capture_output=True, text=True, timeout=120)
    assert top.returncode == 0, top.stderr
    assert "leaf" in top.stdout and "decode" in top.stdout
    with page.expect_download() as dl:
        page.locator("#dl-folded").click()
    folded = tmp_path / "f.txt"
    dl.value.save_as(folded)
    period = ui.js("() => window.hotpath.model.period")
    assert f"main;work;compute;leaf {400 * period}" in folded.read_text()
    with page.expect_download() as dl:
        page.locator("#dl-png").click()
    png = tmp_path / "g.png"
    dl.value.save_as(png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (ui.js("() => window.hotpath.graph.widthPx"), 5 * 18), "the whole graph, 5 rows"


def test_login_form_and_theme_and_help(browser, live_server):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    ui = Page(context, live_server)
    try:
        page = ui.page
        page.goto(f"{live_server.url}/ui/{q(query=KNOWN_Q, theme='dark')}")
        page.locator("#login").wait_for(state="visible")
        page.locator("#token").fill("hp_wrong")
        page.locator("#login-form button").click()
        page.wait_for_function("() => document.getElementById('login-error').textContent !== ''")
        page.locator("#token").fill(live_server.read_token)
        page.locator("#login-form button").click()
        page.locator("#login").wait_for(state="hidden")
        ui.wait_idle()
        assert ui.js("() => document.documentElement.dataset.theme") == "dark"
        assert ui.js("() => getComputedStyle(document.body).backgroundColor") == "rgb(21, 23, 26)"
        assert ui.js("() => window.hotpath.model.numTicks") > 0
        page.keyboard.press("?")
        page.locator("#help").wait_for(state="visible")
        page.keyboard.press("Escape")
        page.locator("#help").wait_for(state="hidden")
        ui.shot("dark")
        assert not ui.errors and not ui.dialogs
    finally:
        context.close()


def test_diff_of_two_time_ranges(ui):
    page = ui.open(q(query='{service="ranges"}', view="diff", **{"from": "now-30m", "until": "now-15m"}))
    page.locator("#rfrom").fill("now-15m")
    page.locator("#runtil").fill("now")
    with page.expect_response(lambda r: "/api/v1/diff" in r.url and "right_from=now-15m" in r.url):
        page.locator("#diff-run").click()
    ui.wait_idle()
    page.wait_for_function("() => window.hotpath.state.rfrom === 'now-15m'")
    m = ui.js("() => { const m = window.hotpath.model; return [m.leftTicks / m.period, m.rightTicks / m.period]; }")
    assert m == [1000, 1600], "left = the older batch, right = the newer one"
    r, g, b, _ = pixel(ui, *frame_point(ui, "hash"))
    assert r > b + 60, (r, g, b)
    assert url_state(page.url)["runtil"] == "now"
