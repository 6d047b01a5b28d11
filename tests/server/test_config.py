"""server/config.py: defaults, then a config file, then HOTPATH_* variables; bad values refused."""

from __future__ import annotations

import pytest

from server.config import ConfigError, database_url, load_config


def test_config_layering(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text('{"retention_days": 7, "bind": "0.0.0.0:1"}')
    cfg = load_config({"BIND": "127.0.0.1:9"}, environ={"HOTPATH_CONFIG": str(cfg_file), "HOTPATH_AUTH": "false",
                                                          "HOTPATH_RETENTION_DAYS": "9"})
    assert cfg["RETENTION_DAYS"] == 9 and cfg["BIND"] == "127.0.0.1:9" and cfg["AUTH"] is False
    assert database_url({"DATABASE_URL": "postgres://u:p@h/db"}) == "postgresql+psycopg://u:p@h/db"
    assert database_url({"DATABASE_URL": "", "DATA_DIR": str(tmp_path)}).endswith("/hotpath.db")
    with pytest.raises(ConfigError, match="RETENTION_DAYS"):
        load_config(environ={"HOTPATH_RETENTION_DAYS": "soon"})
