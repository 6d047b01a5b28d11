"""The error types the profile core raises: one base, one subclass per input format."""

from __future__ import annotations


class ProfileError(ValueError):
    """Base for every error the core raises on bad input; the message names the problem."""


class PprofError(ProfileError):
    """pprof bytes that are truncated, not protobuf, or break pprof's own invariants."""


class FoldedError(ProfileError):
    """Folded-stack text with no usable line."""


class SelectorError(ProfileError):
    """A label selector that does not parse; carries the 0-based position and what was expected."""

    def __init__(self, message: str, position: int, expected: str = "") -> None:
        super().__init__(f"{message} at position {position}" + (f", expected {expected}" if expected else ""))
        self.position = position
        self.expected = expected
