"""The extension's env contract and the files it writes, without starting anything."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from functions.pooler.pgbouncer_extension import PoolerConfig, PoolerError, render_ini, write_files

LAYER = Path(__file__).resolve().parents[2] / "functions" / "pooler"


def test_defaults_follow_the_contract() -> None:
    cfg = PoolerConfig.from_env({"DB_HOST": "h", "DB_NAME": "d", "DB_SECRET_ARN": "arn"})
    assert (cfg.pooler_port, cfg.pool_mode, cfg.server_tls_sslmode) == (
        6432,
        "transaction",
        "require",
    )
    assert cfg.pgbouncer_bin == "/opt/bin/pgbouncer"
    assert cfg.run_dir == Path("/tmp")


def test_missing_settings_are_named() -> None:
    with pytest.raises(PoolerError, match="DB_HOST, DB_SECRET_ARN or DB_PASSWORD, DB_USER"):
        PoolerConfig.from_env({"DB_NAME": "d"})


def test_ini_is_loopback_transaction_mode_with_tls_to_the_server() -> None:
    cfg = PoolerConfig.from_env(
        {
            "DB_HOST": "h",
            "DB_NAME": "d",
            "DB_USER": "u",
            "DB_PASSWORD": "p",
            "DEFAULT_POOL_SIZE": "7",
        }
    )
    ini = render_ini(cfg, "u")
    assert "listen_addr = 127.0.0.1\n" in ini
    assert "pool_mode = transaction\n" in ini
    assert "default_pool_size = 7\n" in ini
    assert "server_tls_sslmode = require\n" in ini
    assert "s3cret-pw" not in ini


def test_auth_file_is_private_and_quoted(tmp_path: Path) -> None:
    cfg = PoolerConfig.from_env(
        {
            "DB_HOST": "h",
            "DB_NAME": "d",
            "DB_USER": "u",
            "DB_PASSWORD": 'a"b',
            "POOLER_RUN_DIR": str(tmp_path),
        }
    )
    _, auth = write_files(cfg, "u", 'a"b')
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert auth.read_text() == '"u" "a""b"\n'


def test_layer_ships_an_executable_extension() -> None:
    extension = LAYER / "extensions" / "pgbouncer-extension"
    assert extension.stat().st_mode & stat.S_IXUSR
    assert extension.read_text().startswith("#!/usr/bin/env python3\n")
