"""What "stale" means, in one place: a non-terminal order whose ``status_changed_at`` is older
than the threshold of its stage. Used by the stale-order job, ``check_stale`` and
``GET /orders/?stale_only=true``."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from fulfillment.models import Order


def stale_thresholds() -> dict[str, timedelta]:
    seconds: dict[str, int] = settings.STALE_AFTER_SECONDS
    return {status: timedelta(seconds=s) for status, s in seconds.items()}


def stale_q() -> Q:
    """A filter on Order matching stale orders now."""
    now = timezone.now()
    q = Q(pk__in=[])
    for status, threshold in stale_thresholds().items():
        q |= Q(status=status, status_changed_at__lt=now - threshold)
    return q


def live_stage_job_order_pks(order_pks: list[int]) -> set[int]:
    """The orders among ``order_pks`` that have a live (``todo`` or ``doing``) stage job."""
    if not order_pks:
        return set()
    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT DISTINCT (args->>'order_pk')::bigint FROM procrastinate_jobs
            WHERE task_name = %s AND status IN ('todo', 'doing')
              AND (args->>'order_pk')::bigint = ANY(%s::bigint[])
            """,
            ["fulfillment.advance_order", order_pks],
        )
        return {row[0] for row in cur.fetchall()}


__all__ = ["Order", "live_stage_job_order_pks", "stale_q", "stale_thresholds"]
