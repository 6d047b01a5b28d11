"""CLI edges: flag validation, clear errors before any BPF, docker-compose collector service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from collector.cli import duration, frequency, min_block
from hotpath.cli import build_parser, main
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("3", 3.0)])
def test_duration_parses(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("argv", [
    ["record", "--frequency", "0", "-o", "x"],
    ["record", "--frequency", "1001", "-o", "x"],
    ["record", "--duration", "ten", "-o", "x"],
    ["record", "--duration", "-1s", "-o", "x"],
    ["record", "--type", "wall", "-o", "x"],
    ["record", "--pid", "abc", "-o", "x"],
    ["collector", "--server", "http://x", "--token-file", "t", "--interval", "0s"],
    ["collector", "--server", "http://x", "--token-file", "t", "--min-block", "soon"],
    ["collector", "--token-file", "t"],
])
def test_invalid_flags_are_argparse_errors(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_converters_bounds() -> None:
    assert frequency("1") == 1 and frequency("1000") == 1000
    assert min_block("1ms") == 1_000_000 and min_block("500us") == 500_000 and min_block("0") == 0


def test_collector_missing_token_file_is_clear(tmp_path, capsys) -> None:
    code = main(["collector", "--server", "http://127.0.0.1:1", "--token-file", str(tmp_path / "nope")])
    assert code == 2
    assert "cannot read --token-file" in capsys.readouterr().err


def test_collector_bad_server_url_is_clear(tmp_path, capsys) -> None:
    token = tmp_path / "t"
    token.write_text("abc\n")
    assert main(["collector", "--server", "ftp://x", "--token-file", str(token)]) == 2
    assert "must be an http:// or https:// URL" in capsys.readouterr().err


def test_cli_module_import_is_cheap() -> None:
    code = ("import sys, hotpath.cli; hotpath.cli.build_parser(); "
            "print(any(m == 'bcc' or m.startswith('bcc.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_not_root_message_names_the_fix(monkeypatch) -> None:
    from collector import bpf_loader

    monkeypatch.setattr(bpf_loader.os, "geteuid", lambda: 1000)
    with pytest.raises(bpf_loader.LoaderError, match="needs root"):
        bpf_loader.preflight()


def test_missing_headers_message_names_the_fix() -> None:
    from collector import bpf_loader

    # preflight stops at the root check first, so this check needs root (fails under CI=true without)
    require(bpf_loader.os.geteuid() == 0, "root, to reach the kernel-headers check")
    with pytest.raises(bpf_loader.LoaderError, match="linux-headers-amd64"):
        bpf_loader.preflight(release="0.0.0-no-such-kernel")


def test_compose_collector_service() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    svc = compose["services"]["collector"]
    assert svc["privileged"] is True and svc["pid"] == "host"
    mounts = {v.split(":")[1] for v in svc["volumes"]}
    assert {"/sys/kernel/tracing", "/lib/modules", "/usr/src"} <= mounts
    cmd = svc["command"]
    assert cmd[:2] == ["hotpath", "collector"] and "--token-file" in cmd
    args = build_parser().parse_args(cmd[1:])  # the compose command line is valid for our CLI
    assert args.func.__name__ == "run_collector"
