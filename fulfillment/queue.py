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
  statement and the stage statement (and fed a whole query's rows by
  :func:`defer_stage_jobs_from_query` for bulk loads). Each is ONE statement on the hot path:
  going through the Python API would add a round trip (and a transaction) per order and stage.
- Columns of ``procrastinate_jobs`` (``task_name``, ``status``, ``args``, ``queue_name``,
  ``scheduled_at``) and ``procrastinate_events`` (``job_id``, ``type``, ``at``), read by
  :func:`live_stage_job_order_pks` (one array parameter for up to a thousand orders, where the
  ORM's JSON ``__in`` lookup on the read-only model sends one parameter per order) and
  :func:`queue_depth` (bounded counts and samples in one statement: the oldest waiting job's age
  needs the ``deferred`` event of jobs without ``scheduled_at``), :func:`queue_depth_by_queue`
  and :func:`recent_stage_lags` (the operations page: also the ``started`` events),
  :func:`waiting_by_queue` (bounded counts per queue for the metrics, on the partial index
  ``procrastinate_jobs_priority_idx_v1``) and :func:`oldest_due_job_age` (the queue lag that
  backpressure reads).
- Columns ``lock`` and ``queueing_lock`` of ``procrastinate_jobs``, read by
  :func:`defer_delivery_jobs` to skip endpoints whose delivery job is already waiting or running
  (the partial unique indexes on them make it two index probes).
- The worker's connector (:func:`worker_connector`, installed by :func:`on_app_ready` through
  ``PROCRASTINATE_ON_APP_READY``): ``DjangoConnector.get_worker_connector`` is replaced on the
  app's connector instance by one that builds the same ``PsycopgConnector`` (the Django
  database's ``connector_params``) with a ``pool_factory`` that swaps the ``check`` Procrastinate
  passes to the pool (``AsyncConnectionPool.check_connection``, one extra round trip on every
  checkout: two per job, for its fetch and its finish) for one that checks only a connection
  idle for more than :data:`POOL_CHECK_IDLE_SECONDS`.
- The partial index ``fulfillment_procrastinate_todo_due_idx`` on ``procrastinate_jobs
  (scheduled_at, id) WHERE status = 'todo'``, added by this project's migration ``0012``: it
  keeps the lag read bounded.
"""

from __future__ import annotations

import json
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
# Webhook deliveries and their dispatcher: a queue of its own, so a slow receiver never holds a
# worker slot the pipeline needs (``make run`` and Compose run a separate worker for it).
WEBHOOKS_QUEUE = "webhooks"

ADVANCE_ORDER_TASK = "fulfillment.advance_order"
ADVANCE_ORDER_PRIORITY = 0
HEAL_STALE_ORDERS_TASK = "fulfillment.heal_stale_orders"
RETRY_STALLED_JOBS_TASK = "fulfillment.retry_stalled_jobs"
DAILY_REPORT_TASK = "fulfillment.daily_report"
RETENTION_CLEANUP_TASK = "fulfillment.retention_cleanup"
INVENTORY_RECONCILIATION_TASK = "fulfillment.inventory_reconciliation"
STATISTICS_REFRESH_TASK = "fulfillment.statistics_refresh"
NOOP_TASK = "fulfillment.noop"
ANALYTICS_REFRESH_TASK = "fulfillment.analytics_refresh"
DISPATCH_EVENTS_TASK = "fulfillment.dispatch_events"
DELIVER_WEBHOOKS_TASK = "fulfillment.deliver_webhooks"

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


def defer_stage_jobs_from_query(select_sql: str, params: dict[str, Any] | None = None) -> int:
    """Defer one stage job per row of ``select_sql`` (columns ``order_pk``, ``expected_status``,
    ``scheduled_at``) in the caller's transaction, in ONE statement; how many were deferred.

    For bulk loads (``seed_volume``): the rows never travel to Python. Same SQL function as
    :func:`defer_job_sql`, fed with an aggregated array.
    """
    sql = f"""
    SELECT count(*) FROM unnest((
        SELECT procrastinate_defer_jobs_v1(array_agg(ROW(
            %(job_queue)s, %(job_task)s, %(job_priority)s, NULL, NULL,
            jsonb_build_object('order_pk', s.order_pk, 'expected_status', s.expected_status),
            s.scheduled_at
        )::procrastinate_job_to_defer_v1))
        FROM ({select_sql}) s
        HAVING count(*) > 0
    ))
    """
    with connection.cursor() as cur:
        cur.execute(sql, {**stage_job_params(), **(params or {})})
        return int(cur.fetchone()[0])


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


# Every figure reads a bounded number of rows, whatever the backlog: the counts stop at
# QUEUE_COUNT_CAP (then the planner's row estimate stands in), the oldest waiting job is looked
# for among the QUEUE_SAMPLE lowest ids still waiting (the ``status IN ('todo', 'doing')`` partial
# index on id), and failures are counted among the QUEUE_SAMPLE newest events.
QUEUE_COUNT_CAP = 10_000
QUEUE_SAMPLE = 1_000

_QUEUE_DEPTH_SQL = """
WITH first_waiting AS (
    SELECT j.id, j.status, j.scheduled_at FROM procrastinate_jobs j
    WHERE j.status IN ('todo', 'doing')
    ORDER BY j.id
    LIMIT %(sample)s
), newest_events AS (
    SELECT type, at FROM procrastinate_events ORDER BY id DESC LIMIT %(sample)s
)
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM procrastinate_jobs
        WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())
        LIMIT %(cap)s) w),
    (SELECT EXTRACT(EPOCH FROM now() - min(COALESCE(f.scheduled_at,
        (SELECT min(e.at) FROM procrastinate_events e
         WHERE e.job_id = f.id AND e.type = 'deferred'))))::float
     FROM first_waiting f
     WHERE f.status = 'todo' AND (f.scheduled_at IS NULL OR f.scheduled_at <= now())),
    (SELECT count(*) FROM (SELECT 1 FROM procrastinate_jobs
        WHERE status = 'todo' AND scheduled_at > now() LIMIT %(cap)s) s),
    (SELECT count(*) FROM (SELECT 1 FROM procrastinate_jobs
        WHERE status = 'doing' LIMIT %(cap)s) r),
    (SELECT count(*) FILTER (WHERE type = 'failed' AND at > now() - interval '1 hour')
     FROM newest_events),
    (SELECT count(*) = %(sample)s AND min(at) > now() - interval '1 hour' FROM newest_events)
"""

_ESTIMATE_SQL = {
    "waiting": "SELECT 1 FROM procrastinate_jobs WHERE status = 'todo' "
    "AND (scheduled_at IS NULL OR scheduled_at <= now())",
    "scheduled": "SELECT 1 FROM procrastinate_jobs WHERE status = 'todo' AND scheduled_at > now()",
    "running": "SELECT 1 FROM procrastinate_jobs WHERE status = 'doing'",
}


def _row_estimate(cur: Any, sql: str) -> int:
    """The planner's row estimate for ``sql`` (no rows read)."""
    cur.execute("EXPLAIN (FORMAT JSON) " + sql)
    plan = cur.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def queue_depth() -> dict[str, Any]:
    """Jobs due and waiting, the age of the oldest (seconds), jobs scheduled later, jobs
    running, jobs failed in the last hour. Bounded cost at any backlog; ``estimated`` names the
    figures that are estimates (a count past ``QUEUE_COUNT_CAP`` is the planner's estimate, at
    least the cap; the oldest age is that of the oldest of the first ``QUEUE_SAMPLE`` waiting
    jobs; failures are counted among the ``QUEUE_SAMPLE`` newest events)."""
    with connection.cursor() as cur:
        cur.execute(_QUEUE_DEPTH_SQL, {"cap": QUEUE_COUNT_CAP, "sample": QUEUE_SAMPLE})
        waiting, oldest, scheduled, running, failed, failed_truncated = cur.fetchone()
        counts = {"waiting": waiting, "scheduled": scheduled, "running": running}
        estimated = [name for name, n in counts.items() if n >= QUEUE_COUNT_CAP]
        for name in estimated:
            counts[name] = max(_row_estimate(cur, _ESTIMATE_SQL[name]), QUEUE_COUNT_CAP)
    if waiting >= QUEUE_SAMPLE:
        estimated.append("oldest_waiting")
    if failed_truncated:
        estimated.append("failed_last_hour")
    return {
        **counts,
        "oldest_waiting_s": oldest,
        "failed_last_hour": failed,
        "estimated": estimated,
    }


# One SELECT per queue (joined by UNION ALL), each with the queue name as its own parameter:
# the planner then sees the value and picks, per queue, the index on ``queue_name`` (a rare
# queue) or the partial index of waiting jobs (a queue with a million of them). One plan for
# all queues (a join on a list of names) scans a million index entries for an empty queue.
_WAITING_ONE_QUEUE_SQL = """
SELECT %s::text,
    (SELECT count(*) FROM (
        SELECT 1 FROM procrastinate_jobs j
        WHERE j.status = 'todo' AND j.queue_name = %s
          AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
        ORDER BY j.priority DESC, j.id LIMIT %s) capped),
    (SELECT EXTRACT(EPOCH FROM now() - COALESCE(head.scheduled_at,
        (SELECT min(e.at) FROM procrastinate_events e
         WHERE e.job_id = head.id AND e.type = 'deferred')))::float
     FROM (SELECT j.id, j.scheduled_at FROM procrastinate_jobs j
           WHERE j.status = 'todo' AND j.queue_name = %s
             AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
           ORDER BY j.priority DESC, j.id LIMIT 1) head)
"""
_WAITING_ESTIMATE_SQL = """
EXPLAIN (FORMAT JSON) SELECT 1 FROM procrastinate_jobs
WHERE status = 'todo' AND queue_name = %s AND (scheduled_at IS NULL OR scheduled_at <= now())
"""


@dataclass(frozen=True)
class QueueWaiting:
    """Jobs of one queue that are due and waiting, and the wait of the one at its head."""

    queue: str
    waiting: int
    exact: bool  # False: more than the cap, ``waiting`` is the planner's estimate
    head_wait_s: float  # 0 when nothing waits


def waiting_by_queue(queues: Sequence[str], *, cap: int) -> list[QueueWaiting]:
    """Per queue: the due ``todo`` jobs, counted exactly up to ``cap`` and estimated by the
    planner beyond (so the cost stays bounded with a million waiting jobs), and how long the
    job at the head of the queue (the next a worker takes: highest priority, then oldest) has
    been due. Reads at most ``cap`` waiting jobs per queue (in the order of the partial index
    on waiting jobs by priority and id, or through the index on ``queue_name`` for a small
    queue)."""
    with connection.cursor() as cur:
        sql = " UNION ALL ".join(f"({_WAITING_ONE_QUEUE_SQL})" for _ in queues)
        cur.execute(sql, [p for name in queues for p in (name, name, cap, name)])
        rows = cur.fetchall()
        out = []
        for name, count, head_wait in rows:
            exact = count < cap
            if not exact:
                count = _planner_rows(cur, _WAITING_ESTIMATE_SQL, [name], at_least=cap)
            out.append(QueueWaiting(name, int(count), exact, max(head_wait or 0.0, 0.0)))
    return out


def _planner_rows(cur: Any, sql: str, params: Sequence[Any], *, at_least: int) -> int:
    cur.execute(sql, params)
    plan = cur.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return max(int(plan[0]["Plan"]["Plan Rows"]), at_least)


# Bounded: two single-row reads of the ``(scheduled_at, id) WHERE status = 'todo'`` index
# (migration ``0012``) and one of the events' ``job_id`` index, however long the queue is.
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


# ----- reads for the operations page --------------------------------------------------------------

_QUEUE_DEPTH_BY_QUEUE_SQL = """
SELECT q.queue_name, q.waiting,
       EXTRACT(EPOCH FROM now() - LEAST(q.oldest_scheduled,
           (SELECT e.at FROM procrastinate_events e
            WHERE e.job_id = q.first_unscheduled AND e.type = 'deferred'
            ORDER BY e.id LIMIT 1)))::float
FROM (
    SELECT queue_name, count(*) AS waiting, min(scheduled_at) AS oldest_scheduled,
           min(id) FILTER (WHERE scheduled_at IS NULL) AS first_unscheduled
    FROM procrastinate_jobs
    WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())
    GROUP BY queue_name
) AS q
ORDER BY q.queue_name
"""


def queue_depth_by_queue() -> list[dict[str, Any]]:
    """Per queue with due jobs: how many wait, and the age (seconds) of the oldest. A job
    without ``scheduled_at`` is due since its ``deferred`` event; ids grow with deferral time,
    so the oldest of those is the one with the smallest id (one event lookup per queue)."""
    with connection.cursor() as cur:
        cur.execute(_QUEUE_DEPTH_BY_QUEUE_SQL)
        return [
            {"queue": name, "waiting": waiting, "oldest_waiting_s": oldest}
            for name, waiting, oldest in cur.fetchall()
        ]


_RECENT_STAGE_LAGS_SQL = """
SELECT EXTRACT(EPOCH FROM s.at - COALESCE(j.scheduled_at, d.at))::float
FROM (
    SELECT job_id, at FROM procrastinate_events
    WHERE type = 'started' AND at > now() - interval '1 hour'
    ORDER BY id DESC LIMIT %(limit)s
) AS s
JOIN procrastinate_jobs j ON j.id = s.job_id AND j.task_name = %(task)s
LEFT JOIN LATERAL (
    SELECT e.at FROM procrastinate_events e
    WHERE e.job_id = j.id AND e.type = 'deferred' ORDER BY e.id LIMIT 1
) AS d ON true
"""


def recent_stage_lags(*, limit: int = 500) -> list[float]:
    """The lag (seconds from due to started) of up to ``limit`` of the latest stage-job starts
    in the last hour: ``scheduled_at``, or the ``deferred`` event without one."""
    with connection.cursor() as cur:
        cur.execute(_RECENT_STAGE_LAGS_SQL, {"limit": limit, "task": ADVANCE_ORDER_TASK})
        return [max(0.0, row[0]) for row in cur.fetchall() if row[0] is not None]


# ----- webhook delivery jobs --------------------------------------------------------------------


def webhook_job_lock(endpoint_id: int) -> str:
    """The lock and queueing lock of an endpoint's delivery job: one waiting, one running."""
    return f"webhook-endpoint-{endpoint_id}"


_LIVE_DELIVERY_JOBS_SQL = """
SELECT coalesce(lock, queueing_lock) FROM procrastinate_jobs
WHERE (status = 'todo' AND queueing_lock = ANY(%(locks)s::text[]))
   OR (status = 'doing' AND lock = ANY(%(locks)s::text[]))
"""


def defer_delivery_jobs(endpoint_ids: Sequence[int]) -> list[int]:
    """Defer the delivery job of each endpoint that has no live (waiting or running) one, in the
    caller's transaction, one statement for all; the endpoints deferred for. An endpoint whose
    job is running gets none: that job delivers until nothing is left, and the next dispatch
    defers again for whatever arrived after its last look."""
    if not endpoint_ids:
        return []
    locks = {webhook_job_lock(pk): pk for pk in endpoint_ids}
    with connection.cursor() as cur:
        cur.execute(_LIVE_DELIVERY_JOBS_SQL, {"locks": list(locks)})
        live = {row[0] for row in cur.fetchall()}
    todo = [pk for lock, pk in locks.items() if lock not in live]
    if todo:
        job_manager().batch_defer_jobs(
            [
                Job(
                    id=None,
                    queue=WEBHOOKS_QUEUE,
                    priority=0,
                    lock=webhook_job_lock(pk),
                    queueing_lock=webhook_job_lock(pk),
                    task_name=DELIVER_WEBHOOKS_TASK,
                    task_kwargs={"endpoint_id": pk},
                    scheduled_at=None,
                )
                for pk in todo
            ]
        )
    return todo
