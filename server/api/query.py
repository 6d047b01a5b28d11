"""Query endpoints: series, flamegraph, diff, wallclock, top, pprof, folded."""

from __future__ import annotations

import functools
import gzip
import json
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from profiler.errors import SelectorError
from server import deadline, render
from server.api.common import ApiError, requires, state
from server.timeparse import TimeError, parse_range

bp = Blueprint("query", __name__, url_prefix="/api/v1")
MAX_POINTS = 11_000


def timed(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for query views: observe the latency, and run the view within the query limits
    (QUERY_TIMEOUT_S answers 503, QUERY_MAX_STACKS answers 422; either way the worker is free)."""

    def wrap(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def inner(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            cfg = state().config
            try:
                with deadline.limits(cfg["QUERY_TIMEOUT_S"], cfg["QUERY_MAX_STACKS"]):
                    return view(*args, **kwargs)
            except deadline.QueryTimeout as exc:
                raise ApiError(503, str(exc), "timeout") from None
            except deadline.QueryTooLarge as exc:
                raise ApiError(422, str(exc), "budget") from None
            finally:
                state().metrics.query_seconds.labels(name).observe(time.perf_counter() - started)

        return inner

    return wrap


@bp.after_request
def compress(resp: Response) -> Response:
    """Gzip JSON answers for clients that accept it: flame graphs are megabytes of digits that
    shrink ~10x, which is most of the wait on a remote link."""
    if (resp.status_code != 200 or resp.direct_passthrough or resp.mimetype != "application/json"
            or "gzip" not in request.headers.get("Accept-Encoding", "").lower()
            or "Content-Encoding" in resp.headers):
        return resp
    body = resp.get_data()
    if len(body) < 2048:
        return resp
    resp.set_data(gzip.compress(body, compresslevel=5))
    resp.headers["Content-Encoding"] = "gzip"
    resp.headers.add("Vary", "Accept-Encoding")
    return resp


def selector_arg(name: str = "query", default: str | None = "cpu{}") -> Any:
    from profiler.selector import parse_selector

    text = request.args.get(name, default)
    if text is None or not text.strip():
        raise ApiError(400, f"missing `{name}` parameter (a selector such as cpu{{service=\"api\"}})")
    try:
        return parse_selector(text)
    except SelectorError as exc:
        raise ApiError(400, f"bad selector in `{name}`: {exc}", "selector") from None


def range_args(start_name: str = "from", end_name: str = "until", fallback: tuple[str, str] | None = None
               ) -> tuple[int, int]:
    start = request.args.get(start_name) or (request.args.get(fallback[0]) if fallback else None)
    end = request.args.get(end_name) or (request.args.get(fallback[1]) if fallback else None)
    try:
        return parse_range(start, end, time.time())
    except TimeError as exc:
        raise ApiError(400, f"{start_name}/{end_name}: {exc}") from None


def int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"`{name}` must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"`{name}` must be between {low} and {high}, got {value}")
    return value


def prefix_arg() -> list[str] | None:
    raw = request.args.get("prefix")
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, "`prefix` must be a JSON array of function names, e.g. [\"main\",\"work\"]")
    return value


def max_nodes_arg() -> int:
    cfg = state().config
    return int_arg("max_nodes", cfg["MAX_NODES_DEFAULT"], 1, cfg["MAX_NODES_CAP"])


@bp.get("/series")
@requires("read")
@timed("series")
def series() -> Response:
    sel = selector_arg()
    t0, t1 = range_args()
    default_step = max(10, (t1 - t0) // 300)
    step = int_arg("step", default_step, 1, 86400 * 30)
    if (t1 - t0) // step > MAX_POINTS:
        raise ApiError(400, f"step {step}s gives over {MAX_POINTS} points for this range: use a larger step")
    group_by = request.args.get("group_by") or None
    st = state()
    found = st.storage.timeline(sel, t0, t1, step, group_by, st.config["QUERY_MAX_GROUPS"])
    doc: dict[str, Any] = {"type": found.profile_type, "unit": found.unit or "nanoseconds",
                           "aggregation": found.aggregation, "step": step, "from": t0,
                           "until": t1, "series": found.series}
    if group_by:  # how many groups there were, and how many the "other" entry sums (QUERY_MAX_GROUPS)
        doc["groups"] = {"total": found.groups, "shown": found.groups - found.other, "other": found.other}
    return jsonify(doc)


@bp.get("/flamegraph")
@requires("read")
@timed("flamegraph")
def flamegraph() -> Response:
    sel = selector_arg()
    t0, t1 = range_args()
    st = state()
    selection = st.storage.select(sel, t0, t1, all_columns=False)
    return jsonify(render.flame_json(st.storage, selection, max_nodes_arg(), prefix_arg()))


@bp.get("/diff")
@requires("read")
@timed("diff")
def diff() -> Response:
    left_sel = selector_arg("left", None)
    right_sel = selector_arg("right", request.args.get("left"))
    if left_sel.profile_type != right_sel.profile_type:
        raise ApiError(400, f"left and right must select one profile type ({left_sel.profile_type or 'cpu'} vs "
                       f"{right_sel.profile_type or 'cpu'})")
    lt = range_args("left_from", "left_until", ("from", "until"))
    rt = range_args("right_from", "right_until", ("from", "until"))
    st = state()
    left = st.storage.select(left_sel, *lt, all_columns=False)
    right = st.storage.select(right_sel, *rt, all_columns=False)
    return jsonify(render.diff_json(st.storage, left, right, max_nodes_arg(), prefix_arg()))


@bp.get("/wallclock")
@requires("read")
@timed("wallclock")
def wallclock() -> Response:
    from profiler.selector import Selector

    sel = selector_arg()
    t0, t1 = range_args()
    st = state()
    cpu = st.storage.select(Selector("cpu", sel.matchers), t0, t1, all_columns=False)
    off = st.storage.select(Selector("offcpu", sel.matchers), t0, t1, all_columns=False)
    return jsonify(render.diff_json(st.storage, cpu, off, max_nodes_arg(), prefix_arg(), fmt="wall"))


@bp.get("/top")
@requires("read")
@timed("top")
def top() -> Response:
    sel = selector_arg()
    t0, t1 = range_args()
    st = state()
    return jsonify(render.top_json(st.storage, st.storage.select(sel, t0, t1, all_columns=False), int_arg("limit", 100, 1, 100_000)))


@bp.get("/pprof")
@requires("read")
@timed("pprof")
def pprof_download() -> Response:
    from profiler import pprof

    sel = selector_arg()
    t0, t1 = range_args()
    st = state()
    profile = render.selection_profile(st.storage, st.storage.select(sel, t0, t1), t0, t1)
    name = f"{sel.profile_type or 'cpu'}-{t0}-{t1}.pb.gz"
    return Response(pprof.encode(profile, compress=True), mimetype="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.get("/folded")
@requires("read")
@timed("folded")
def folded_download() -> Response:
    from profiler import folded

    sel = selector_arg()
    t0, t1 = range_args()
    st = state()
    selection = st.storage.select(sel, t0, t1)
    profile = render.selection_profile(st.storage, selection, t0, t1)
    return Response(folded.render(profile, selection.main), mimetype="text/plain")

