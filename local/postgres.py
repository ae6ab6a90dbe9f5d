"""A real PostgreSQL server in the run's own folder: the local stand-in for Aurora.

initdb'd fresh each time (nothing shared with other runs), bound to 127.0.0.1 on a free port,
password (SCRAM) logins only, one login role per arm so pg_stat_activity can count each arm's
server connections. Durability is switched off: the data is thrown away with the run.
"""

from __future__ import annotations

import pwd
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from functions import contract
from local.ports import PortClaims
from local.processes import give_to, spawn, stop_group, unprivileged_account

SUPERUSER = "poolbench_admin"


@dataclass(frozen=True)
class PostgresSettings:
    """Mirrors the Aurora knobs that matter here: how many connections the server admits."""

    data_dir: Path
    max_connections: int = 1000
    dbname: str = "poolbench"
    bin_dir: Path | None = None
    start_timeout_s: float = 30.0
    # TLS with a throwaway self-signed certificate, as Aurora requires of PgBouncer on AWS
    # (server_tls_sslmode=require): lets the AWS connection path be tested here.
    tls: bool = False
    # pg_hba's method for every login. "md5" lets a role whose password is stored as MD5 log
    # in with MD5 (an older cluster or proxy); SCRAM-stored passwords still use SCRAM.
    auth: str = "scram-sha-256"


def find_bin_dir() -> Path:
    """Debian keeps server binaries off PATH, under /usr/lib/postgresql/<major>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and (Path(on_path).resolve().parent / "initdb").exists():
        return Path(on_path).resolve().parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    if not candidates:
        raise RuntimeError("PostgreSQL server not found: run scripts/bootstrap")
    return candidates[0].parent


def count_connections_by_role(conn: psycopg.Connection[tuple[Any, ...]]) -> dict[str, int]:
    """Client backends per login role, the asking connection left out: what Aurora's
    DatabaseConnections counts."""
    rows = conn.execute(
        "select usename, count(*) from pg_stat_activity"
        " where backend_type = 'client backend' and usename is not null"
        " and pid <> pg_backend_pid() group by usename"
    ).fetchall()
    return {str(name): int(count) for name, count in rows}


@dataclass
class Role:
    name: str
    password: str = field(repr=False)


class PostgresServer:
    """Lifecycle of one server: start() -> roles -> stop(). Used by the stack and the tests."""

    def __init__(self, settings: PostgresSettings, *, tag: str) -> None:
        self.settings = settings
        self.tag = tag
        self.bin_dir = settings.bin_dir or find_bin_dir()
        self.port = 0
        self._ports = PortClaims()  # held until stop(): no other stack can take the port
        self.admin_password = secrets.token_urlsafe(18)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = settings.data_dir.parent / "postgresql.log"
        self._argv: list[str] = []
        self._account: pwd.struct_passwd | None = None

    @property
    def version(self) -> str:
        out = subprocess.run(
            [str(self.bin_dir / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"\d+(\.\d+)+", out)
        return match.group(0) if match else out.strip()

    def admin_connect(
        self, dbname: str | None = None, timeout_s: int = 5
    ) -> psycopg.Connection[tuple[Any, ...]]:
        """An autocommit superuser connection, for setup and for counting connections."""
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=SUPERUSER,
            password=self.admin_password,
            dbname=dbname or self.settings.dbname,
            autocommit=True,
            connect_timeout=timeout_s,
        )

    def start(self) -> None:
        account = unprivileged_account()
        data = self.settings.data_dir
        data.mkdir(parents=True, exist_ok=False)
        give_to(account, data)
        pwfile = data.parent / ".pgpass-init"
        pwfile.write_text(self.admin_password + "\n")
        give_to(account, pwfile)
        try:
            subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    f"--auth={self.settings.auth}",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                check=True,
                capture_output=True,
                user=account.pw_uid if account else None,
                group=account.pw_gid if account else None,
                extra_groups=[] if account else None,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        self.port = self._ports.claim()
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": str(self.settings.max_connections),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "64MB",
        }
        if self.settings.tls:
            options.update(self._make_certificate(account))
        argv = [str(self.bin_dir / "postgres"), "-D", str(data)]
        for key, value in options.items():
            argv += ["-c", f"{key}={value}"]
        self._argv, self._account = argv, account
        self.proc = spawn(argv, tag=self.tag, env={}, log_file=self.log_file, account=account)
        self._wait_ready()
        with self.admin_connect("postgres") as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(self.settings.dbname)))

    def _make_certificate(self, account: pwd.struct_passwd | None) -> dict[str, str]:
        folder = self.settings.data_dir.parent / "tls"
        folder.mkdir(exist_ok=True)
        cert, key = folder / "server.crt", folder / "server.key"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
        key.chmod(0o600)  # PostgreSQL refuses a key others can read
        give_to(account, folder, cert, key)
        return {"ssl": "on", "ssl_cert_file": str(cert), "ssl_key_file": str(key)}

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited at start; see {self.log_file}")
            try:
                with self.admin_connect("postgres", timeout_s=1):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL not ready in {self.settings.start_timeout_s:.0f} s")

    def create_roles(self, names: Iterable[str]) -> dict[str, Role]:
        """One login role per arm, with a fresh random password each run."""
        roles = {
            name: Role(contract.db_role(name, prefix="pb_"), secrets.token_urlsafe(18))
            for name in names
        }
        with self.admin_connect() as conn:
            for role in roles.values():
                conn.execute(
                    sql.SQL("create role {} login password {}").format(
                        sql.Identifier(role.name), sql.Literal(role.password)
                    )
                )
        return roles

    def connections_by_role(self) -> dict[str, int]:
        with self.admin_connect() as conn:
            return count_connections_by_role(conn)

    def restart(self) -> float:
        """A fast restart, as a failover or an instance reboot looks to clients: every
        connection is cut, and the server takes new ones once it is back. Returns the seconds
        it was away. The port stays claimed throughout."""
        assert self.proc is not None
        started = time.monotonic()
        stop_group(self.proc, signal.SIGINT, 10.0)
        self.proc = spawn(
            self._argv, tag=self.tag, env={}, log_file=self.log_file, account=self._account
        )
        self._wait_ready()
        return time.monotonic() - started

    def stop(self, timeout_s: float = 10.0) -> None:
        """Fast shutdown (SIGINT: disconnect clients, checkpoint); SIGKILL if it hangs."""
        if self.proc is not None:
            stop_group(self.proc, signal.SIGINT, timeout_s)
        self._ports.release_all()
