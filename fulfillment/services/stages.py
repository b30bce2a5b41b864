"""Stage execution: every status change of an order, the stage job's body and stage deferral.

Each stage is one Procrastinate job (task ``queue.ADVANCE_ORDER_TASK``) that runs
:func:`order_advance`: the stage statement of ``services.transition`` locks the order row,
checks the status the job expects, applies the transition and its stock effect, and defers the
next stage with ``scheduled_at`` after the simulated delay, all in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from fulfillment import lifecycle, queue
from fulfillment.errors import InvalidTransition, NotFound
from fulfillment.lifecycle import OrderStatus
from fulfillment.models import Order
from fulfillment.services.simulation import stage_delay, stage_fails
from fulfillment.services.transition import explain_refusal, transition_row


@transaction.atomic
def order_transition(
    *,
    target: str,
    actor: str,
    order_pk: int | None = None,
    order_id: UUID | None = None,
    expected_version: int | None = None,
    expected_status: str | None = None,
    reason: str = "",
    tracking_number: str = "",
) -> Order:
    """Move one order to ``target`` with the stock effect of the move; every status change goes
    through here (or through :func:`order_advance`, which uses the same statement).

    One statement (``transition_row``): a conditional UPDATE locks the order row and moves it
    only if the move is legal (and the order is in ``expected_status`` / at
    ``expected_version``); then the stock rows of its lines are locked in primary-key order and
    shipped or released with their ledger rows: order-then-stock is the lock order everywhere.
    Raises NotFound, VersionConflict or InvalidTransition when nothing qualified; nothing is
    written then.
    """
    moved = transition_row(
        target=target,
        actor=actor,
        order_pk=order_pk,
        order_id=order_id,
        expected_status=expected_status,
        expected_version=expected_version,
        reason=reason,
        tracking_number=tracking_number,
    )
    if moved is None:
        raise explain_refusal(
            target=target, order_pk=order_pk, order_id=order_id, expected_version=expected_version
        )
    return Order.objects.get(pk=moved.order_pk)


def order_cancel(
    *, order_id: UUID, actor: str, expected_version: int | None = None, reason: str = ""
) -> Order:
    """Cancel an order before shipping; releases its reservation (ledger rows) exactly once.

    :func:`order_transition` locks the order row, checks the status (InvalidTransition
    otherwise) and ``expected_version`` (VersionConflict), then releases the stock in pk order.
    """
    return order_transition(
        target=OrderStatus.CANCELLED,
        order_id=order_id,
        actor=actor,
        expected_version=expected_version,
        reason=reason or "cancelled",
    )


# ----- deferring stage jobs ---------------------------------------------------------------------


def stage_jobs_defer(specs: Sequence[tuple[int, str]], *, delayed: bool = True) -> list[int]:
    """Defer the stage job for each ``(order_pk, expected_status)`` in the caller's transaction,
    each scheduled after the simulated delay of the stage it leads to (``delayed``) or at once.
    One statement for all (``queue.defer_stage_jobs``)."""
    now = timezone.now()
    jobs = []
    for order_pk, expected_status in specs:
        delay = 0.0
        if delayed:
            delay = stage_delay(order_pk=order_pk, stage=lifecycle.NEXT_STAGE[expected_status])
        scheduled_at = now + timedelta(seconds=delay) if delay > 0 else None
        jobs.append(queue.StageJob(order_pk, expected_status, scheduled_at))
    return queue.defer_stage_jobs(jobs)


def enqueue_first_stage(*, order_pks: Sequence[int]) -> None:
    """Defer the first stage job of new orders, inside the caller's transaction (they commit or
    roll back with the orders). One statement for any number of orders."""
    stage_jobs_defer([(pk, OrderStatus.PENDING) for pk in order_pks])


# ----- the stage job ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StageOutcome:
    order_pk: int
    expected_status: str
    action: str  # "advanced" | "failed" | "skipped"
    status: str | None
    next_job_id: int | None = None


def order_advance(*, order_pk: int, expected_status: str, actor: str) -> StageOutcome:
    """Run one stage of one order: the body of the stage job.

    One transaction: the stage statement, run in autocommit, is its own. It locks the order row
    (waiting at most ``PIPELINE_LOCK_TIMEOUT_MS``, so a stuck lock becomes a retryable error
    rather than a blocked worker), moves it only if it is still in ``expected_status`` (so
    re-running a job changes nothing: "skipped"), applies the stock effect (shipping: ``on_hand``
    and ``reserved`` drop, one ``ship`` ledger row per line) and defers the next stage job. A
    simulated failure moves the order to ``failed`` and releases its reservation instead. Inside
    a caller's transaction (tests) it joins that transaction.
    """
    target = lifecycle.NEXT_STAGE.get(expected_status)
    if target is None:
        return StageOutcome(order_pk, expected_status, "skipped", None)
    fails = lifecycle.can_move(expected_status, OrderStatus.FAILED) and stage_fails(
        order_pk=order_pk, stage=target
    )
    moved = transition_row(
        target=OrderStatus.FAILED if fails else target,
        actor=actor,
        order_pk=order_pk,
        order_id=None,
        expected_status=expected_status,
        expected_version=None,
        reason=f"simulated failure in stage {target}" if fails else "",
        lock_timeout=f"{int(settings.PIPELINE_LOCK_TIMEOUT_MS)}ms",
        defer_next=not fails,
    )
    if moved is None:
        status = Order.objects.filter(pk=order_pk).values_list("status", flat=True).first()
        return StageOutcome(order_pk, expected_status, "skipped", status)
    if fails:
        return StageOutcome(order_pk, expected_status, "failed", OrderStatus.FAILED)
    return StageOutcome(order_pk, expected_status, "advanced", target, moved.next_job_id)


def order_fail_after_retries(
    *, order_pk: int, expected_status: str, actor: str, error: str
) -> StageOutcome:
    """A stage job exhausted its retries: fail the order (releasing its reservation) if it is
    still where the job found it. Waits for the order lock normally (no lock timeout)."""
    reason = f"stage job failed after {settings.PIPELINE_MAX_RETRIES} retries: {error}"
    try:
        order = order_transition(
            order_pk=order_pk,
            target=OrderStatus.FAILED,
            actor=actor,
            expected_status=expected_status,
            reason=reason,
        )
    except (InvalidTransition, NotFound):
        return StageOutcome(order_pk, expected_status, "skipped", None)
    return StageOutcome(order_pk, expected_status, "failed", order.status)
