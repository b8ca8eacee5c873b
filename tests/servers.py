"""Real servers on 127.0.0.1 for the alert tests: an SMTP inbox (aiosmtpd) and an HTTP server that
records what a Slack incoming webhook would receive."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SMTP_PASSWORD = "s3cret-Smtp-Pa55word-9f1c"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpInbox:
    """An aiosmtpd server that keeps every message and accepts any login."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.logins: list[tuple[str, str]] = []
        inbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                inbox.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                inbox.messages.append(message_from_bytes(envelope.original_content))
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            assert isinstance(data, LoginPassword)
            self.logins.append((data.login.decode(), data.password.decode()))
            return AuthResult(success=True)

        self.port = free_port()  # aiosmtpd cannot take port 0: it connects to its port to check it started
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticate,
            auth_require_tls=False,
        )

    def __enter__(self) -> SmtpInbox:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class WebhookServer:
    """An HTTP server that records each POSTed JSON body, as a Slack incoming webhook receives it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return self.server.server_address[1]


def smtp_connection(port: int) -> str:
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": "127.0.0.1",
            "port": port,
            "login": "alerts",
            "password": SMTP_PASSWORD,
            "extra": {"disable_ssl": True, "disable_tls": True, "timeout": 10, "retry_limit": 0},
        }
    )


# --- Redis and PostgreSQL of a test's own -----------------------------------------------------------------
# The fault tests stop and restart these; the machine's shared services (6379, 5432) are never touched.

SERVICE_TIMEOUT = 60  # seconds to start or stop a service on a loaded 2-core machine


def _wait_for_port(port: int, up: bool, timeout: float, what: str) -> None:
    """Until 127.0.0.1:`port` accepts connections (`up`) or refuses them (not `up`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(1)
            accepting = sock.connect_ex(("127.0.0.1", port)) == 0
        if accepting == up:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} on port {port} did not {'start' if up else 'stop'} within {timeout:.0f} s")


class RedisServer:
    """`redis-server` on a free loopback port, with its data (append-only file) in a folder of its own,
    so a restart keeps the queued Celery messages as the compose deployment's Redis volume does."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            "--appendonly", "yes", "--save", "", "--protected-mode", "yes",
        ]  # fmt: skip
        log = (self.data_dir / "redis.log").open("ab")
        with log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for_port(self.port, True, SERVICE_TIMEOUT, "redis-server")

    def stop(self) -> None:
        """SIGTERM (Redis flushes its append-only file), SIGKILL if it does not exit in time."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=SERVICE_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, down_seconds: float = 0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program (initdb, pg_ctl): they are not on PATH on Debian."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (/usr/lib/postgresql/*/bin)")
    return found[-1]


class PostgresServer:
    """A PostgreSQL cluster of its own (`initdb`, `pg_ctl`) on a free loopback port, trust auth for the
    `postgres` role, its data in a temporary folder of its own. initdb refuses to run as root, so as root it
    runs as the `postgres` system user (pytest's tmp_path is private to root: hence not there)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="test-postgres-"))
        self.pgdata = self.base / "pgdata"
        self.socket_dir = self.base / "socket"
        self.log = self.base / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = SERVICE_TIMEOUT) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")

    def init(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self._run(postgres_bin("initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", timeout=120)  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        options += " -c fsync=off"  # a test database: durability across a crash of the machine is not tested
        self._run(postgres_bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log), "-o", options, "-w",
                  "-t", str(SERVICE_TIMEOUT), "start")  # fmt: skip
        _wait_for_port(self.port, True, SERVICE_TIMEOUT, "postgres")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: roll back open transactions and close connections, as `docker compose restart` does."""
        if not (self.pgdata / "postmaster.pid").exists():
            return
        self._run(postgres_bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "-t", str(SERVICE_TIMEOUT),
                  "stop")  # fmt: skip

    def restart(self, down_seconds: float = 0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def create_database(self, name: str) -> str:
        """A new database; its SQLAlchemy URL."""
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def __enter__(self) -> PostgresServer:
        self.init()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
