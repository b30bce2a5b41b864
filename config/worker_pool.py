"""The worker pool: ``python -m config.worker_pool`` runs ``WORKER_PROCESSES`` Procrastinate worker
processes (each ``WORKER_COMMAND``) and restarts one that dies. `make run` and the compose
``worker`` service run it.

Why several processes: a worker process runs its event loop (fetching, finishing, heartbeats)
and its job threads under one GIL, so one process tops out at about one core whatever its
``--concurrency``; two processes use both cores of a small machine. Jobs are fetched with
``FOR UPDATE SKIP LOCKED``, so processes never take the same job.

Supervision: a child that exits while the pool runs is logged and started again after a second;
if children die more than ``MAX_DEATHS`` times within ``DEATH_WINDOW_S`` (a crash loop: bad
configuration, database gone for good) the pool stops them all and exits 1, so the process
manager above it (``make run``, Docker's restart policy) sees the failure. SIGTERM or SIGINT
stops every child gracefully (Procrastinate finishes running jobs within its
``--shutdown-graceful-timeout``) and the pool exits 0. Jobs of a child killed outright are
retried by the ``retry_stalled_jobs`` schedule once its heartbeat is stale, as for any crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# One Procrastinate worker process: the pipeline, maintenance and probe queues (stage jobs and
# the periodic schedules; the webhooks queue has a worker of its own). Each process runs the
# periodic deferrer, and Procrastinate records every deferral of a schedule tick in
# ``procrastinate_periodic_defers``, unique per tick, so processes never queue it twice. Sync jobs
# run in threads, ``--concurrency`` at once, each with its own database connection; a process
# fetches again as soon as a job finishes and polls every ``--fetch-job-polling-interval`` when
# the queue had nothing due. No LISTEN/NOTIFY: Procrastinate notifies every listening worker when
# a job is inserted, not when it becomes due, and stage jobs are inserted seconds before they are
# due, so each notification only bought an empty fetch. Heartbeat and dead-worker timeouts come
# from settings (PROCRASTINATE_WORKER_DEFAULTS).
WORKER_COMMAND = [
    "python",
    "manage.py",
    "procrastinate",
    "worker",
    "--queues=pipeline,maintenance,probe",
    "--concurrency=4",
    "--fetch-job-polling-interval=0.2",
    "--no-listen-notify",
    "--shutdown-graceful-timeout=10",
]
# The pool of WORKER_PROCESSES such processes, supervised (what make run and compose run).
WORKER_POOL_COMMAND = ["python", "-m", "config.worker_pool"]

DEFAULT_PROCESSES = 2
MAX_DEATHS = 5
DEATH_WINDOW_S = 60.0
RESTART_DELAY_S = 1.0
STOP_TIMEOUT_S = 15.0


def _say(msg: str) -> None:
    print(f"[worker-pool] {msg}", file=sys.stderr, flush=True)


def worker_processes() -> int:
    raw = os.environ.get("WORKER_PROCESSES", str(DEFAULT_PROCESSES))
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise SystemExit(f"WORKER_PROCESSES must be a positive integer, not {raw!r}")
    return n


def _command(extra: list[str]) -> list[str]:
    return [sys.executable, *WORKER_COMMAND[1:], *extra]


class Pool:
    def __init__(self, processes: int, extra_args: list[str]) -> None:
        self.processes = processes
        self.extra_args = extra_args
        self.children: list[subprocess.Popen[bytes] | None] = [None] * processes
        self.deaths: deque[float] = deque()
        self.stopping = False

    def start(self, slot: int) -> None:
        self.children[slot] = subprocess.Popen(_command(self.extra_args), cwd=ROOT)

    def stop(self, signum: int | None = None, frame: object = None) -> None:
        self.stopping = True

    def _terminate_all(self) -> None:
        live = [c for c in self.children if c is not None and c.poll() is None]
        for child in live:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in live:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for slot in range(self.processes):
            self.start(slot)
        _say(f"{self.processes} worker process(es) started")
        try:
            while not self.stopping:
                for slot, child in enumerate(self.children):
                    if child is None or self.stopping:
                        continue
                    code = child.poll()
                    if code is None:
                        continue
                    now = time.monotonic()
                    self.deaths.append(now)
                    while self.deaths and now - self.deaths[0] > DEATH_WINDOW_S:
                        self.deaths.popleft()
                    if len(self.deaths) > MAX_DEATHS:
                        _say(
                            f"workers died {len(self.deaths)} times within {DEATH_WINDOW_S:.0f} s; "
                            "stopping"
                        )
                        return 1
                    _say(f"worker process {child.pid} exited with code {code}; restarting it")
                    time.sleep(RESTART_DELAY_S)
                    if not self.stopping:
                        self.start(slot)
                time.sleep(0.2)
            return 0
        finally:
            self._terminate_all()


def main(argv: list[str] | None = None) -> int:
    """Extra arguments are passed on to every worker process."""
    return Pool(worker_processes(), list(sys.argv[1:] if argv is None else argv)).run()


if __name__ == "__main__":
    raise SystemExit(main())
