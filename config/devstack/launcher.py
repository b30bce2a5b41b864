"""`make run`: the whole system in one terminal; Ctrl-C stops all of it.

Starts (or reuses) the embedded PostgreSQL and Redis unless DATABASE_URL / REDIS_URL point
elsewhere, migrates, loads demo data, makes sure a demo superuser and demo API keys exist, then
runs gunicorn and the Procrastinate worker pool (``config.worker_pool``: several worker processes
with the periodic schedules, a dead one restarted) and prints the URLs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from config.devstack.servers import ROOT, DevStack, external_or_embedded_env
from config.worker_pool import WORKER_COMMAND, WORKER_POOL_COMMAND

__all__ = ["WEB_COMMAND", "WEBHOOK_WORKER_COMMAND", "WORKER_COMMAND", "WORKER_POOL_COMMAND", "run"]

# The commands are shared with docker-compose.yml (a test checks they stay the same).
WEB_COMMAND = [
    "gunicorn",
    "config.wsgi:application",
    "--config",
    "python:config.gunicorn",
]
# The worker pool (``config.worker_pool``): WORKER_PROCESSES Procrastinate worker processes, each
# running WORKER_COMMAND (the pipeline, maintenance and probe queues), a dead one restarted.
# The ``webhooks`` queue (event dispatch, deliveries) has a worker of its own: a receiver that
# hangs until the timeout holds one of these slots, never one the pipeline needs.
WEBHOOK_WORKER_COMMAND = [
    "python",
    "manage.py",
    "procrastinate",
    "worker",
    "--queues=webhooks",
    "--concurrency=8",
    "--fetch-job-polling-interval=0.2",
    "--no-listen-notify",
    "--shutdown-graceful-timeout=10",
]


def _say(msg: str) -> None:
    print(f"[run] {msg}", flush=True)


def _venv_bin(cmd: list[str]) -> list[str]:
    """Run tools from the interpreter's own virtualenv."""
    bindir = Path(sys.executable).parent
    first = cmd[0]
    if first == "python":
        return [sys.executable, *cmd[1:]]
    if (bindir / first).exists():
        return [str(bindir / first), *cmd[1:]]
    return cmd


def _program(child: subprocess.Popen[bytes]) -> str:
    """The program a child runs (children are started from lists of str)."""
    args = child.args
    return str(args[0]) if isinstance(args, list) else str(args)


def _manage(env: dict[str, str], *args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.PIPE if capture else None,
        text=True,
    )
    return result.stdout or ""


def _fresh_dir(path: Path) -> str:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return str(path)


def _acquire_single_instance_lock(base: Path) -> TextIO:
    base.mkdir(parents=True, exist_ok=True)
    fh = open(base / "run.lock", "a+")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        owner = fh.read().strip() or "?"
        print(
            f"make run is already running (pid {owner}); stop it with Ctrl-C in its terminal.",
            file=sys.stderr,
        )
        sys.exit(1)
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def run(argv: list[str]) -> int:
    stack_dir = DevStack().base
    lock = _acquire_single_instance_lock(stack_dir)
    port = os.environ.get("PORT", "8000")
    host = os.environ.get("HOST", "127.0.0.1")
    urls, stack = external_or_embedded_env()
    env = {
        **os.environ,
        **urls,
        "DEBUG": os.environ.get("DEBUG", "1"),
        "ALLOW_ANONYMOUS_READS": os.environ.get("ALLOW_ANONYMOUS_READS", "1"),
        # Webhook receivers on this machine (127.0.0.1) for local development.
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": os.environ.get("WEBHOOK_ALLOW_PRIVATE_NETWORKS", "1"),
        "PORT": port,
        "BIND": f"{host}:{port}",
        "PYTHONUNBUFFERED": "1",
        # gunicorn's processes and the worker share their metric series here; /metrics serves
        # the sum. Emptied at every start: the series of the last run's processes are gone.
        "PROMETHEUS_MULTIPROC_DIR": _fresh_dir(stack_dir / "metrics"),
    }
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop_all(signum: int | None = None, frame: object = None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        _say("stopping...")
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # The whole session: the worker pool's processes with it.
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        _say("applying migrations")
        _manage(env, "migrate", "--noinput", "-v", "0")
        _manage(env, "collectstatic", "--noinput", "-v", "0")
        _say("loading demo data (idempotent)")
        _manage(env, "seed_demo_data", "--products", "50")
        print(_manage(env, "demo_credentials", capture=True), end="", flush=True)
        children.append(
            subprocess.Popen(_venv_bin(WEB_COMMAND), cwd=ROOT, env=env, start_new_session=True)
        )
        for command in (WORKER_POOL_COMMAND, WEBHOOK_WORKER_COMMAND):
            children.append(
                subprocess.Popen(_venv_bin(command), cwd=ROOT, env=env, start_new_session=True)
            )
        base = f"http://{host}:{port}"
        print(
            "\n".join(
                [
                    "",
                    "Order fulfillment system is up:",
                    f"  API docs    {base}/api/v1/docs",
                    f"  Admin       {base}/admin/",
                    f"  Health      {base}/health/",
                    f"  Metrics     {base}/metrics  (an admin API key, or METRICS_TOKEN)",
                    f"  API         {base}/api/v1/",
                    "  Locust      http://127.0.0.1:8089  (start it with `make locust` in another terminal)",
                    f"  PostgreSQL  {urls['DATABASE_URL']}",
                    f"  Redis       {urls['REDIS_URL']}",
                    "Press Ctrl-C to stop everything.",
                    "",
                ]
            ),
            flush=True,
        )
        while not stopping:
            for child in children:
                code = child.poll()
                if code is not None and not stopping:
                    _say(f"{_program(child)} exited with code {code}; shutting down")
                    stop_all()
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        stop_all()
        if stack is not None and stack.started:
            stack.stop(only_started=True)
        lock.close()
        _say("stopped")
