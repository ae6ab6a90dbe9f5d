"""The extension's env contract and the files it writes, without starting anything."""

from __future__ import annotations

import pwd
import stat
from pathlib import Path

import pytest

from functions.pooler.pgbouncer_extension import (
    CONFIG_INVALID,
    NO_UNPRIVILEGED_USER,
    PoolerConfig,
    PoolerError,
    pgbouncer_account,
    render_ini,
    write_files,
)

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


def test_ini_is_socket_only_transaction_mode_with_tls_to_the_server() -> None:
    cfg = PoolerConfig.from_env(
        {
            "DB_HOST": "h",
            "DB_NAME": "d",
            "DB_USER": "u",
            "DB_PASSWORD": "s3cret-pw",
            "DEFAULT_POOL_SIZE": "7",
            "POOLER_RUN_DIR": "/tmp/ee-1",
        }
    )
    ini = render_ini(cfg, "u")
    # No TCP listener at all: two EEs in one network namespace cannot collide on a port.
    assert "listen_addr" not in ini
    assert "unix_socket_dir = /tmp/ee-1\n" in ini
    assert "unix_socket_mode = 0700\n" in ini
    assert "auth_type = trust\n" in ini
    assert "pool_mode = transaction\n" in ini
    assert "default_pool_size = 7\n" in ini
    assert "server_tls_sslmode = require\n" in ini
    assert "s3cret-pw" not in ini
    assert cfg.socket_path == Path("/tmp/ee-1/.s.PGSQL.6432")


def test_a_tcp_pooler_keeps_scram_and_no_socket() -> None:
    cfg = PoolerConfig("h", 5432, "d", "u", "p", None, 7000, listen_addr="127.0.0.1")
    ini = render_ini(cfg, "u")
    assert "listen_addr = 127.0.0.1\nlisten_port = 7000\nunix_socket_dir =\n" in ini
    assert "auth_type = scram-sha-256\n" in ini


@pytest.mark.parametrize(
    ("run_dir", "message"),
    [
        ("pooler", "POOLER_RUN_DIR 'pooler' is relative"),
        ("/" + "d" * 100, "longer than 107 bytes, the limit of a Unix socket"),
    ],
)
def test_run_dir_must_hold_a_socket(run_dir: str, message: str) -> None:
    env = {"DB_HOST": "h", "DB_NAME": "d", "DB_SECRET_ARN": "arn", "POOLER_RUN_DIR": run_dir}
    with pytest.raises(PoolerError, match=message) as failure:
        PoolerConfig.from_env(env)
    assert failure.value.error_type == CONFIG_INVALID


def test_account_falls_back_to_nobody_and_names_the_fix() -> None:
    """The lookup is the system's own (pwd.getpwnam): only the preferred name is varied."""
    assert pgbouncer_account("no-such-user-9f2").pw_name == "nobody"
    assert pgbouncer_account("root").pw_name == "root"

    def no_accounts(name: str) -> pwd.struct_passwd:
        raise KeyError(name)  # an image with no nobody either (as getpwnam answers)

    with pytest.raises(PoolerError, match="set POOLER_OS_USER") as failure:
        pgbouncer_account("no-such-user-9f2", lookup=no_accounts)
    assert failure.value.error_type == NO_UNPRIVILEGED_USER


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
