"""One PgBouncer shared by every EE of the proxy arm: the local stand-in for RDS Proxy.

It is configured by the same code that configures the in-EE extension (one ini renderer, one
auth-file writer), so the only difference between the arms is where the pooler sits.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from functions.pooler.pgbouncer_extension import PoolerConfig, wait_listening, write_files
from local.processes import give_to, spawn, stop_group, unprivileged_account


class SharedPooler:
    def __init__(self, cfg: PoolerConfig, *, tag: str) -> None:
        self.cfg = cfg
        self.tag = tag
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_database(
        cls,
        *,
        run_dir: Path,
        db_port: int,
        db_name: str,
        user: str,
        password: str,
        pool_size: int,
        pgbouncer_bin: str,
        tag: str,
        port: int,
    ) -> SharedPooler:
        cfg = PoolerConfig(
            db_host="127.0.0.1",
            db_port=db_port,
            db_name=db_name,
            db_user=user,
            db_password=password,
            db_secret_arn=None,
            pooler_port=port,
            default_pool_size=pool_size,
            pgbouncer_bin=pgbouncer_bin,
            run_dir=run_dir.resolve(),
            server_tls_sslmode="disable",
            listen_addr="127.0.0.1",  # a network service, as RDS Proxy is: TCP and SCRAM
        )
        return cls(cfg, tag=tag)

    @property
    def port(self) -> int:
        return self.cfg.pooler_port

    def start(self) -> None:
        assert self.cfg.db_password is not None
        ini, _ = write_files(self.cfg, self.cfg.db_user, self.cfg.db_password)
        account = unprivileged_account()
        give_to(account, self.cfg.run_dir, *self.cfg.run_dir.iterdir())
        self.proc = spawn(
            [self.cfg.pgbouncer_bin, str(ini)],
            tag=self.tag,
            env={},
            log_file=self.cfg.run_dir / "pgbouncer.out",
            account=account,
        )
        wait_listening(self.proc, self.cfg, 10.0)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, signal.SIGTERM, 3.0)
