"""Hotpath: an always-on, fleet-wide continuous profiler."""

__version__ = "0.1.0"
