"""Shared test policy: under CI=true a missing real part (BPF, PostgreSQL, Chromium, Go) fails loudly."""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip locally when a real part is missing, but fail under CI=true: CI must never skip silently."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required part missing under CI=true: {what}", pytrace=False)
    pytest.skip(f"missing: {what}")


@pytest.fixture(scope="session")
def go_bin() -> str:
    """Path of the `go` binary (for `go tool pprof` and building Go workloads)."""
    path = shutil.which("go") or ("/usr/bin/go" if os.path.exists("/usr/bin/go") else None)
    require(path is not None, "go (apt-get install golang-go) for go tool pprof")
    return path  # type: ignore[return-value]
