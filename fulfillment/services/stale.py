"""Stale-order healing: orders stuck in a non-terminal status (``lifecycle.stale_q``) get their
stage job back, or fail after ``STALE_MAX_RECOVERIES`` recoveries."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction

from fulfillment import queue
from fulfillment.lifecycle import OrderStatus, stale_q
from fulfillment.models import Order
from fulfillment.services.stages import stage_jobs_defer
from fulfillment.services.transition import transition_row


@dataclass
class StaleHealResult:
    checked: int = 0
    redeferred: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped_live_job: list[str] = field(default_factory=list)


def stale_orders_heal(*, actor: str, limit: int = 1000) -> StaleHealResult:
    """Heal orders stuck in a non-terminal status.

    For each stale order, in its own short transaction under the order row lock (``SKIP LOCKED``:
    an order a stage job is working on is not stuck): if it is still stale and no live
    (``todo``/``doing``) stage job exists for it, re-defer its stage job and count the recovery;
    once ``recovery_count`` reached ``STALE_MAX_RECOVERIES``, fail it and release its stock.
    """
    result = StaleHealResult()
    candidates = list(
        Order.objects.filter(stale_q())
        .order_by("status_changed_at")
        .values_list("pk", "order_id")[:limit]
    )
    result.checked = len(candidates)
    # One scan of the job table for all candidates; the few without a live job are checked
    # again under their row lock (another healer may have just re-deferred one).
    live = queue.live_stage_job_order_pks([pk for pk, _ in candidates])
    for pk, order_id in candidates:
        if pk in live:
            result.skipped_live_job.append(str(order_id))
            continue
        with transaction.atomic():
            order = (
                Order.objects.select_for_update(of=("self",), skip_locked=True)
                .filter(stale_q(), pk=pk)
                .first()
            )
            if order is None:
                continue
            if queue.live_stage_job_order_pks([pk]):
                result.skipped_live_job.append(str(order.order_id))
                continue
            if order.recovery_count >= settings.STALE_MAX_RECOVERIES:
                transition_row(
                    target=OrderStatus.FAILED,
                    actor=actor,
                    order_pk=pk,
                    expected_status=order.status,
                    reason=f"stale in {order.status}: no progress after "
                    f"{order.recovery_count} recoveries",
                )
                result.failed.append(str(order.order_id))
                continue
            order.recovery_count += 1
            order.version += 1
            order.save(update_fields=["recovery_count", "version"])
            stage_jobs_defer([(pk, order.status)], delayed=False)
            result.redeferred.append(str(order.order_id))
    return result
