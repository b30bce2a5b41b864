"""Helpers for tests that run a real Procrastinate worker against the test database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from django.db import connection, connections
from procrastinate.contrib.django import app, procrastinate_app
from procrastinate.periodic import PeriodicRegistry

from fulfillment.queue import ADVANCE_ORDER_TASK, PIPELINE_QUEUE


def due_job_count(queues: Iterable[str] = (PIPELINE_QUEUE,)) -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' "
            "AND queue_name = ANY(%s) AND (scheduled_at IS NULL OR scheduled_at <= now())",
            [list(queues)],
        )
        return int(cur.fetchone()[0])


def _close_thread_connections(call_next: Any, context: Any, worker: Any) -> Any:
    """Close the worker thread's connections after each job, so none outlives the test."""
    try:
        return call_next()
    finally:
        connections.close_all()


def run_worker_until_idle(
    *, queues: Iterable[str] = (PIPELINE_QUEUE,), concurrency: int = 1, timeout: float = 30.0
) -> None:
    """Run a worker the way ``manage.py procrastinate worker`` does (the app's Django connector
    replaced by a psycopg connector) until no due job is left in ``queues``.

    The periodic deferrer is off here (an empty registry): a test defers the periodic jobs it
    wants itself, so whether a schedule happens to be due at the wall-clock time of the run
    (e.g. the hourly job in the first minutes of an hour) cannot add jobs to the test."""
    deadline = time.monotonic() + timeout
    real_app = procrastinate_app.current_app  # ``app`` is a proxy: swap on the real one
    registry, real_app.periodic_registry = real_app.periodic_registry, PeriodicRegistry()
    try:
        _drain(queues, concurrency, deadline)
    finally:
        real_app.periodic_registry = registry


def _drain(queues: Iterable[str], concurrency: int, deadline: float) -> None:
    with app.replace_connector(app.connector.get_worker_connector()):
        while due_job_count(queues):
            assert time.monotonic() < deadline, "worker did not drain the queue in time"
            app.run_worker(
                queues=list(queues),
                wait=False,
                concurrency=concurrency,
                install_signal_handlers=False,
                listen_notify=False,
                task_middleware=[_close_thread_connections],
            )


def jobs(task_name: str = ADVANCE_ORDER_TASK) -> list[dict]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT id, status::text, args, attempts FROM procrastinate_jobs "
            "WHERE task_name = %s ORDER BY id",
            [task_name],
        )
        return [
            {
                "id": r[0],
                "status": r[1],
                "args": json.loads(r[2]) if isinstance(r[2], str) else r[2],
                "attempts": r[3],
            }
            for r in cur.fetchall()
        ]
