"""Pure parts: merging Python frames into native stacks, and module names from file names."""

from __future__ import annotations

from collector.python.merge import EVAL_FRAME, merge
from collector.python.names import module_name
from profiler.model import Frame, FrameKind


def nat(name: str) -> Frame:
    return Frame(name, "python3.11", FrameKind.NATIVE)


def py(name: str) -> Frame:
    return Frame(name, "", FrameKind.INTERPRETED)


EVAL = nat(EVAL_FRAME)


def test_each_eval_frame_runs_down_to_its_entry() -> None:
    # leaf first: leaf <- callback (entry) | sorted (C) | method <- main <- <module> (entry)
    native = [nat("sleep"), EVAL, nat("sorted"), nat("PyObject_Call"), EVAL, nat("Py_RunMain"), nat("main")]
    python = [py("leaf"), py("callback"), py("method"), py("main"), py("<module>")]
    entries = [False, True, False, False, True]
    out, complete = merge(native, python, entries)
    assert complete
    assert [f.function for f in out] == ["sleep", "leaf", "callback", "sorted", "PyObject_Call", "method", "main",
                                         "<module>", "Py_RunMain", "main"]


def test_leftover_python_frames_go_rootward_and_say_so() -> None:
    # The native walk stopped inside the interpreter (no frame pointers): one eval frame seen.
    native = [nat("sleep"), EVAL]
    python = [py("leaf"), py("callback"), py("method"), py("<module>")]
    out, complete = merge(native, python, [False, True, False, True])
    assert not complete
    assert [f.function for f in out] == ["sleep", "leaf", "callback", "method", "<module>"]
    out, complete = merge([nat("sleep")], python, [False, True, False, True])
    assert [f.function for f in out] == ["sleep", "leaf", "callback", "method", "<module>"] and not complete


def test_more_eval_frames_than_entries_and_empty_inputs() -> None:
    out, complete = merge([EVAL, EVAL], [py("f")], [True])
    assert [f.function for f in out] == ["f", EVAL_FRAME] and complete
    assert merge([], [], []) == ([], True)
    assert merge([nat("a")], [], []) == ([nat("a")], True)


def test_module_names() -> None:
    packages = {"/usr/lib/python3.11/json", "/srv/app/pkg", "/srv/app/pkg/sub"}
    is_pkg = packages.__contains__
    assert module_name("/usr/lib/python3.11/json/decoder.py", is_pkg) == "json.decoder"
    assert module_name("/usr/lib/python3.11/json/__init__.py", is_pkg) == "json"
    assert module_name("/usr/lib/python3.11/threading.py", is_pkg) == "threading"
    assert module_name("/srv/app/pkg/sub/mod.py", is_pkg) == "pkg.sub.mod"
    assert module_name("workload.py", is_pkg) == "workload"
    assert module_name("<string>", is_pkg) == ""
    assert module_name("<frozen importlib._bootstrap>", is_pkg) == "importlib._bootstrap"
    assert module_name("", is_pkg) == ""
