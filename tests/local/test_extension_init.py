"""The extension in environments AWS does not document, and each way its init can fail.

Every test starts the real extension (the layer's executable) in a real local EE, against real
PostgreSQL and the real PgBouncer; a failure must come back through the Extensions API's
/extension/init/error with its own error type and a one-line message, be in the extension's
log, fail the EE's init in seconds, and leave no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from local.execution_environment import EEInitError, EESettings, ExecutionEnvironment
from local.ports import claim_for_process
from local.postgres import PostgresServer, PostgresSettings, Role
from local.processes import tagged_pids
from tests.local.conftest import Database, SecretsManager
from tests.local.ee_settings import ee_settings

pytestmark = pytest.mark.local

PGBOUNCER = "/usr/sbin/pgbouncer"


def serve_one(settings: list[EESettings]) -> list[dict[str, Any]]:
    """Starts the EEs side by side, runs one request that queries on each, shuts them down."""
    request = json.dumps({"queryStringParameters": {"sleep_ms": "0"}}).encode()

    async def scenario() -> list[dict[str, Any]]:
        ees = [ExecutionEnvironment(s) for s in settings]
        try:
            await asyncio.gather(*(ee.start() for ee in ees))
            replies = await asyncio.gather(*(ee.invoke(request) for ee in ees))
        finally:
            await asyncio.gather(*(ee.shutdown() for ee in ees))
        return [json.loads(r) for r in replies]

    return asyncio.run(scenario())


def failed_init(settings: EESettings) -> tuple[EEInitError, float, str]:
    """The EE's init failure, how long it took, and the extension's log."""
    start = time.perf_counter()
    with pytest.raises(EEInitError) as failure:
        asyncio.run(ExecutionEnvironment(settings).start())
    elapsed = time.perf_counter() - start
    assert tagged_pids(settings.tag) == []
    return failure.value, elapsed, (settings.work_dir / "extensions.log").read_text()


def assert_reported(error: EEInitError, log: str, error_type: str, text: str) -> None:
    """Through init/error (the type is the header's), in the message, and as one log line."""
    assert error.error_type == error_type
    assert text in str(error)
    lines = [line for line in log.splitlines() if "init failed:" in line]
    assert len(lines) == 1, log
    assert f"init failed: {error_type}: " in lines[0] and text in lines[0]


# --- the environment ---------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0, reason="the fallback applies only as root")
def test_as_root_without_the_preferred_user_pgbouncer_runs_as_nobody(
    database: Database, tmp_path: Path
) -> None:
    role = database.fresh_role("standard")
    # An account that does not exist stands for an image without `postgres`.
    env = database.function_env(role, POOLER_OS_USER="no-such-user-9f2")
    settings = ee_settings(tmp_path, env, "nobody-1")
    uids: list[int] = []

    async def scenario() -> dict[str, Any]:
        ee = ExecutionEnvironment(settings)
        await ee.start()
        try:
            pid = int((settings.pooler_dir / "pgbouncer.pid").read_text())
            status = (Path("/proc") / str(pid) / "status").read_text()
            uids.extend(int(u) for u in status.split("Uid:")[1].splitlines()[0].split())
            request = json.dumps({"queryStringParameters": {"sleep_ms": "0"}}).encode()
            return dict(json.loads(await ee.invoke(request)))
        finally:
            await ee.shutdown()

    reply = asyncio.run(scenario())

    assert reply["statusCode"] == 200, reply
    assert set(uids) == {65534}  # real, effective, saved, filesystem uid: nobody
    assert tagged_pids(settings.tag) == []


def test_ees_sharing_a_network_namespace_do_not_collide(database: Database, tmp_path: Path) -> None:
    """Two EEs with the same POOLER_PORT, while something else already holds that TCP port on
    loopback (as another EE would, in one network namespace): each serves from its own
    socket."""
    role = database.fresh_role("managed")
    env = database.function_env(role, POOLER_PORT="6432")
    holder = socket.socket()
    with contextlib.suppress(OSError):  # already held by someone else: the same situation
        holder.bind(("127.0.0.1", 6432))
        holder.listen()
    try:
        settings = [ee_settings(tmp_path, env, f"netns-{i}", max_concurrency=2) for i in (1, 2)]
        replies = serve_one(settings)
    finally:
        holder.close()

    assert [r["statusCode"] for r in replies] == [200, 200], replies
    assert {json.loads(r["body"])["ee"] for r in replies} == {"netns-1", "netns-2"}
    for s in settings:
        assert (
            "unix_socket_dir = " + str(s.pooler_dir)
            in (s.pooler_files / "pgbouncer.ini").read_text()
        )


def test_a_run_dir_another_pgbouncer_already_serves_fails_init_without_touching_it(
    database: Database, tmp_path: Path
) -> None:
    """Should EEs ever share /tmp: the second must not overwrite the first one's files."""
    role = database.fresh_role("standard")
    settings = ee_settings(tmp_path, database.function_env(role), "shared-1")
    settings.pooler_files.mkdir(parents=True)
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(settings.pooler_files / ".s.PGSQL.6432"))  # the other EE's PgBouncer
    other.listen()
    ini = settings.pooler_files / "pgbouncer.ini"
    ini.write_text("the other EE's\n")
    try:
        error, _, log = failed_init(settings)
    finally:
        other.close()

    assert_reported(error, log, "Extension.RunDirInUse", f"{settings.pooler_dir}/.s.PGSQL.6432")
    assert ini.read_text() == "the other EE's\n"


# --- init failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "text"),
    [
        (None, "ResourceNotFoundException"),
        ({"username": "x"}, "has no 'password' field"),
    ],
    ids=["no-such-secret", "no-password-field"],
)
def test_unreadable_secret_fails_init_as_secret_unreadable(
    database: Database,
    secrets_manager: SecretsManager,
    tmp_path: Path,
    secret: dict[str, str] | None,
    text: str,
) -> None:
    role = database.fresh_role("standard")
    arn = f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:poolbench/{role.name}-AbCdEf"
    if secret is not None:
        arn = secrets_manager.create(f"pb/{role.name}", secret)
    env = {k: v for k, v in database.function_env(role).items() if k != "DB_PASSWORD"}
    env.update(secrets_manager, DB_SECRET_ARN=arn)

    error, elapsed, log = failed_init(ee_settings(tmp_path, env, "secret-1"))

    assert_reported(error, log, "Extension.SecretUnreadable", text)
    assert arn in str(error)
    assert elapsed < 10


def test_secrets_manager_that_never_answers_fails_init_in_seconds(
    database: Database, secrets_manager: SecretsManager, tmp_path: Path
) -> None:
    """An endpoint that accepts the connection and then says nothing (a security group or
    endpoint policy that drops): SecretUnreadable within the init limit, not a timeout."""
    role = database.fresh_role("standard")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # the kernel completes the handshake; nobody ever reads or answers
    try:
        env = {k: v for k, v in database.function_env(role).items() if k != "DB_PASSWORD"}
        env.update(
            secrets_manager,
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{silent.getsockname()[1]}",
            DB_SECRET_ARN="arn:aws:secretsmanager:eu-west-1:123456789012:secret:pb-AbCdEf",
        )
        error, elapsed, log = failed_init(
            ee_settings(tmp_path, env, "silent-1", init_timeout_s=15.0)
        )
    finally:
        silent.close()

    assert_reported(error, log, "Extension.SecretUnreadable", "ReadTimeoutError")
    assert elapsed < 10  # Lambda's init limit


def test_unreachable_database_fails_init_after_its_timeout(
    database: Database, tmp_path: Path
) -> None:
    role = database.fresh_role("standard")
    nothing_there = claim_for_process()
    env = database.function_env(role, DB_PORT=str(nothing_there), DB_CONNECT_TIMEOUT="1.5")

    error, elapsed, log = failed_init(ee_settings(tmp_path, env, "unreachable-1"))

    assert_reported(
        error,
        log,
        "Extension.DatabaseUnreachable",
        f"cannot reach the database at 127.0.0.1:{nothing_there} within 1.5 s: Connection refused",
    )
    assert 1.0 <= elapsed < 6  # retried for (about) the whole timeout, then gave up


def test_refused_password_fails_init_as_auth_failed(database: Database, tmp_path: Path) -> None:
    role = database.fresh_role("standard")
    env = {**database.function_env(role), "DB_PASSWORD": "not-the-password"}

    error, elapsed, log = failed_init(ee_settings(tmp_path, env, "badpw-1"))

    assert_reported(
        error,
        log,
        "Extension.AuthFailed",
        f'login to the database failed: password authentication failed for user "{role.name}"',
    )
    assert elapsed < 5


def unloadable_pgbouncer(folder: Path) -> Path:
    """A copy of the real PgBouncer ELF whose dynamic section asks for an OpenSSL that is not
    there (libssl.so.9): what a runtime image without the layer's OpenSSL would do to it."""
    data = Path(PGBOUNCER).read_bytes()
    assert data.count(b"libssl.so.3\0") == 1
    copy = folder / "pgbouncer"
    copy.write_bytes(data.replace(b"libssl.so.3\0", b"libssl.so.9\0"))
    copy.chmod(0o755)
    return copy


def test_pgbouncer_that_cannot_load_fails_init_with_the_loader_s_words(
    database: Database, tmp_path: Path
) -> None:
    role = database.fresh_role("standard")
    binary = unloadable_pgbouncer(tmp_path)
    env = database.function_env(role, PGBOUNCER_BIN=str(binary))

    error, elapsed, log = failed_init(ee_settings(tmp_path, env, "noload-1"))

    assert_reported(
        error,
        log,
        "Extension.PgBouncerNotRunnable",
        f"PgBouncer {binary} --version exited with code 127: {binary}: error while loading"
        " shared libraries: libssl.so.9: cannot open shared object file: No such file or"
        " directory",
    )
    assert elapsed < 5
    # Nothing was started after the failed check: no ini, no auth file with the password.
    assert not (tmp_path / "noload-1" / "pooler" / "userlist.txt").exists()


@pytest.mark.parametrize(
    ("make", "text"),
    [
        (lambda d: d / "absent", "No such file or directory"),
        (lambda d: Path(shutil.copy(Path(__file__), d / "not-elf")), "Permission denied"),
    ],
    ids=["missing", "not-executable"],
)
def test_pgbouncer_that_is_not_there_fails_init_as_not_runnable(
    database: Database, tmp_path: Path, make: Any, text: str
) -> None:
    role = database.fresh_role("standard")
    binary = make(tmp_path)
    env = database.function_env(role, PGBOUNCER_BIN=str(binary))

    error, _, log = failed_init(ee_settings(tmp_path, env, "nobin-1"))

    assert_reported(
        error, log, "Extension.PgBouncerNotRunnable", f"PgBouncer {binary} cannot be run: {text}"
    )


# --- MD5 -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def md5_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """PostgreSQL whose pg_hba says md5 for every login."""
    root = Path(tmp_path_factory.mktemp("pg-md5"))
    server = PostgresServer(
        PostgresSettings(data_dir=root / "data", auth="md5"), tag=uuid.uuid4().hex
    )
    server.start()
    try:
        yield Database(server, {})
    finally:
        server.stop()


def md5_role(database: Database) -> Role:
    """A role whose password is stored as MD5, so the server can only ask it for MD5."""
    role = Role(f"pb_md5_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex)
    with database.server.admin_connect() as conn:
        conn.execute("set password_encryption = 'md5'")
        conn.execute(
            sql.SQL("create role {} login password {}").format(
                sql.Identifier(role.name), sql.Literal(role.password)
            )
        )
        stored = conn.execute(
            "select rolpassword from pg_authid where rolname = %s", (role.name,)
        ).fetchone()
    assert stored is not None and str(stored[0]).startswith("md5")
    return role


def test_md5_server_passes_init_and_serves(md5_database: Database, tmp_path: Path) -> None:
    role = md5_role(md5_database)
    env = md5_database.function_env(role)

    replies = serve_one([ee_settings(tmp_path, env, "md5-1")])

    assert replies[0]["statusCode"] == 200, replies
    assert len(json.loads(replies[0]["body"])["query_ms"]) == 2


def test_md5_server_refuses_a_wrong_password_as_auth_failed(
    md5_database: Database, tmp_path: Path
) -> None:
    role = md5_role(md5_database)
    env = {**md5_database.function_env(role), "DB_PASSWORD": "not-the-password"}

    error, _, log = failed_init(ee_settings(tmp_path, env, "md5-bad-1"))

    assert_reported(error, log, "Extension.AuthFailed", "password authentication failed")
