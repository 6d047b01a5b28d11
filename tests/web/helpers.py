"""Small helpers for the UI tests: where a frame is drawn, canvas pixels, URL state."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any


def frame_point(ui: Any, name: str, which: str = "graph") -> tuple[float, float]:
    """Page coordinates of the center of the drawn rectangle of the frame `name`."""
    target = "window.hotpath.graph" if which == "graph" else f"window.hotpath.sandwich.{which}"
    pt = ui.js(f"""(name) => {{
        const g = {target};
        const c = window.hotpath.frameCenter(name, g);
        if (!c) return null;
        const b = g.canvas.getBoundingClientRect();
        return [b.left + c.x, b.top + c.y];
    }}""", name)
    assert pt is not None, f"frame {name!r} is not drawn"
    return pt[0], pt[1]


def pixel(ui: Any, x: float, y: float, which: str = "graph") -> tuple[int, int, int, int]:
    """RGBA of the canvas pixel under page point (x, y)."""
    target = "window.hotpath.graph" if which == "graph" else f"window.hotpath.sandwich.{which}"
    return tuple(ui.js(f"""([x, y]) => {{
        const g = {target};
        const b = g.canvas.getBoundingClientRect();
        const d = window.devicePixelRatio || 1;
        return [...g.canvas.getContext('2d').getImageData(Math.floor((x - b.left) * d),
                                                          Math.floor((y - b.top) * d), 1, 1).data];
    }}""", [x, y]))


def painted_rows(ui: Any) -> list[float]:
    """Fraction of non-transparent pixels on the middle line of each 18 px row of the main canvas."""
    return ui.js("""() => {
        const c = window.hotpath.graph.canvas;
        const d = window.devicePixelRatio || 1;
        const g = c.getContext('2d');
        const out = [];
        for (let y = 9 * d; y < c.height; y += 18 * d) {
            const row = g.getImageData(0, Math.floor(y), c.width, 1).data;
            let n = 0;
            for (let k = 3; k < row.length; k += 4) if (row[k] > 0) n++;
            out.push(n / c.width);
        }
        return out;
    }""")


def url_state(url: str) -> dict[str, Any]:
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    out: dict[str, Any] = {k: v[0] for k, v in q.items()}
    for k in ("zoom", "prefix"):
        if k in out:
            out[k] = json.loads(out[k])
    return out


def q(**params: str) -> str:
    """A `?…` query string for /ui/."""
    return "?" + urllib.parse.urlencode(params)
