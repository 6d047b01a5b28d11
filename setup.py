"""The C extensions, declared here because pyproject.toml has no stable key for them yet
(`[tool.setuptools] ext-modules` is experimental and warns on every build). All else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    # The pprof and OTLP profiles wire scanners behind pprof.decode_table and protocols/otlp_columns.py
    # (plain C, no dependencies beyond Python.h).
    ext_modules=[
        Extension("profiler._pprofscan", sources=["profiler/_pprofscan.c"], extra_compile_args=["-O2", "-std=c11"]),
        Extension("server.protocols._otlpscan", sources=["server/protocols/_otlpscan.c"],
                  extra_compile_args=["-O2", "-std=c11"]),
    ],
)
