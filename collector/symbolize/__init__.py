"""Symbolization: kernel (kallsyms), native (maps + ELF), JIT (perf maps), demangled names.

Import `Symbolizer` from `collector.symbolize.symbolizer` (kept out of this package init so the
leaf modules import without cycles).
"""
