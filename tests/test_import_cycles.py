"""No import cycles between Hotpath's own modules, lazy (function-level) imports included.

A cycle hidden behind a function-level import still knots two layers together: the lower one can no
longer be read, tested or loaded without the upper one (the "prometheus_client loads only after fork"
rule once hung on such a loop). The graph is built from the source text with `ast`, so nothing is
imported and optional parts (BCC, the C extension) need not be present.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("profiler", "collector", "server", "hotpath")

# Cycles still present on main, each living in a file another change is rewriting at the time of
# writing. Each entry is the cycle's sorted module set; the list must only shrink to empty: a cycle
# that is gone must be removed from it (the test says so) and no new one may be added.
KNOWN_CYCLES: set[frozenset[str]] = {
    # server/up.py's collector_blocker builds the whole `hotpath` parser to ask whether a collector
    # command is registered; hotpath.cli registers server.cli, which runs up.py.
    frozenset({"hotpath.cli", "server.cli", "server.up"}),
    # storage.ingest and storage.rollup reach back into the Storage facade's caches (issue 20 item 2).
    frozenset({"server.storage", "server.storage.ingest", "server.storage.rollup"}),
}


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the checked packages."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    """Resolve a (possibly relative) `from` target the way the import system does."""
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> set[str]:
    """The own modules that `module` imports anywhere in its body (top level or lazy)."""
    tree = ast.parse(source)
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.level, node.module)
            for alias in node.names:
                # `from pkg import sub` imports the submodule; `from mod import name` only mod.
                sub = f"{base}.{alias.name}" if base else alias.name
                targets.add(sub if sub in known else base)
    if "import_module" in source:
        # A module that imports by name (`importlib.import_module(name)`, e.g. the CLI's registry of
        # subcommand modules) is taken to import every own module it spells out as a string.
        targets.update(
            node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known
        )
    edges = set()
    for target in targets:
        # `import a.b.c` of an unknown tail still depends on the deepest own module it names.
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != module:
            edges.add(target)
    return edges


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {
        module: imports_of(module, path.read_text(), path.name == "__init__.py", known)
        for module, path in files.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative: no recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def describe(graph: dict[str, set[str]], component: list[str]) -> str:
    """One line per import edge inside the cycle, so the knot can be found in the source."""
    members = set(component)
    edges = [f"  {a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return "cycle: " + ", ".join(component) + "\n" + "\n".join(edges)


def test_finder_sees_lazy_and_relative_imports() -> None:
    # a (a package) imports b lazily, b imports a.c, a.c imports b relatively: one knot a.c <-> b,
    # plus a -> b -> a.c, which does not close through a (nothing imports the package a itself).
    known = {"a", "a.c", "b"}
    graph = {
        "a": imports_of("a", "def f():\n    from b import x\n", True, known),
        "b": imports_of("b", "import a.c\n", False, known),
        "a.c": imports_of("a.c", "from .. import b\n", False, known),
    }
    assert graph == {"a": {"b"}, "b": {"a.c"}, "a.c": {"b"}}
    assert cycles(graph) == [["a.c", "b"]]


def test_finder_is_quiet_on_a_tree() -> None:
    assert cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = {frozenset(component): component for component in cycles(graph)}
    new = [found[key] for key in found if key not in KNOWN_CYCLES]
    gone = [sorted(key) for key in KNOWN_CYCLES if key not in found]
    assert not new, "import cycles:\n" + "\n".join(describe(graph, c) for c in new)
    assert not gone, f"no longer cycles, remove them from KNOWN_CYCLES: {gone}"
