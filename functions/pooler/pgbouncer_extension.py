"""PgBouncer as a Lambda extension: one pooler per execution environment, shared by its requests.

Ships in the layer as /opt/pgbouncer_extension.py, started by /opt/extensions/pgbouncer-extension.
Standard library only (boto3, from the Python runtime, only when the password is a secret), so
the same file runs in the layer on AWS and in the local execution environments.

Lifecycle, as Lambda expects of an external extension:
register for SHUTDOWN only (Managed Instances refuse INVOKE) -> write pgbouncer.ini and the auth
file -> start PgBouncer -> prove the credentials on the database and the pooler's own login ->
block on event/next -> on SHUTDOWN or
SIGTERM stop PgBouncer and exit 0. Any failure before event/next is reported to the init error
endpoint and ends the process non-zero, so the environment's init fails fast instead of hanging.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
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
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

EXTENSION_NAME = "pgbouncer-extension"
READY_TIMEOUT_S = 8.0
STOP_TIMEOUT_S = 3.0


class PoolerError(Exception):
    """A reason the pooler cannot serve; its message goes to the init error endpoint."""


@dataclass(frozen=True)
class PoolerConfig:
    """The extension's env contract (DESIGN.md), one field per variable."""

    db_host: str
    db_port: int
    db_name: str
    db_user: str
    db_password: str | None
    db_secret_arn: str | None
    pooler_port: int = 6432
    pool_mode: str = "transaction"
    default_pool_size: int = 20
    min_pool_size: int = 0
    server_idle_timeout: int = 600
    max_client_conn: int = 1000
    pgbouncer_bin: str = "/opt/bin/pgbouncer"
    run_dir: Path = Path("/tmp")
    server_tls_sslmode: str = "require"
    os_user: str = "postgres"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PoolerConfig:
        missing = [k for k in ("DB_HOST", "DB_NAME") if not env.get(k)]
        if not env.get("DB_SECRET_ARN") and not env.get("DB_PASSWORD"):
            missing.append("DB_SECRET_ARN or DB_PASSWORD")
        if not env.get("DB_SECRET_ARN") and not env.get("DB_USER"):
            missing.append("DB_USER")
        if missing:
            raise PoolerError(f"missing environment: {', '.join(missing)}")
        try:
            return cls(
                db_host=env["DB_HOST"],
                db_port=int(env.get("DB_PORT", "5432")),
                db_name=env["DB_NAME"],
                db_user=env.get("DB_USER", ""),
                db_password=env.get("DB_PASSWORD"),
                db_secret_arn=env.get("DB_SECRET_ARN"),
                pooler_port=int(env.get("POOLER_PORT", "6432")),
                pool_mode=env.get("POOL_MODE", "transaction"),
                default_pool_size=int(env.get("DEFAULT_POOL_SIZE", "20")),
                min_pool_size=int(env.get("MIN_POOL_SIZE", "0")),
                server_idle_timeout=int(env.get("SERVER_IDLE_TIMEOUT", "600")),
                max_client_conn=int(env.get("MAX_CLIENT_CONN", "1000")),
                pgbouncer_bin=env.get("PGBOUNCER_BIN", "/opt/bin/pgbouncer"),
                run_dir=Path(env.get("POOLER_RUN_DIR", "/tmp")),
                server_tls_sslmode=env.get("SERVER_TLS_SSLMODE", "require"),
                os_user=env.get("POOLER_OS_USER", "postgres"),
            )
        except ValueError as exc:
            raise PoolerError(f"bad numeric setting: {exc}") from exc


def resolve_credentials(cfg: PoolerConfig) -> tuple[str, str]:
    """(user, password): from Secrets Manager on AWS, so no password sits in the environment."""
    if cfg.db_secret_arn:
        import boto3  # in the Lambda Python runtime; never needed locally

        raw = boto3.client("secretsmanager").get_secret_value(SecretId=cfg.db_secret_arn)
        secret = json.loads(raw["SecretString"])
        return cfg.db_user or str(secret["username"]), str(secret["password"])
    assert cfg.db_password is not None
    return cfg.db_user, cfg.db_password


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def render_ini(cfg: PoolerConfig, user: str) -> str:
    """pgbouncer.ini: loopback only, no unix socket (EEs share /tmp), the arm's role reads stats."""
    run = cfg.run_dir
    return "\n".join(
        [
            "[databases]",
            f"{cfg.db_name} = host={cfg.db_host} port={cfg.db_port} dbname={cfg.db_name}",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {cfg.pooler_port}",
            "unix_socket_dir =",
            "auth_type = scram-sha-256",
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
    """PgBouncer in the foreground, our child, so its death is seen; as root it drops privileges
    itself (-u), because it refuses to run as root and Lambda never runs as root."""
    argv = [cfg.pgbouncer_bin, str(ini)]
    if os.geteuid() == 0:
        account = pwd.getpwnam(cfg.os_user)
        for path in (cfg.run_dir, *cfg.run_dir.iterdir()):
            os.chown(path, account.pw_uid, account.pw_gid)
        argv += ["-u", cfg.os_user]
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise PoolerError(f"cannot start PgBouncer {cfg.pgbouncer_bin}: {exc.strerror}") from exc


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PoolerError(f"PgBouncer exited with code {proc.returncode} during start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                # Connecting to a port nobody listens on yet can, rarely, pick that very port
                # as its own source and connect to itself (a TCP self-connect): not PgBouncer.
                if sock.getsockname() != sock.getpeername():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise PoolerError(f"PgBouncer did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


# --- a minimal PostgreSQL client: one real login through PgBouncer, stdlib only -------------


def _read_message(sock: socket.socket) -> tuple[bytes, bytes]:
    header = _recv_exact(sock, 5)
    length = struct.unpack("!I", header[1:])[0]
    return header[:1], _recv_exact(sock, length - 4)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise PoolerError("PgBouncer closed the connection during login")
        data += chunk
    return data


def _send(sock: socket.socket, kind: bytes, payload: bytes) -> None:
    sock.sendall(kind + struct.pack("!I", len(payload) + 4) + payload)


def _error_text(payload: bytes) -> str:
    fields = {f[:1]: f[1:].decode(errors="replace") for f in payload.split(b"\0") if f}
    return fields.get(b"M", "unknown error")


def _scram_client(sock: socket.socket, user: str, password: str) -> None:
    """SCRAM-SHA-256 (RFC 5802/7677), the exchange PgBouncer asks of clients here."""
    nonce = base64.b64encode(secrets.token_bytes(18)).decode()
    first_bare = f"n=,r={nonce}"
    first = ("n,," + first_bare).encode()
    _send(sock, b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
    kind, payload = _read_message(sock)
    if kind == b"E":
        raise PoolerError(_error_text(payload))
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


def _start_tls(sock: socket.socket, host: str) -> ssl.SSLSocket:
    """PostgreSQL's SSLRequest, then TLS without certificate checks: sslmode=require, which is
    what PgBouncer itself uses towards the server."""
    sock.sendall(struct.pack("!II", 8, 80877103))
    if sock.recv(1) != b"S":
        raise PoolerError("the database does not accept TLS (server_tls_sslmode needs it)")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock, server_hostname=host)


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
) -> None:
    """One real login (startup, SCRAM, ReadyForQuery), then Terminate. Run twice at init:
    straight to the database, so a wrong password or an unreachable cluster fails init rather
    than the first request; and to PgBouncer's own console, which proves the pooler's auth file
    and listener without opening a server connection that would then sit idle in its pool."""
    with socket.create_connection((host, port), timeout=timeout_s) as raw:
        sock: socket.socket = _start_tls(raw, host) if tls else raw
        params = f"user\0{user}\0database\0{dbname}\0\0".encode()
        _send(sock, b"", struct.pack("!I", 196608) + params)
        while True:
            kind, payload = _read_message(sock)
            if kind == b"E":
                raise PoolerError(f"login to {who} failed: {_error_text(payload)}")
            if kind == b"Z":
                _send(sock, b"X", b"")
                return
            if kind == b"R":
                code = struct.unpack("!I", payload[:4])[0]
                if code == 10:
                    _scram_client(sock, user, password)
                elif code == 3:
                    _send(sock, b"p", password.encode() + b"\0")
                elif code not in (0, 11, 12):
                    raise PoolerError(f"unsupported authentication request {code} from {who}")


# --- the Extensions API --------------------------------------------------------------------


class ExtensionsApi:
    """The three calls an external extension makes, over the loopback HTTP API Lambda gives it."""

    def __init__(self, address: str, name: str) -> None:
        self.base = f"http://{address}/2020-01-01/extension"
        self.name = name
        self.extension_id = ""

    def _call(
        self, method: str, path: str, body: object | None, headers: dict[str, str]
    ) -> tuple[dict[str, str], bytes]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        for key, value in headers.items():
            request.add_header(key, value)
        with urllib.request.urlopen(request) as response:
            return dict(response.headers.items()), response.read()

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

    def init_error(self, message: str) -> None:
        self._call(
            "POST",
            "/init/error",
            {"errorMessage": message, "errorType": "Extension.PoolerInitFailed"},
            {
                "Lambda-Extension-Identifier": self.extension_id,
                "Lambda-Extension-Function-Error-Type": "Extension.PoolerInitFailed",
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
            event = api.next_event()
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


def main(env: Mapping[str, str] | None = None) -> int:
    env = dict(os.environ if env is None else env)
    address = env.get("AWS_LAMBDA_RUNTIME_API", "")
    api = ExtensionsApi(address, EXTENSION_NAME)
    try:
        api.register()
    except (OSError, KeyError) as exc:
        log(f"cannot register with the Extensions API at {address!r}: {exc}")
        return 1
    proc: subprocess.Popen[bytes] | None = None
    auth_file = Path(env.get("POOLER_RUN_DIR", "/tmp")) / "userlist.txt"
    try:
        cfg = PoolerConfig.from_env(env)
        user, password = resolve_credentials(cfg)
        ini, auth_file = write_files(cfg, user, password)
        proc = start_pgbouncer(cfg, ini)
        wait_listening(proc, cfg.pooler_port, READY_TIMEOUT_S)
        tls = cfg.server_tls_sslmode in ("require", "verify-ca", "verify-full")
        check_login(
            cfg.db_host,
            cfg.db_port,
            cfg.db_name,
            user,
            password,
            READY_TIMEOUT_S,
            who="the database",
            tls=tls,
        )
        check_login(
            "127.0.0.1",
            cfg.pooler_port,
            "pgbouncer",
            user,
            password,
            READY_TIMEOUT_S,
            who="PgBouncer",
        )
    except (PoolerError, OSError, KeyError) as exc:
        message = f"PgBouncer extension init failed: {exc}"
        log(message)
        if proc is not None:
            stop(proc, auth_file)
        api.init_error(message)
        return 1
    log(f"PgBouncer (pid {proc.pid}) ready on 127.0.0.1:{cfg.pooler_port}, {cfg.pool_mode} mode")
    return serve(api, proc, auth_file)


if __name__ == "__main__":
    sys.exit(main())
