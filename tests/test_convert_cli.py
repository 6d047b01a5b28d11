"""`hotpath convert`: Go runtime profile -> folded -> pprof, checked against `go tool pprof`; error paths."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hotpath.cli import main
from profiler import pprof
from tests.profiler.go_profile import build_go_profile, go_pprof

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def go_cpu(go_bin: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    tmp = tmp_path_factory.mktemp("goconv")
    return go_bin, tmp, build_go_profile(go_bin, tmp)


def _raw_total(text: str, column: int) -> int:
    rows = re.findall(r"^\s+([\d ]+):", text.split("Locations")[0], re.MULTILINE)
    return sum(int(r.split()[column]) for r in rows)


def _top(text: str) -> tuple[str, set[str]]:
    total = re.search(r"of (\S+) total", text)
    assert total, text
    return total.group(1), set(re.findall(r"%\s+(\S+)\s*$", text, re.MULTILINE))


def test_acceptance_go_profile_to_folded_and_back(go_cpu, tmp_path: Path) -> None:
    go, gtmp, src = go_cpu
    out = tmp_path / "out.folded"
    assert main(["convert", str(src), str(out)]) == 0
    folded_total = sum(int(line.rsplit(" ", 1)[1]) for line in out.read_text().splitlines())
    assert folded_total == _raw_total(go_pprof(go, gtmp, "-raw", str(src)), 1)  # default type: cpu ns
    back = tmp_path / "back.pb.gz"
    assert main(["convert", str(out), str(back)]) == 0
    orig_top = _top(go_pprof(go, gtmp, "-top", "-nodecount=1000", str(src)))
    back_top = go_pprof(go, gtmp, "-top", "-nodecount=1000", str(back))
    back_total, back_names = _top(back_top)
    assert back_names == orig_top[1]
    assert back_total == str(folded_total)  # counts print unitless in -top
    assert _raw_total(go_pprof(go, gtmp, "-raw", str(back)), 0) == folded_total


def test_type_flag_picks_samples(go_cpu, tmp_path: Path) -> None:
    go, gtmp, src = go_cpu
    out = tmp_path / "n.txt"
    assert main(["convert", "--type", "samples", str(src), str(out)]) == 0
    total = sum(int(line.rsplit(" ", 1)[1]) for line in out.read_text().splitlines())
    assert total == _raw_total(go_pprof(go, gtmp, "-raw", str(src)), 0)


def test_pprof_to_pprof_keeps_chosen_type(tmp_path: Path) -> None:
    out = tmp_path / "x.pb"
    assert main(["convert", "--type", "samples", str(DATA / "small_cpu.pb.gz"), str(out)]) == 0
    p = pprof.decode(out.read_bytes())
    assert [v.type for v in p.sample_types] == ["samples"] and p.total() == 5


@pytest.mark.parametrize("args,msg", [
    (["convert", str(DATA / "truncated.pb.gz"), "o.folded"], "truncated gzip"),
    (["convert", str(DATA / "garbage.pb.gz"), "o.folded"], "not a valid pprof"),
    (["convert", str(DATA / "unknown_location.pb"), "o.folded"], "unknown location id 17"),
    (["convert", "/nonexistent/x.pb.gz", "o.folded"], "cannot read /nonexistent/x.pb.gz"),
    (["convert", "in.svg", "o.folded"], "unknown extension"),
    (["convert", "--type", "nope", str(DATA / "small_cpu.pb.gz"), "o.folded"], "no sample type 'nope'"),
])
def test_errors_are_clear(args, msg, capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("hotpath: error:") and msg in err and "Traceback" not in err


def test_folded_with_no_usable_lines(tmp_path: Path, capsys) -> None:
    src = tmp_path / "bad.folded"
    src.write_text("nope\n")
    assert main(["convert", str(src), str(tmp_path / "o.pb.gz")]) == 2
    assert "no usable folded-stack line" in capsys.readouterr().err
