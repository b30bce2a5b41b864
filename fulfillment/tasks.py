"""Procrastinate tasks and periodic schedules. Tasks are thin: load ids, call one service.

Task names and queues are defined in ``fulfillment.queue``: ``pipeline`` (stage jobs),
``maintenance`` (schedules), ``webhooks`` (event dispatch and webhook deliveries) and ``probe``. Every sync task runs inside
:func:`job_scope`: fresh Django connections and a pghistory context carrying the task name and
the job id, so every audit event a job writes says which job wrote it.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

import pghistory
import procrastinate
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from procrastinate import RetryStrategy
from procrastinate.contrib.django import app
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy, RetryDecision

from fulfillment import metrics, queue
from fulfillment.logs import job_log
from fulfillment.selectors.orders import order_statistics_refresh
from fulfillment.services import analytics, reports, stages, stale, webhooks

logger = logging.getLogger("fulfillment.tasks")

# Errors worth retrying: deadlock, serialization failure, lock timeout, lost connection. Django
# raises OperationalError for all of them (psycopg's TransactionRollbackError, LockNotAvailable,
# OperationalError); InterfaceError for a closed connection.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


class TransientDatabaseRetry(BaseRetryStrategy):
    """Procrastinate's ``RetryStrategy`` (exponential backoff, transient errors only), with the
    limits read from settings when a job fails rather than at import time."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        return RetryStrategy(
            max_attempts=settings.PIPELINE_MAX_RETRIES,
            exponential_wait=settings.PIPELINE_RETRY_BACKOFF_SECONDS,
            retry_exceptions=TRANSIENT_ERRORS,
        ).get_retry_decision(exception=exception, job=job)


def retries_exhausted(job: Job) -> bool:
    """True on the last run Procrastinate will make of ``job`` (``attempts`` counts past runs)."""
    return job.attempts >= settings.PIPELINE_MAX_RETRIES


def job_scope(call_next: Any, context: procrastinate.JobContext, worker: Any) -> Any:
    """Sync task middleware: the audit context and the log line of the job, its metrics (a
    stage job's lag behind its scheduled time, every job's duration), and connection hygiene.

    A worker thread keeps its Django connection between jobs (no health-check query per job); a
    job that raised closes it, so a connection broken by a database restart is replaced on the
    next attempt.
    """
    job = context.job
    if job.task_name == queue.ADVANCE_ORDER_TASK:
        metrics.stage_lag_since(job.scheduled_at)
    started = time.perf_counter()
    outcome = "failed"
    try:
        with (
            pghistory.context(task=job.task_name, job_id=job.id),
            # One JSON log line per job run (fulfillment.logs): task, job id, order, outcome.
            job_log(
                task=job.task_name,
                job_id=job.id,
                order_id=job.task_kwargs.get("order_pk"),
                attempt=job.attempts + 1,
            ) as line,
        ):
            result = call_next()
            line["outcome"] = result if isinstance(result, str) and result else "succeeded"
            outcome = "succeeded"
            return result
    except BaseException:
        connection.close()
        raise
    finally:
        metrics.job_finished(job.task_name, outcome, time.perf_counter() - started)


def _actor(context: procrastinate.JobContext) -> str:
    return f"job:{context.job.task_name}:{context.job.id}"


@app.task(
    name=queue.ADVANCE_ORDER_TASK,
    queue=queue.PIPELINE_QUEUE,
    priority=queue.ADVANCE_ORDER_PRIORITY,
    pass_context=True,
    retry=TransientDatabaseRetry(),
    task_middleware=[job_scope],
)
def advance_order(context: procrastinate.JobContext, order_pk: int, expected_status: str) -> str:
    """Run the next stage of one order (``services.stages.order_advance``)."""
    try:
        outcome = stages.order_advance(
            order_pk=order_pk, expected_status=expected_status, actor=_actor(context)
        )
    except TRANSIENT_ERRORS as exc:
        if retries_exhausted(context.job):
            stages.order_fail_after_retries(
                order_pk=order_pk,
                expected_status=expected_status,
                actor=_actor(context),
                error=f"{exc.__class__.__name__}: {exc}".strip()[:150],
            )
        raise
    return outcome.action


def maintenance_job(*, name: str, cron: str, periodic_id: str) -> Callable[[Any], Any]:
    """A periodic job on the ``maintenance`` queue: at most one waiting at a time (queueing lock
    on its name), run inside the job scope (audit context and job log line)."""

    def decorate(func: Any) -> Any:
        task = app.task(
            name=name,
            queue=queue.MAINTENANCE_QUEUE,
            queueing_lock=name.removeprefix("fulfillment."),
            pass_context=True,
            task_middleware=[job_scope],
        )(func)
        return app.periodic(cron=cron, periodic_id=periodic_id)(task)

    return decorate


@maintenance_job(
    name=queue.HEAL_STALE_ORDERS_TASK, cron=settings.STALE_CHECK_CRON, periodic_id="stale_orders"
)
def heal_stale_orders(context: procrastinate.JobContext, timestamp: int) -> dict[str, int]:
    result = stale.stale_orders_heal(actor=_actor(context))
    return {
        "checked": result.checked,
        "redeferred": len(result.redeferred),
        "failed": len(result.failed),
    }


# Async, on the worker's own connection, and with a queueing lock but no ``lock``: a job lock
# held by a job of a dead worker would block the very job that is meant to free it.
@app.periodic(cron=settings.STALLED_JOBS_CRON, periodic_id="stalled_jobs")
@app.task(
    name=queue.RETRY_STALLED_JOBS_TASK,
    queue=queue.MAINTENANCE_QUEUE,
    queueing_lock="retry_stalled_jobs",
    pass_context=True,
)
async def retry_stalled_jobs(context: procrastinate.JobContext, timestamp: int) -> int:
    """Put back to ``todo`` the jobs left in ``doing`` by workers that stopped heartbeating."""
    manager = context.app.job_manager
    stalled = await manager.get_stalled_jobs(
        seconds_since_heartbeat=settings.STALLED_WORKER_SECONDS
    )
    for job in stalled:
        logger.warning("retrying job %s of a dead worker: %s", job.id, job.call_string)
        await manager.retry_job(job)
    await manager.prune_stalled_workers(settings.STALLED_WORKER_SECONDS)
    return len(list(stalled))


@maintenance_job(
    name=queue.DAILY_REPORT_TASK, cron=settings.DAILY_REPORT_CRON, periodic_id="daily_report"
)
def daily_report(context: procrastinate.JobContext, timestamp: int) -> str:
    """At midnight, report on the day that just ended."""
    tz = datetime.UTC
    day = datetime.datetime.fromtimestamp(timestamp, tz=tz).date() - datetime.timedelta(days=1)
    return str(reports.daily_report_build(day=day).date)


@maintenance_job(
    name=queue.RETENTION_CLEANUP_TASK, cron=settings.CLEANUP_CRON, periodic_id="weekly_cleanup"
)
def retention_cleanup(context: procrastinate.JobContext, timestamp: int) -> dict[str, int]:
    result = reports.retention_cleanup()
    return {
        "audit_events_deleted": result.audit_events_deleted,
        "jobs_deleted": result.jobs_deleted,
        "idempotency_records_deleted": result.idempotency_records_deleted,
        "outbox_events_deleted": result.outbox_events_deleted,
        "webhook_deliveries_deleted": result.webhook_deliveries_deleted,
    }


@maintenance_job(
    name=queue.INVENTORY_RECONCILIATION_TASK,
    cron=settings.RECONCILIATION_CRON,
    periodic_id="hourly_reconciliation",
)
def inventory_reconciliation(context: procrastinate.JobContext, timestamp: int) -> bool:
    return reports.reconciliation_run().ok


@maintenance_job(
    name=queue.ANALYTICS_REFRESH_TASK,
    cron=settings.ANALYTICS_REFRESH_CRON,
    periodic_id="analytics_refresh",
)
def analytics_refresh(context: procrastinate.JobContext, timestamp: int) -> dict[str, int]:
    """Bring the analytics rollups up to date (``services.analytics``)."""
    result = analytics.analytics_rollups_refresh()
    return {"hours": result.hours, "days": result.days, "movement_days": result.movement_days}


# ----- events out: the dispatcher and the deliveries (services.webhooks) -------------------------


# One waiting (queueing lock) and one running (lock) at a time: dispatches never overlap.
@app.periodic(cron=settings.WEBHOOK_DISPATCH_CRON, periodic_id="dispatch_events")
@app.task(
    name=queue.DISPATCH_EVENTS_TASK,
    queue=queue.WEBHOOKS_QUEUE,
    lock="dispatch_events",
    queueing_lock="dispatch_events",
    pass_context=True,
    task_middleware=[job_scope],
)
def dispatch_events(context: procrastinate.JobContext, timestamp: int = 0) -> dict[str, int]:
    """New events -> webhook deliveries -> one delivery job per endpoint with work."""
    result = webhooks.events_dispatch()
    return {"events": result.events, "deliveries": result.deliveries, "jobs": result.jobs}


# One job per endpoint at a time (lock), so an endpoint gets its events in order and a hanging
# receiver holds one worker slot of the webhooks queue, never a pipeline one. A job killed
# mid-request leaves its deliveries pending: retried, they are sent again (at least once).
@app.task(
    name=queue.DELIVER_WEBHOOKS_TASK,
    queue=queue.WEBHOOKS_QUEUE,
    pass_context=True,
    task_middleware=[job_scope],
)
def deliver_webhooks(context: procrastinate.JobContext, endpoint_id: int) -> int:
    """Send an endpoint's pending deliveries (``services.webhooks.endpoint_deliver``)."""
    return webhooks.endpoint_deliver(endpoint_id=endpoint_id)


@maintenance_job(
    name=queue.STATISTICS_REFRESH_TASK,
    cron=settings.STATISTICS_REFRESH_CRON,
    periodic_id="statistics_refresh",
)
def statistics_refresh(context: procrastinate.JobContext, timestamp: int) -> int:
    """Every minute: the order statistics snapshot that ``/orders/statistics/`` serves."""
    return int(order_statistics_refresh()["total_orders"])


@app.task(name=queue.NOOP_TASK, queue=queue.PROBE_QUEUE)
def noop() -> None:
    """Does nothing: the queue's own throughput, the reference the pipeline benchmark reports
    next to (``loadtests/bench_pipeline.py``), and a probe that a worker is taking jobs."""


__all__ = [
    "advance_order",
    "analytics_refresh",
    "app",
    "daily_report",
    "deliver_webhooks",
    "dispatch_events",
    "heal_stale_orders",
    "inventory_reconciliation",
    "noop",
    "retention_cleanup",
    "retry_stalled_jobs",
    "statistics_refresh",
]
