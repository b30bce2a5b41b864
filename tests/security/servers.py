"""A separate, disposable system for fault tests: its own embedded PostgreSQL and Redis (under a
temporary directory) and a gunicorn server on them, so a test can stop and restart either server
without touching the session's shared ones."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

from config.devstack.servers import DevStack, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FaultSystem:
    base: Path
    stack: DevStack = field(init=False)
    port: int = 0
    env: dict[str, str] = field(default_factory=dict)
    admin_key: str = ""
    server: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.stack = DevStack(base=self.base)

    # ----- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        urls = self.stack.start()
        self.port = free_port()
        self.env = {
            **os.environ,
            **urls,
            "DEVSTACK_DIR": str(self.base),
            "DEBUG": "0",  # production behaviour: no tracebacks, production error pages
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback
            "ALLOW_ANONYMOUS_READS": "0",
            "BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": "2",
            "GUNICORN_TIMEOUT": "30",
            "DB_CONNECT_TIMEOUT": "2",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        self.manage("migrate", "--noinput", "-v", "0")
        self.admin_key = self.manage(
            "create_api_key", "--name", "fault-admin", "--role", "admin"
        ).strip()
        self.log = open(self.base / "gunicorn.log", "wb")  # noqa: SIM115 - closed in stop()
        self.server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi:application"]
            + ["--config", "python:config.gunicorn"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._live, 60, "gunicorn to answer /health/live/")

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait()
        if getattr(self, "log", None):
            self.log.close()
        self.stack.stop()

    def stop_postgres(self) -> None:
        """A clean fast shutdown (sessions are cut, open transactions roll back).

        Unlike ``DevStack.stop_postgres`` this never falls back to an immediate shutdown: the
        dev server runs with ``synchronous_commit=off``, so a crash may lose acknowledged commits
        by design, which is not the fault under test. A failed stop fails the test loudly.
        """
        stack = self.stack
        try:
            stack._pg_run(
                [stack.pg_bin("pg_ctl"), "-D", str(stack.pgdata), "-m", "fast", "-w", "stop"]
            )
        except subprocess.CalledProcessError as exc:
            raise AssertionError(f"pg_ctl stop failed: {exc.stdout} {exc.stderr}") from exc

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def _live(self) -> bool:
        try:
            return requests.get(self.url("/health/live/"), timeout=1).status_code == 200
        except requests.RequestException:
            return False

    # ----- HTTP and SQL ----------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def call(self, method: str, path: str, body: Any = None, timeout: float = 15) -> Any:
        return requests.request(
            method,
            self.url(path),
            json=body,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=timeout,
        )

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        dsn = self.stack.database_url.replace("postgres://", "postgresql://")
        with psycopg.connect(dsn) as conn:
            return conn.execute(query, params).fetchall()

    def server_log(self) -> str:
        return (self.base / "gunicorn.log").read_text(errors="replace")[-5000:]


def wait_for(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``predicate()`` held (raises after ``timeout``)."""
    started = time.monotonic()
    wait_until(predicate, timeout, "condition")
    return time.monotonic() - started
