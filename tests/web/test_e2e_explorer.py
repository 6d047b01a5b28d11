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
