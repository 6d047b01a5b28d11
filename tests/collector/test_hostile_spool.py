"""Issue 15 point 16: the spool directory is the agent's own (0700, refused if another user owns
it or others can write it), and no spool file is ever read or written through a link."""

from __future__ import annotations

import json
import os
import stat

import pytest

from collector.ship import Shipper
from collector.spool import Spool, SpoolError
from hotpath.cli import main

NOBODY = 65534


def test_new_spool_is_0700(tmp_path) -> None:
    spool = Spool(tmp_path / "deep" / "spool")
    for d in (spool.dir, spool.rejected_dir):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o720, 0o702])
def test_group_or_world_writable_spool_is_refused(tmp_path, mode) -> None:
    d = tmp_path / "spool"
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(SpoolError, match="chmod 700"):
        Spool(d)


def test_spool_owned_by_another_user_is_refused(tmp_path) -> None:
    d = tmp_path / "spool"
    d.mkdir(mode=0o700)
    os.chown(d, NOBODY, NOBODY)
    with pytest.raises(SpoolError, match="owned by uid 65534"):
        Spool(d)


@pytest.mark.timeout(30)
def test_collector_refuses_unsafe_spool_dir_before_bpf(tmp_path, capsys) -> None:
    token = tmp_path / "t"
    token.write_text("tok")
    d = tmp_path / "spool"
    d.mkdir()
    d.chmod(0o777)
    assert main(["collector", "--server", "http://127.0.0.1:1", "--token-file", str(token),
                 "--spool-dir", str(d)]) == 2
    assert "writable by group or others" in capsys.readouterr().err


def test_planted_tmp_symlink_is_not_written_through(tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    spool = Spool(tmp_path / "spool")
    for suffix in ("pb.gz", "json"):  # the next batch's temporary names
        (spool.dir / f"000000000001-batch.{suffix}.tmp").symlink_to(victim)
    item = spool.put(b"batch body", {"service": "s"}, key="k1")
    assert victim.read_text() == "precious"
    assert item.body() == b"batch body" and [i.key for i in spool.items()] == ["k1"]


def test_planted_entry_never_ships_a_linked_file(tmp_path, ingest_server) -> None:
    secret = tmp_path / "root-only"
    secret.write_bytes(b"SECRET")
    secret.chmod(0o600)
    spool = Spool(tmp_path / "spool")
    meta = json.dumps({"key": "planted", "params": {"service": "x"}})
    (spool.dir / "000000000005-cpu.json").write_text(meta)
    (spool.dir / "000000000005-cpu.pb.gz").symlink_to(secret)
    (spool.dir / "000000000006-cpu.json").symlink_to(spool.dir / "000000000005-cpu.json")
    (spool.dir / "000000000006-cpu.pb.gz").write_bytes(b"body")
    for i, bad in enumerate(('[]', '{"key": 1, "params": {}}', '{"key": "k", "params": []}', "{")):
        (spool.dir / f"00000000001{i}-cpu.json").write_text(bad)
        (spool.dir / f"00000000001{i}-cpu.pb.gz").write_bytes(b"body")
    spool.put(b"real", {"service": "s"}, key="real")
    assert Shipper(ingest_server.url, "t").flush(spool) == 1
    assert ingest_server.stored == {"real": b"real"}
    assert spool.items() == []
    assert os.path.islink(spool.rejected_dir / "000000000005-cpu.pb.gz")  # kept aside, as a link
