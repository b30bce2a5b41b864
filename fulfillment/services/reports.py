"""Scheduled bookkeeping: the daily report, the reconciliation record, the weekly clean-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pghistory.models
from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Sum
from django.utils import timezone

from fulfillment import lifecycle, queue
from fulfillment.lifecycle import OrderStatus
from fulfillment.models import DailyReport, Order, ReconciliationRun
from fulfillment.services import idempotency, webhooks
from fulfillment.services.reconciliation import inventory_reconcile

logger = logging.getLogger("fulfillment.reports")


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    tz = timezone.get_default_timezone()
    start = datetime.combine(day, time.min, tzinfo=tz)
    return start, start + timedelta(days=1)


def _avg_seconds(qs: Any, end: str, start: str) -> float | None:
    value = qs.filter(**{f"{end}__isnull": False}).aggregate(
        v=Avg(ExpressionWrapper(F(end) - F(start), output_field=DurationField()))
    )["v"]
    return None if value is None else round(value.total_seconds(), 3)


@transaction.atomic
def daily_report_build(*, day: date) -> DailyReport:
    """Build (or rebuild) the report of the orders created on ``day`` (settings.TIME_ZONE).

    Counts by current status, revenue (total of the orders not cancelled or failed) and the
    average time from intake to processing, to shipping and to delivery. Idempotent: one row per
    day, replaced on re-run (``update_or_create`` under the unique ``date``).
    """
    start, end = _day_bounds(day)
    orders = Order.objects.filter(created_at__gte=start, created_at__lt=end)
    counts = {s: 0 for s in OrderStatus.values}
    for row in orders.values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    revenue = orders.exclude(status__in=lifecycle.UNSUCCESSFUL).aggregate(v=Sum("total_amount"))[
        "v"
    ] or Decimal("0")
    report, _ = DailyReport.objects.update_or_create(
        date=day,
        defaults={
            "orders_created": sum(counts.values()),
            "counts_by_status": counts,
            "revenue": revenue,
            "avg_seconds_to_processing": _avg_seconds(orders, "processing_at", "created_at"),
            "avg_seconds_to_shipped": _avg_seconds(orders, "shipped_at", "created_at"),
            "avg_seconds_to_delivered": _avg_seconds(orders, "delivered_at", "created_at"),
        },
    )
    return report


def reconciliation_run() -> ReconciliationRun:
    """Run the inventory reconciliation and record its result (shown by /health/).

    Drift is logged as a warning; the run itself never changes stock.
    """
    result = inventory_reconcile()
    drifts = [d.as_dict() for d in result.drifts]
    run = ReconciliationRun.objects.create(
        ok=result.ok,
        products_checked=result.products_checked,
        drift_count=len(drifts),
        drifts=drifts[:500],
        duration_ms=result.duration_ms,
    )
    if not run.ok:
        logger.warning("inventory reconciliation found %d drift(s): %s", len(drifts), drifts[:20])
    return run


@dataclass(frozen=True)
class CleanupResult:
    audit_events_deleted: int
    contexts_deleted: int
    jobs_deleted: int
    idempotency_records_deleted: int = 0
    outbox_events_deleted: int = 0
    webhook_deliveries_deleted: int = 0


CLEANUP_BATCH = 5000

# The next batch of one event table: among the CLEANUP_BATCH oldest events (by id, from the
# previous batch on: one short walk of the primary key), those before the cutoff and before the
# first one after it. Events are numbered in time order, so the walk stops at the first recent
# event instead of scanning a table that has no index on its timestamp.
_EVENTS_BATCH_SQL = """
WITH head AS (
    SELECT pgh_id, pgh_created_at FROM {table} WHERE pgh_id > %(after)s
    ORDER BY pgh_id LIMIT %(batch)s
), doomed AS (
    SELECT pgh_id FROM head
    WHERE pgh_created_at < %(cutoff)s
      AND pgh_id < COALESCE(
          (SELECT min(pgh_id) FROM head WHERE pgh_created_at >= %(cutoff)s), 9223372036854775807)
), gone AS (
    DELETE FROM {table} WHERE pgh_id IN (SELECT pgh_id FROM doomed) RETURNING pgh_id
)
SELECT count(*), max(pgh_id) FROM gone
"""


def _events_delete_before(*, table: str, cutoff: datetime) -> int:
    """Delete the events of ``table`` older than ``cutoff`` in batches of ``CLEANUP_BATCH``, each
    its own short transaction: an event row is locked by nobody else, and no batch holds its
    locks longer than one small DELETE."""
    total, after = 0, 0
    sql = _EVENTS_BATCH_SQL.format(table=connection.ops.quote_name(table))
    while True:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql, {"after": after, "batch": CLEANUP_BATCH, "cutoff": cutoff})
            n, last = cur.fetchone()
        total += n
        if n < CLEANUP_BATCH or last is None:
            return total
        after = last


def retention_cleanup(*, now: datetime | None = None) -> CleanupResult:
    """Delete audit events older than ``AUDIT_RETENTION_DAYS``, finished Procrastinate jobs
    (succeeded, failed, cancelled, aborted) older than ``JOB_RETENTION_HOURS`` and idempotency
    records older than ``IDEMPOTENCY_RETENTION_HOURS``, events older than
    ``EVENT_RETENTION_DAYS`` with the webhook deliveries of the same age.

    Live jobs (todo, doing) are never touched (``queue.delete_finished_jobs``).
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    events = 0
    for model in apps.get_models():
        if issubclass(model, pghistory.models.Event) and not model._meta.proxy:
            events += _events_delete_before(table=model._meta.db_table, cutoff=cutoff)
    with transaction.atomic():
        contexts = pghistory.models.Context.objects.filter(updated_at__lt=cutoff).delete()[0]
    jobs = queue.delete_finished_jobs(older_than_hours=settings.JOB_RETENTION_HOURS)
    outbox_events, deliveries = webhooks.events_delete_expired(now=now)
    return CleanupResult(
        events,
        contexts,
        jobs,
        idempotency.idempotency_records_delete_expired(now=now),
        outbox_events,
        deliveries,
    )
