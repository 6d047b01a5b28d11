"""Hotpath's profile core: the canonical model and pure transforms (bytes in, bytes out)."""

from profiler.errors import FoldedError, PprofError, ProfileError, SelectorError
from profiler.model import Frame, FrameKind, Profile, ProfileTable, Sample, ValueType, make_labels

__all__ = [
    "FoldedError",
    "Frame",
    "FrameKind",
    "PprofError",
    "Profile",
    "ProfileError",
    "ProfileTable",
    "Sample",
    "SelectorError",
    "ValueType",
    "make_labels",
]
