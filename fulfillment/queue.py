"""The one adapter in front of Procrastinate: task names and queues, every enqueue, every read of
its tables. Nothing else in the application touches Procrastinate's SQL or tables.

Jobs are always written through Django's connection (``DjangoConnector``), never through the
app's connector: ``manage.py procrastinate worker`` swaps that one for its own psycopg pool, and a
stage job deferred there would commit outside the stage's transaction.

Public API used: ``JobManager.batch_defer_jobs`` (bulk intake, stale recovery, tests),
``JobManager.delete_old_jobs`` (retention clean-up) and the read-only Django models
``ProcrastinateWorker`` / ``ProcrastinateJob`` (health, clean-up count).

Internals still used, checked against Procrastinate 3.10.0 (``CHECKED_VERSION``; a test fails
when an upgrade changes them):

- ``procrastinate_defer_jobs_v1(procrastinate_job_to_defer_v1[])``, the SQL function behind
  ``batch_defer_jobs``, called inline by :func:`defer_job_sql` inside the single-order intake
  statement and the stage statement. Each is ONE statement on the hot path: going through the
  Python API would add a round trip (and a transaction) per order and per stage.
- Columns of ``procrastinate_jobs`` (``task_name``, ``status``, ``args``, ``queue_name``,
  ``scheduled_at``) and ``procrastinate_events`` (``job_id``, ``type``, ``at``), read by
  :func:`live_stage_job_order_pks` (one array parameter for up to a thousand orders, where the
  ORM's JSON ``__in`` lookup on the read-only model sends one parameter per order) and
  :func:`queue_depth` (five aggregates in one statement: the oldest waiting job's age needs the
  ``deferred`` event of jobs without ``scheduled_at``) and :func:`oldest_due_job_age` (the queue
  lag that backpressure reads).
- The worker's connector (:func:`worker_connector`, installed by :func:`on_app_ready` through
  ``PROCRASTINATE_ON_APP_READY``): ``DjangoConnector.get_worker_connector`` is replaced on the
  app's connector instance by one that builds the same ``PsycopgConnector`` (the Django
  database's ``connector_params``) with a ``pool_factory`` that swaps the ``check`` Procrastinate
  passes to the pool (``AsyncConnectionPool.check_connection``, one extra round trip on every
  checkout: two per job, for its fetch and its finish) for one that checks only a connection
  idle for more than :data:`POOL_CHECK_IDLE_SECONDS`.
- The partial index ``fulfillment_procrastinate_todo_due_idx`` on ``procrastinate_jobs
  (scheduled_at, id) WHERE status = 'todo'``, added by this project's migration ``0009``: it
  keeps the lag read bounded.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import F
from django.db.models.functions import Now
from procrastinate.contrib.django.django_connector import DjangoConnector
from procrastinate.contrib.django.models import ProcrastinateJob, ProcrastinateWorker
from procrastinate.contrib.django.utils import connector_params
from procrastinate.jobs import Job
from procrastinate.manager import JobManager
from procrastinate.psycopg_connector import PsycopgConnector
from psycopg_pool import AsyncConnectionPool

CHECKED_VERSION = "3.10.0"

# ----- queues and task names (the task decorators in ``fulfillment.tasks`` use these) ----------

PIPELINE_QUEUE = "pipeline"
MAINTENANCE_QUEUE = "maintenance"
PROBE_QUEUE = "probe"

ADVANCE_ORDER_TASK = "fulfillment.advance_order"
ADVANCE_ORDER_PRIORITY = 0
HEAL_STALE_ORDERS_TASK = "fulfillment.heal_stale_orders"
RETRY_STALLED_JOBS_TASK = "fulfillment.retry_stalled_jobs"
DAILY_REPORT_TASK = "fulfillment.daily_report"
RETENTION_CLEANUP_TASK = "fulfillment.retention_cleanup"
INVENTORY_RECONCILIATION_TASK = "fulfillment.inventory_reconciliation"
NOOP_TASK = "fulfillment.noop"

LIVE_STATUSES = ("todo", "doing")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled", "aborted")


# ----- the worker's connection pool ------------------------------------------------------------

# A pooled connection idle for longer than this is checked (one empty round trip) before it is
# handed out again: one the server closed meanwhile is replaced, as Procrastinate's default check
# does. A connection reused sooner, as under load, goes out unchecked.
POOL_CHECK_IDLE_SECONDS = 2.0
_returned_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


async def _check_if_idle(conn: Any) -> None:
    last = _returned_at.get(conn)
    if last is None or time.monotonic() - last > POOL_CHECK_IDLE_SECONDS:
        await AsyncConnectionPool.check_connection(conn)


async def _note_use(conn: Any) -> None:
    """On a new connection (``configure``) and on each return to the pool (``reset``)."""
    _returned_at[conn] = time.monotonic()


def _worker_pool_factory(**kwargs: Any) -> AsyncConnectionPool:
    assert "configure" not in kwargs and "reset" not in kwargs, "the pool's own callbacks"
    return AsyncConnectionPool(
        **{**kwargs, "check": _check_if_idle, "configure": _note_use, "reset": _note_use}
    )


def worker_connector() -> PsycopgConnector:
    """What ``manage.py procrastinate worker`` runs on: Procrastinate's psycopg connector for the
    Django database, with a pool that checks only connections that sat idle."""
    return PsycopgConnector(
        kwargs=connector_params(
            getattr(settings, "PROCRASTINATE_DATABASE_ALIAS", DEFAULT_DB_ALIAS)
        ),
        pool_factory=_worker_pool_factory,
    )


def on_app_ready(app: Any) -> None:
    """``PROCRASTINATE_ON_APP_READY``: the worker gets :func:`worker_connector`."""
    app.connector.get_worker_connector = worker_connector


# ----- enqueue ----------------------------------------------------------------------------------


def defer_job_sql(
    *,
    args: str,
    scheduled_at: str,
    queue: str = "%(job_queue)s",
    task: str = "%(job_task)s",
    priority: str = "%(job_priority)s",
    lock: str = "NULL",
    queueing_lock: str = "NULL",
) -> str:
    """The SQL call that defers one job, to embed in a larger statement: it returns the new job
    ids as ``bigint[]``. Each argument is an SQL expression (a placeholder, a column, a literal);
    by default the queue, task and priority are the placeholders of :func:`stage_job_params`."""
    return (
        "procrastinate_defer_jobs_v1(ARRAY[ROW(\n"
        f"        {queue}, {task}, {priority}, {lock}, {queueing_lock},\n"
        f"        {args},\n"
        f"        {scheduled_at}\n"
        "    )::procrastinate_job_to_defer_v1])"
    )


def stage_job_params() -> dict[str, Any]:
    """The values of the stage job's placeholders in :func:`defer_job_sql`."""
    return {
        "job_queue": PIPELINE_QUEUE,
        "job_task": ADVANCE_ORDER_TASK,
        "job_priority": ADVANCE_ORDER_PRIORITY,
    }


@dataclass(frozen=True)
class StageJob:
    """One stage job to defer: the order, the status the job expects, when it may run."""

    order_pk: int
    expected_status: str
    scheduled_at: datetime | None = None


@cache
def job_manager() -> JobManager:
    """Procrastinate's job manager on Django's connection (the caller's transaction)."""
    return JobManager(connector=DjangoConnector())


def defer_stage_jobs(jobs: Sequence[StageJob]) -> list[int]:
    """Defer stage jobs in the caller's transaction, one statement for all; their ids."""
    if not jobs:
        return []
    deferred = job_manager().batch_defer_jobs(
        [
            Job(
                id=None,
                queue=PIPELINE_QUEUE,
                priority=ADVANCE_ORDER_PRIORITY,
                lock=None,
                queueing_lock=None,
                task_name=ADVANCE_ORDER_TASK,
                task_kwargs={"order_pk": j.order_pk, "expected_status": j.expected_status},
                scheduled_at=j.scheduled_at,
            )
            for j in jobs
        ]
    )
    return [job.id for job in deferred if job.id is not None]


# ----- reads ------------------------------------------------------------------------------------

_LIVE_STAGE_JOBS_SQL = """
SELECT DISTINCT (args->>'order_pk')::bigint FROM procrastinate_jobs
WHERE task_name = %s AND status IN ('todo', 'doing')
  AND (args->>'order_pk')::bigint = ANY(%s::bigint[])
"""


def live_stage_job_order_pks(order_pks: Sequence[int]) -> set[int]:
    """The orders among ``order_pks`` that have a live (``todo`` or ``doing``) stage job."""
    if not order_pks:
        return set()
    with connection.cursor() as cur:
        cur.execute(_LIVE_STAGE_JOBS_SQL, [ADVANCE_ORDER_TASK, list(order_pks)])
        return {row[0] for row in cur.fetchall()}


def worker_heartbeats(*, limit: int = 50) -> list[tuple[int, float]]:
    """``(worker id, seconds since its last heartbeat)``, freshest first (database clock)."""
    rows = (
        ProcrastinateWorker.objects.using(DEFAULT_DB_ALIAS)
        .annotate(age=Now() - F("last_heartbeat"))
        .order_by("-last_heartbeat")
        .values_list("id", "age")[:limit]
    )
    return [(pk, age.total_seconds()) for pk, age in rows]


_QUEUE_DEPTH_SQL = """
WITH waiting AS (
    SELECT j.id, COALESCE(j.scheduled_at,
        (SELECT min(e.at) FROM procrastinate_events e
         WHERE e.job_id = j.id AND e.type = 'deferred')) AS due_at
    FROM procrastinate_jobs j
    WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
)
SELECT (SELECT count(*) FROM waiting),
       (SELECT EXTRACT(EPOCH FROM now() - min(due_at))::float FROM waiting),
       (SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'
          AND scheduled_at > now()),
       (SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'),
       (SELECT count(*) FROM procrastinate_events
          WHERE type = 'failed' AND at > now() - interval '1 hour')
"""


def queue_depth() -> dict[str, Any]:
    """Jobs due and waiting, the age of the oldest (seconds), jobs scheduled later, jobs
    running, jobs failed in the last hour: one statement."""
    with connection.cursor() as cur:
        cur.execute(_QUEUE_DEPTH_SQL)
        waiting, oldest, scheduled, running, failed = cur.fetchone()
    return {
        "waiting": waiting,
        "oldest_waiting_s": oldest,
        "scheduled": scheduled,
        "running": running,
        "failed_last_hour": failed,
    }


# Bounded: two single-row reads of the ``(scheduled_at, id) WHERE status = 'todo'`` index
# (migration ``0009``) and one of the events' ``job_id`` index, however long the queue is.
_OLDEST_DUE_SQL = """
SELECT EXTRACT(EPOCH FROM now() - LEAST(
    (SELECT scheduled_at FROM procrastinate_jobs
     WHERE status = 'todo' AND scheduled_at IS NOT NULL
     ORDER BY scheduled_at, id LIMIT 1),
    (SELECT min(e.at) FROM procrastinate_events e
     WHERE e.type = 'deferred' AND e.job_id = (
        SELECT id FROM procrastinate_jobs
        WHERE status = 'todo' AND scheduled_at IS NULL
        ORDER BY scheduled_at, id LIMIT 1))
))::float
"""


def oldest_due_job_age() -> float:
    """Seconds the oldest due ``todo`` job has waited past its time (0 when none is due): the
    queue lag. A job without ``scheduled_at`` is due from its ``deferred`` event."""
    with connection.cursor() as cur:
        cur.execute(_OLDEST_DUE_SQL)
        row = cur.fetchone()
    age = row[0] if row else None
    return max(float(age), 0.0) if age is not None else 0.0


def finished_job_count() -> int:
    return (
        ProcrastinateJob.objects.using(DEFAULT_DB_ALIAS).exclude(status__in=LIVE_STATUSES).count()
    )


def delete_finished_jobs(*, older_than_hours: int) -> int:
    """Delete the jobs finished (succeeded, failed, cancelled, aborted) more than
    ``older_than_hours`` ago; live jobs are never touched. Returns how many went."""
    before = finished_job_count()
    async_to_sync(job_manager().delete_old_jobs)(
        nb_hours=older_than_hours,
        queue=None,
        include_failed=True,
        include_cancelled=True,
        include_aborted=True,
    )
    return before - finished_job_count()
