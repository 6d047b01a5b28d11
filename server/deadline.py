"""Per-query limits: a deadline and a budget of distinct stacks, for whatever storage reads a request makes.

A query view opens `limits(...)`; every storage read inside it (SQL through `server.db.read`, and the
Python merge and dictionary loops, which call `check()`) stops once the deadline passes. The limits
live in a context variable rather than in every storage signature because the reads a request makes
are spread over the storage layer and the renderers that call back into it; each gthread thread has
its own context, so concurrent requests never see each other's limits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


class QueryTimeout(Exception):
    """The query ran past its deadline (answered 503: the worker is free again)."""


class QueryTooLarge(Exception):
    """The query needs more than its memory budget (answered 422: narrow the range or the selector)."""


@dataclass(frozen=True, slots=True)
class Limits:
    deadline: float  # time.monotonic() value
    timeout_s: float
    max_stacks: int


_current: ContextVar[Limits | None] = ContextVar("hotpath_query_limits", default=None)


@contextlib.contextmanager
def limits(timeout_s: float, max_stacks: int) -> Iterator[Limits]:
    """Apply a deadline `timeout_s` from now and a distinct-stack budget to the reads in this block."""
    active = Limits(time.monotonic() + timeout_s, timeout_s, max_stacks)
    token = _current.set(active)
    try:
        yield active
    finally:
        _current.reset(token)


def current() -> Limits | None:
    return _current.get()


def remaining_s() -> float | None:
    """Seconds left before the deadline (None outside a limited block)."""
    active = _current.get()
    return None if active is None else active.deadline - time.monotonic()


def expired() -> bool:
    active = _current.get()
    return active is not None and time.monotonic() > active.deadline


def timeout_error() -> QueryTimeout:
    active = _current.get()
    limit = f"{active.timeout_s:g} s" if active else "its deadline"
    return QueryTimeout(f"query exceeded the time limit ({limit}, QUERY_TIMEOUT_S): narrow the time range or "
                        f"the selector")


def check() -> None:
    """Raise QueryTimeout once the deadline has passed (called from the Python merge and load loops)."""
    if expired():
        raise timeout_error()


def check_stacks(n: int) -> None:
    """Raise QueryTooLarge when a query holds more than its budget of distinct stacks."""
    active = _current.get()
    if active is not None and n > active.max_stacks:
        raise QueryTooLarge(f"query selects over {active.max_stacks:,} distinct stacks (QUERY_MAX_STACKS): "
                            f"narrow the time range or the selector")
