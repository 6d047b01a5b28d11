"""Demangle C++ (Itanium) and Rust (legacy and v0) symbol names with maintained libraries."""

from __future__ import annotations

import re
from functools import lru_cache

import cxxfilt
import rust_demangler

# Legacy Rust symbols are Itanium-shaped but end with a 17-char hash segment: `17h<16 hex>E`.
_RUST_LEGACY = re.compile(r"^_ZN.*17h[0-9a-f]{16}E$")
# The hash changes with every build; dropping it keeps the function's identity stable.
_RUST_HASH = re.compile(r"::h[0-9a-f]{16}$")


@lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """Human-readable name for a mangled symbol; unmangled or undecodable names pass through."""
    if name.startswith("_R") or _RUST_LEGACY.match(name):
        try:
            return _RUST_HASH.sub("", rust_demangler.demangle(name))
        except Exception:  # noqa: BLE001, S110 - plain Exceptions on bad input: try C++ next
            pass
    if name.startswith("_Z"):
        try:
            return cxxfilt.demangle(name)
        except Exception:  # noqa: BLE001 - cxxfilt.InvalidName and friends
            return name
    return name
