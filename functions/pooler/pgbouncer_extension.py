"""PgBouncer as a Lambda extension: one pooler per execution environment, shared by its requests.

Ships in the layer as /opt/pgbouncer_extension.py, started by /opt/extensions/pgbouncer-extension.
Standard library only (boto3 only when the password is a secret) and the contract module
(shipped beside it as /opt/functions/contract.py), so the same file runs in the layer on AWS and
in the local execution environments. On AWS it runs on the layer's own Python, with the layer's
boto3 (/opt/pooler-python, functions/pooler/bundle_python.py), under every function runtime.

Lifecycle, as Lambda expects of an external extension:
register for SHUTDOWN only (Managed Instances refuse INVOKE) -> read the credentials -> write
pgbouncer.ini and the auth file -> start PgBouncer on a Unix socket in POOLER_RUN_DIR (the EE's
own /tmp: EEs that share a network namespace cannot collide on it, as on a TCP port); should it
exit at once, `pgbouncer --version` says why in the loader's words -> one login to the database
through it (the init credential check; the server connection it opens stays in the pool for the
first request) -> block on event/next -> on SHUTDOWN or SIGTERM stop PgBouncer and exit 0.

Any failure before event/next is logged and reported to /extension/init/error with an error
type naming its cause (the constants below; docs/contracts.md lists them), and ends the process
non-zero, so the environment's init fails fast with one clear line instead of a timeout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import platform
import pwd
import queue
import secrets
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from functions import contract

EXTENSION_NAME = "pgbouncer-extension"
READY_TIMEOUT_S = 8.0
STOP_TIMEOUT_S = 3.0
VERSION_TIMEOUT_S = 5.0
# sun_path is 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH = 107

# The init error types, as Lambda shows them (Lambda-Extension-Function-Error-Type).
CONFIG_INVALID = "Extension.ConfigInvalid"
PGBOUNCER_NOT_RUNNABLE = "Extension.PgBouncerNotRunnable"
NO_UNPRIVILEGED_USER = "Extension.NoUnprivilegedUser"
SECRET_UNREADABLE = "Extension.SecretUnreadable"
DATABASE_UNREACHABLE = "Extension.DatabaseUnreachable"
AUTH_FAILED = "Extension.AuthFailed"
AUTH_METHOD_UNSUPPORTED = "Extension.AuthMethodUnsupported"
DATABASE_REFUSED = "Extension.DatabaseRefused"
PGBOUNCER_START_FAILED = "Extension.PgBouncerStartFailed"
RUN_DIR_IN_USE = "Extension.RunDirInUse"
INIT_FAILED = "Extension.PoolerInitFailed"


class PoolerError(Exception):
    """A reason the pooler cannot serve: its message (one line) and error type go to the init
    error endpoint."""

    def __init__(self, message: str, error_type: str = INIT_FAILED) -> None:
        super().__init__(" ".join(message.split()))
        self.error_type = error_type


@dataclass(frozen=True)
class PoolerConfig:
    """The extension's env contract (docs/contracts.md), one field per variable.

    listen_addr is not in the env contract: the in-EE pooler listens on its Unix socket only
    (empty); only the local proxy arm's shared PgBouncer, a network service like RDS Proxy,
    listens on TCP."""

    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_password: str | None
    db_secret_arn: str | None
    pooler_port: int = contract.POOLER_PORT_DEFAULT
    pool_mode: str = contract.POOLER_DEFAULTS.pool_mode
    default_pool_size: int = contract.POOLER_DEFAULTS.default_pool_size
    min_pool_size: int = contract.POOLER_DEFAULTS.min_pool_size
    server_idle_timeout: int = contract.POOLER_DEFAULTS.server_idle_timeout
    max_client_conn: int = contract.POOLER_DEFAULTS.max_client_conn
    pgbouncer_bin: str = contract.PGBOUNCER_BIN_DEFAULT
    run_dir: Path = Path(contract.POOLER_RUN_DIR_DEFAULT)
    server_tls_sslmode: str = "require"
    os_user: str = "postgres"
    db_connect_timeout_s: float = 5.0
    listen_addr: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PoolerConfig:
        missing = [k for k in ("DB_HOST", "DB_NAME") if not env.get(k)]
        if not env.get("DB_SECRET_ARN") and not env.get("DB_PASSWORD"):
            missing.append("DB_SECRET_ARN or DB_PASSWORD")
        if not env.get("DB_SECRET_ARN") and not env.get("DB_USER"):
            missing.append("DB_USER")
        if missing:
            raise PoolerError(f"missing environment: {', '.join(missing)}", CONFIG_INVALID)
        c = contract
        try:
            knobs = c.PoolerKnobs.from_environment(env)
            cfg = cls(
                db_host=env[c.ENV_DB_HOST],
                db_port=int(env.get(c.ENV_DB_PORT, c.DB_PORT_DEFAULT)),
                db_name=env[c.ENV_DB_NAME],
                db_user=env.get(c.ENV_DB_USER, ""),
                db_password=env.get(c.ENV_DB_PASSWORD),
                db_secret_arn=env.get(c.ENV_DB_SECRET_ARN),
                pooler_port=int(env.get(c.ENV_POOLER_PORT, c.POOLER_PORT_DEFAULT)),
                pool_mode=knobs.pool_mode,
                default_pool_size=knobs.default_pool_size,
                min_pool_size=knobs.min_pool_size,
                server_idle_timeout=knobs.server_idle_timeout,
                max_client_conn=knobs.max_client_conn,
                pgbouncer_bin=env.get(c.ENV_PGBOUNCER_BIN, c.PGBOUNCER_BIN_DEFAULT),
                run_dir=Path(env.get(c.ENV_POOLER_RUN_DIR, c.POOLER_RUN_DIR_DEFAULT)),
                server_tls_sslmode=env.get(c.ENV_SERVER_TLS_SSLMODE, "require"),
                os_user=env.get("POOLER_OS_USER", "postgres"),
                db_connect_timeout_s=float(env.get("DB_CONNECT_TIMEOUT", "5")),
            )
        except ValueError as exc:
            raise PoolerError(f"bad numeric setting: {exc}", CONFIG_INVALID) from exc
        if not cfg.run_dir.is_absolute():
            raise PoolerError(
                f"POOLER_RUN_DIR {str(cfg.run_dir)!r} is relative: PgBouncer and the handler"
                " resolve it from different folders; give an absolute path",
                CONFIG_INVALID,
            )
        if not cfg.listen_addr and len(str(cfg.socket_path).encode()) > MAX_SOCKET_PATH:
            raise PoolerError(
                f"the socket path {cfg.socket_path} is longer than {MAX_SOCKET_PATH} bytes, the"
                " limit of a Unix socket: give a shorter POOLER_RUN_DIR",
                CONFIG_INVALID,
            )
        return cfg

    @property
    def socket_path(self) -> Path:
        """Where PgBouncer listens (libpq's name for it: host=<run_dir>, port=<pooler_port>)."""
        return self.run_dir / f".s.PGSQL.{self.pooler_port}"

    @property
    def tls(self) -> bool:
        return self.server_tls_sslmode in ("require", "verify-ca", "verify-full")


def check_pgbouncer_runs(binary: str) -> str:
    """`pgbouncer --version`, run when PgBouncer could not start: a binary the loader cannot
    load (a shared library missing from the runtime image, a wrong architecture) fails here,
    with the loader's own words, rather than as a PgBouncer that never listens. Returns the
    version line."""
    try:
        out = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except OSError as exc:
        raise PoolerError(
            f"PgBouncer {binary} cannot be run: {exc.strerror or exc}", PGBOUNCER_NOT_RUNNABLE
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise PoolerError(
            f"PgBouncer {binary} --version did not answer within {VERSION_TIMEOUT_S:.0f} s",
            PGBOUNCER_NOT_RUNNABLE,
        ) from exc
    if out.returncode != 0:
        lines = [line for line in (out.stderr + out.stdout).splitlines() if line.strip()]
        said = lines[-1] if lines else "no output"
        raise PoolerError(
            f"PgBouncer {binary} --version exited with code {out.returncode}: {said}",
            PGBOUNCER_NOT_RUNNABLE,
        )
    return out.stdout.splitlines()[0] if out.stdout else "PgBouncer (version not printed)"


def pgbouncer_account(
    preferred: str, lookup: Callable[[str], pwd.struct_passwd] = pwd.getpwnam
) -> pwd.struct_passwd:
    """The account PgBouncer drops to when we are root (it refuses to run as root): the
    preferred one (POOLER_OS_USER, postgres by default) if it exists, else `nobody`, which
    every Linux image has."""
    for name in dict.fromkeys((preferred, "nobody")):
        try:
            return lookup(name)
        except KeyError:
            continue
    raise PoolerError(
        f"running as root and neither {preferred!r} nor 'nobody' exists: set POOLER_OS_USER"
        " to an unprivileged user",
        NO_UNPRIVILEGED_USER,
    )


def resolve_credentials(cfg: PoolerConfig) -> tuple[str, str]:
    """(user, password): from Secrets Manager on AWS, so no password sits in the environment."""
    if cfg.db_secret_arn:
        try:
            import boto3  # the layer's (locally: the project's; tests: against moto)
            from botocore.config import Config

            # Fail within Lambda's 10 s init, not after botocore's 60 s timeouts and retries:
            # an endpoint that is not there is then a SecretUnreadable, not an init timeout.
            quick = Config(
                connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"}
            )
            client = boto3.client("secretsmanager", config=quick)
            raw = client.get_secret_value(SecretId=cfg.db_secret_arn)
            secret = json.loads(raw["SecretString"])
            return cfg.db_user or str(secret["username"]), str(secret["password"])
        except KeyError as exc:
            raise PoolerError(
                f"the secret {cfg.db_secret_arn} has no {exc} field", SECRET_UNREADABLE
            ) from exc
        except Exception as exc:  # boto3's, the network's or JSON's: all mean "no password"
            reason = f"{type(exc).__name__}: {exc}"
            raise PoolerError(
                f"cannot read the secret {cfg.db_secret_arn}: {reason}", SECRET_UNREADABLE
            ) from exc
    assert cfg.db_password is not None
    return cfg.db_user, cfg.db_password


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def render_ini(cfg: PoolerConfig, user: str) -> str:
    """pgbouncer.ini. In an EE: a Unix socket in the EE's own run dir, no TCP listener, and
    `trust` for whoever reaches the socket (0700: this EE's own user; see docs/contracts.md);
    the handler then needs no password, so no worker reads the secret or imports boto3.
    The local proxy stand-in (listen_addr set): TCP on loopback, SCRAM, no socket."""
    run = cfg.run_dir
    if cfg.listen_addr:
        listen = [
            f"listen_addr = {cfg.listen_addr}",
            f"listen_port = {cfg.pooler_port}",
            "unix_socket_dir =",
            "auth_type = scram-sha-256",
        ]
    else:
        listen = [
            f"listen_port = {cfg.pooler_port}",
            f"unix_socket_dir = {run}",
            "unix_socket_mode = 0700",
            "auth_type = trust",
        ]
    return "\n".join(
        [
            "[databases]",
            f"{cfg.db_name} = host={cfg.db_host} port={cfg.db_port} dbname={cfg.db_name}",
            "",
            "[pgbouncer]",
            *listen,
            f"auth_file = {run / 'userlist.txt'}",
            f"pool_mode = {cfg.pool_mode}",
            f"default_pool_size = {cfg.default_pool_size}",
            f"min_pool_size = {cfg.min_pool_size}",
            f"server_idle_timeout = {cfg.server_idle_timeout}",
            f"max_client_conn = {cfg.max_client_conn}",
            f"server_tls_sslmode = {cfg.server_tls_sslmode}",
            f"stats_users = {user}",
            "ignore_startup_parameters = extra_float_digits",
            f"logfile = {run / 'pgbouncer.log'}",
            f"pidfile = {run / 'pgbouncer.pid'}",
            "",
        ]
    )


def write_files(cfg: PoolerConfig, user: str, password: str) -> tuple[Path, Path]:
    """Writes the ini and the auth file (0600, created with that mode: never world-readable)."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    ini = cfg.run_dir / "pgbouncer.ini"
    auth = cfg.run_dir / "userlist.txt"
    for path, text in (
        (ini, render_ini(cfg, user)),
        (auth, f"{_quote(user)} {_quote(password)}\n"),
    ):
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
    return ini, auth


def start_pgbouncer(cfg: PoolerConfig, ini: Path) -> subprocess.Popen[bytes]:
    """PgBouncer in the foreground, our child, so its death is seen. As root (possible on
    Managed Instances, where the environment is not documented; always so locally as root) it
    drops privileges itself (-u) to an account that exists, as it refuses to run as root."""
    argv = [cfg.pgbouncer_bin, str(ini)]
    if os.geteuid() == 0:
        account = pgbouncer_account(cfg.os_user)
        for path in (cfg.run_dir, *cfg.run_dir.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)
        argv += ["-u", account.pw_name]
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise PoolerError(
            f"cannot start PgBouncer {cfg.pgbouncer_bin}: {exc.strerror}", PGBOUNCER_NOT_RUNNABLE
        ) from exc


def _last_log_line(cfg: PoolerConfig) -> str:
    try:
        lines = (cfg.run_dir / "pgbouncer.log").read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


def wait_listening(proc: subprocess.Popen[bytes], cfg: PoolerConfig, timeout_s: float) -> None:
    """Until PgBouncer accepts a connection where cfg says it listens (its socket, or the
    TCP port of the local proxy stand-in)."""
    where = f"{cfg.listen_addr}:{cfg.pooler_port}" if cfg.listen_addr else str(cfg.socket_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PoolerError(
                f"PgBouncer exited with code {proc.returncode} during start: {_last_log_line(cfg)}",
                PGBOUNCER_START_FAILED,
            )
        try:
            if cfg.listen_addr:
                with socket.create_connection((cfg.listen_addr, cfg.pooler_port), 0.5) as sock:
                    # Connecting to a port nobody listens on yet can, rarely, pick that very
                    # port as its own source and connect to itself (a TCP self-connect).
                    if sock.getsockname() != sock.getpeername():
                        return
            else:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(0.5)
                    sock.connect(str(cfg.socket_path))
                    return
        except OSError:
            pass
        time.sleep(0.005)  # PgBouncer listens within ~10 ms: a cold start waits for this
    raise PoolerError(
        f"PgBouncer did not listen on {where} within {timeout_s:.0f} s", PGBOUNCER_START_FAILED
    )


# --- a minimal PostgreSQL client: one real login, stdlib only ------------------------------


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    header = _recv_exact(sock, 5)
    length = struct.unpack("!I", header[1:])[0]
    return header[:1], _recv_exact(sock, length - 4)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("the server closed the connection during login")
        data += chunk
    return data


def _send(sock: socket.socket, kind: bytes, payload: bytes) -> None:
    sock.sendall(kind + struct.pack("!I", len(payload) + 4) + payload)


def _error_fields(payload: bytes) -> tuple[str, str]:
    """(SQLSTATE, message) of an ErrorResponse."""
    fields = {f[:1]: f[1:].decode(errors="replace") for f in payload.split(b"\0") if f}
    return fields.get(b"C", ""), fields.get(b"M", "unknown error")


def _scram_client(sock: socket.socket, user: str, password: str) -> None:
    """SCRAM-SHA-256 (RFC 5802/7677), what PostgreSQL asks by default."""
    nonce = base64.b64encode(secrets.token_bytes(18)).decode()
    first_bare = f"n=,r={nonce}"
    first = ("n,," + first_bare).encode()
    _send(sock, b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
    kind, payload = _read_message(sock)
    if kind == b"E":
        raise _login_refused(payload, "the server")
    server_first = payload[4:].decode()
    attrs = dict(item.split("=", 1) for item in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
    )
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    final_bare = f"c=biws,r={attrs['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True)))
    _send(sock, b"p", f"{final_bare},p={proof.decode()}".encode())


def md5_response(user: str, password: str, salt: bytes) -> bytes:
    """PostgreSQL's MD5 password message: "md5" + md5(md5(password + user) + salt), in hex.
    What a server asks when the role's password is stored as MD5 and pg_hba says md5 (an
    older cluster, or a proxy configured so)."""
    inner = hashlib.md5(password.encode() + user.encode(), usedforsecurity=False).hexdigest()
    outer = hashlib.md5(inner.encode() + salt, usedforsecurity=False).hexdigest()
    return b"md5" + outer.encode() + b"\0"


# AuthenticationRequest codes the login answers: 0 ok, 3 cleartext, 5 MD5, 10 SASL, 11/12 SASL
# continue/final (the SCRAM exchange reads its continue message itself).
AUTH_NAMES = {2: "Kerberos V5", 6: "SCM credentials", 7: "GSSAPI", 8: "GSSAPI", 9: "SSPI"}


def _login_refused(payload: bytes, who: str) -> PoolerError:
    code, message = _error_fields(payload)
    # SQLSTATE class 28: invalid authorization (wrong password, no such role, pg_hba reject).
    kind = AUTH_FAILED if code.startswith("28") else DATABASE_REFUSED
    return PoolerError(f"login to {who} failed: {message}", kind)


def _start_tls(sock: socket.socket, host: str) -> ssl.SSLSocket:
    """PostgreSQL's SSLRequest, then TLS without certificate checks: sslmode=require, which is
    what PgBouncer itself uses towards the server."""
    sock.sendall(struct.pack("!II", 8, 80877103))
    if sock.recv(1) != b"S":
        raise PoolerError(
            "the database does not accept TLS (server_tls_sslmode needs it)", DATABASE_REFUSED
        )
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock, server_hostname=host)


def _open(host: str, port: int, timeout_s: float) -> socket.socket:
    """TCP to host:port, or, as libpq does for a host that is a path, the Unix socket
    <host>/.s.PGSQL.<port>."""
    if host.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout_s)
            sock.connect(f"{host}/.s.PGSQL.{port}")
        except OSError:
            sock.close()
            raise
        return sock
    return socket.create_connection((host, port), timeout=timeout_s)


def connect_within(host: str, port: int, timeout_s: float, waited_s: float = 0.0) -> socket.socket:
    """A connection to the database, retried until timeout_s: a cluster that is starting or
    a route that is not there yet answers with a refusal or silence, not with an error we
    could read. Failing that: DatabaseUnreachable, with the last reason and the whole time
    waited for it (waited_s: how long others waited before this call)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            return _open(host, port, max(min(left, 2.0), 0.1))
        except OSError as exc:
            if time.monotonic() + 0.2 >= deadline:
                reason = exc.strerror or str(exc) or type(exc).__name__
                total = round(waited_s + timeout_s, 1)
                raise PoolerError(
                    f"cannot reach the database at {host}:{port} within {total:g} s: {reason}",
                    DATABASE_UNREACHABLE,
                ) from exc
            time.sleep(0.2)


def check_login(
    host: str,
    port: int,
    dbname: str,
    user: str,
    password: str,
    timeout_s: float,
    *,
    who: str,
    tls: bool = False,
    waited_s: float = 0.0,
) -> None:
    """One real login (startup, authentication, ReadyForQuery), then Terminate: the init
    credential check (check_database). Errors are PoolerErrors typed by cause (unreachable,
    authentication, other refusal); a reply that does not come within timeout_s is
    DatabaseUnreachable."""
    sock: socket.socket = connect_within(host, port, timeout_s, waited_s)
    try:
        if tls:
            sock = _start_tls(sock, host)
        params = f"user\0{user}\0database\0{dbname}\0\0".encode()
        _send(sock, b"", struct.pack("!I", 196608) + params)
        while True:
            kind, payload = _read_message(sock)
            if kind == b"E":
                raise _login_refused(payload, who)
            if kind == b"Z":
                _send(sock, b"X", b"")
                return
            if kind == b"R":
                code = struct.unpack("!I", payload[:4])[0]
                if code == 10:
                    _scram_client(sock, user, password)
                elif code == 5:
                    _send(sock, b"p", md5_response(user, password, payload[4:8]))
                elif code == 3:
                    _send(sock, b"p", password.encode() + b"\0")
                elif code not in (0, 11, 12):
                    method = AUTH_NAMES.get(code, f"code {code}")
                    raise PoolerError(
                        f"{who} asks for {method} authentication, which the extension does not"
                        " speak: use SCRAM-SHA-256, MD5 or password",
                        AUTH_METHOD_UNSUPPORTED,
                    )
    except OSError as exc:
        raise PoolerError(
            f"login to {who} failed: {exc.strerror or exc}", DATABASE_UNREACHABLE
        ) from exc
    finally:
        sock.close()


# --- the Extensions API --------------------------------------------------------------------


class ExtensionsApi:
    """The three calls an external extension makes, over the loopback HTTP API Lambda gives it.
    http.client, not urllib: one plain request each, without urllib's opener and handlers
    (a few ms of CPU in every cold start)."""

    def __init__(self, address: str, name: str) -> None:
        self.address = address
        self.base = "/2020-01-01/extension"
        self.name = name
        self.extension_id = ""

    def _call(
        self, method: str, path: str, body: object | None, headers: dict[str, str]
    ) -> tuple[dict[str, str], bytes]:
        data = json.dumps(body).encode() if body is not None else None
        host, _, port = self.address.rpartition(":")
        if not host or not port.isdigit():
            raise OSError(f"not a host:port: {self.address!r}")
        connection = http.client.HTTPConnection(host, int(port))
        try:
            connection.request(method, self.base + path, body=data, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if response.status >= 400:
            raise OSError(f"{method} {path}: HTTP {response.status}: {payload[:200]!r}")
        return dict(response.getheaders()), payload

    def register(self) -> None:
        headers, _ = self._call(
            "POST", "/register", {"events": ["SHUTDOWN"]}, {"Lambda-Extension-Name": self.name}
        )
        self.extension_id = headers["Lambda-Extension-Identifier"]

    def next_event(self) -> dict[str, object]:
        _, body = self._call(
            "GET", "/event/next", None, {"Lambda-Extension-Identifier": self.extension_id}
        )
        return dict(json.loads(body))

    def init_error(self, error_type: str, message: str) -> None:
        """Lambda fails the environment's init with this type and message (one line each)."""
        self._call(
            "POST",
            "/init/error",
            {"errorMessage": message, "errorType": error_type, "stackTrace": []},
            {
                "Lambda-Extension-Identifier": self.extension_id,
                "Lambda-Extension-Function-Error-Type": error_type,
            },
        )


def log(message: str) -> None:
    print(f"[{EXTENSION_NAME}] {message}", flush=True)


def stop(proc: subprocess.Popen[bytes], auth_file: Path) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    auth_file.unlink(missing_ok=True)


def serve(api: ExtensionsApi, proc: subprocess.Popen[bytes], auth_file: Path) -> int:
    """Blocks on event/next in a thread; returns when SHUTDOWN or SIGTERM comes (0) or when
    PgBouncer dies under us (1: Lambda then marks the environment unhealthy)."""
    events: queue.Queue[str] = queue.Queue()

    def poll_events() -> None:
        while True:
            try:
                event = api.next_event()
            except Exception as exc:  # the Extensions API is gone: its sandbox is ending
                events.put(f"Extensions API gone ({type(exc).__name__})")
                return
            if event.get("eventType") == "SHUTDOWN":
                events.put("SHUTDOWN")
                return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        events.put("SIGTERM")

    signal.signal(signal.SIGTERM, on_sigterm)
    threading.Thread(target=poll_events, daemon=True).start()
    while True:
        try:
            reason = events.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                log(f"PgBouncer exited with code {proc.returncode}; extension exits")
                auth_file.unlink(missing_ok=True)
                return 1
            continue
        log(f"{reason}: stopping PgBouncer")
        stop(proc, auth_file)
        return 0


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(str(path))
        except OSError:
            return False  # absent, or a stale file nobody listens on: PgBouncer replaces it
        return True


def check_database(cfg: PoolerConfig, user: str, password: str) -> None:
    """The init credential check: one login to the database through the PgBouncer just
    started, so a wrong password or an unreachable cluster fails init rather than the first
    request. PgBouncer logs in to the server for it, and keeps that server connection in the
    pool, where the first request finds it: the check costs no login of its own (it used to be
    a login straight to the database, then one more to PgBouncer's console).

    Only when that fails does the extension log in straight to the database, for the
    database's own words and the error type they mean (PgBouncer's refusal is always its own
    08P01, and to a server it cannot reach it says nothing: it keeps the client waiting). If
    the straight login works, the fault is PgBouncer's: PgBouncerStartFailed."""
    host = cfg.listen_addr or str(cfg.run_dir)
    timeout_s = cfg.db_connect_timeout_s
    # PgBouncer keeps silent about a server it cannot reach: leave the last second (or half)
    # of the timeout for the database to say why, so init still fails within DB_CONNECT_TIMEOUT.
    through_s = max(timeout_s - 1.0, timeout_s / 2)
    started = time.monotonic()
    try:
        check_login(host, cfg.pooler_port, cfg.db_name, user, password, through_s, who="PgBouncer")
        return
    except PoolerError as exc:
        through = exc
    waited = time.monotonic() - started
    silent = waited >= through_s * 0.9
    check_login(
        cfg.db_host,
        cfg.db_port,
        cfg.db_name,
        user,
        password,
        max(timeout_s - waited, 0.5) if silent else timeout_s,  # a refusal: the whole timeout
        who="the database",
        tls=cfg.tls,
        waited_s=waited if silent else 0.0,
    )
    raise PoolerError(
        f"the database takes the login, PgBouncer does not: {through}", PGBOUNCER_START_FAILED
    )


class Steps:
    """How long each init step took, logged as one line ("init steps: version 3.1 ms, ..."):
    where a cold start's time goes, in CloudWatch on AWS and for scripts/bench_cold_start.py
    locally."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.ms[name] = (now - self._last) * 1000
        self._last = now

    def line(self) -> str:
        return "init steps: " + ", ".join(f"{k} {v:.1f} ms" for k, v in self.ms.items())


def init_pooler(
    cfg: PoolerConfig, steps: Steps | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """Everything between register and event/next; a PoolerError says what failed. Nothing
    is started until the secret has been read; PgBouncer and the database are proved by
    starting it and logging in through it (check_database): if either fails, PgBouncer is
    stopped and its auth file removed."""
    steps = steps or Steps()
    user, password = resolve_credentials(cfg)
    steps.done("credentials")
    if not cfg.listen_addr and _socket_answers(cfg.socket_path):
        # Only if EEs shared /tmp, which Lambda does not document either way: say so, rather
        # than overwrite the other EE's files and fail on its socket.
        raise PoolerError(
            f"{cfg.socket_path} already answers: another PgBouncer uses {cfg.run_dir};"
            " give each execution environment its own POOLER_RUN_DIR",
            RUN_DIR_IN_USE,
        )
    try:
        ini, auth_file = write_files(cfg, user, password)
    except OSError as exc:
        raise PoolerError(
            f"cannot write PgBouncer's files in {cfg.run_dir}: {exc.strerror or exc}",
            CONFIG_INVALID,
        ) from exc
    steps.done("files")
    try:
        proc = start_pgbouncer(cfg, ini)
    except PoolerError:
        auth_file.unlink(missing_ok=True)
        check_pgbouncer_runs(cfg.pgbouncer_bin)  # the reason, in the loader's words
        raise
    try:
        try:
            wait_listening(proc, cfg, READY_TIMEOUT_S)
        except PoolerError as exc:
            if proc.poll() is not None:
                # A binary the loader cannot load (a library missing from the runtime image,
                # another architecture) exits at once: `--version` says why in its words.
                # Only then: on every good start it would cost a process of its own.
                check_pgbouncer_runs(cfg.pgbouncer_bin)
            raise PoolerError(str(exc), PGBOUNCER_START_FAILED) from exc
        steps.done("pgbouncer start")
        check_database(cfg, user, password)
        steps.done("database login")
    except PoolerError:
        stop(proc, auth_file)
        raise
    log(f"PgBouncer (pid {proc.pid}) ready on {cfg.socket_path}, {cfg.pool_mode} mode")
    log(steps.line())
    return proc, auth_file


def main(env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    address = env.get("AWS_LAMBDA_RUNTIME_API", "")
    api = ExtensionsApi(address, EXTENSION_NAME)
    steps = Steps()
    # Which interpreter: the layer's own (/opt/pooler-python) on AWS, under any runtime.
    log(f"on Python {platform.python_version()} ({sys.executable})")
    try:
        api.register()
    except (OSError, KeyError) as exc:
        log(f"cannot register with the Extensions API at {address!r}: {exc}")
        return 1
    steps.done("register")
    try:
        proc, auth_file = init_pooler(PoolerConfig.from_env(env), steps)
    except Exception as exc:  # a PoolerError names its cause; anything else still fails init
        error = exc if isinstance(exc, PoolerError) else PoolerError(f"{type(exc).__name__}: {exc}")
        log(f"init failed: {error.error_type}: {error}")
        api.init_error(error.error_type, str(error))
        return 1
    return serve(api, proc, auth_file)


if __name__ == "__main__":
    sys.exit(main())
