"""Order lifecycle: the one function every status change goes through, and stage-job scheduling.

pending --> processing --> shipped --> delivered
   |             |
   +--> cancelled (before shipping)
   +--> failed    (simulated failure, retries exhausted, stale timeout)
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from django.db import transaction
from django.utils import timezone
from procrastinate.types import JSONDict

from fulfillment.errors import InvalidTransition, NotFound, VersionConflict
from fulfillment.models import Order
from fulfillment.services import inventory

Status = Order.Status

ALLOWED: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset({Status.PROCESSING, Status.CANCELLED, Status.FAILED}),
    Status.PROCESSING: frozenset({Status.SHIPPED, Status.CANCELLED, Status.FAILED}),
    Status.SHIPPED: frozenset({Status.DELIVERED}),
}
TIMESTAMP_FIELD: dict[str, str] = {
    Status.PROCESSING: "processing_at",
    Status.SHIPPED: "shipped_at",
    Status.DELIVERED: "delivered_at",
    Status.CANCELLED: "cancelled_at",
    Status.FAILED: "failed_at",
}


def _lock_order(*, order_pk: int | None = None, order_id: UUID | None = None) -> Order:
    qs = Order.objects.select_for_update(of=("self",))
    if order_pk is not None:
        qs = qs.filter(pk=order_pk)
    elif order_id is not None:
        qs = qs.filter(order_id=order_id)
    else:
        raise TypeError("order_pk or order_id is required")
    order = qs.first()
    if order is None:
        raise NotFound("order", order_id if order_id is not None else order_pk)
    return order


@transaction.atomic
def order_transition(
    *,
    target: str,
    actor: str,
    order_pk: int | None = None,
    order_id: UUID | None = None,
    expected_version: int | None = None,
    reason: str = "",
    tracking_number: str = "",
) -> Order:
    """Move one order to ``target`` under its row lock, with the stock effect of the move.

    Locks the order row first, then (through the inventory service) its stock rows in primary-key
    order, so order-then-stock is the lock order everywhere. Raises InvalidTransition for an
    illegal move and VersionConflict when ``expected_version`` does not match; nothing is written
    then.
    """
    order = _lock_order(order_pk=order_pk, order_id=order_id)
    if expected_version is not None and order.version != expected_version:
        raise VersionConflict("order", order.order_id, expected_version, order.version)
    if target not in ALLOWED.get(order.status, frozenset()):
        raise InvalidTransition(order.order_id, order.status, target)

    lines = list(order.lines.values_list("product_id", "quantity"))
    if target in (Status.CANCELLED, Status.FAILED):
        inventory.stock_release(
            lines=lines, order_id=order.pk, actor=actor, reason=reason or target
        )
    elif target == Status.SHIPPED:
        inventory.stock_ship(lines=lines, order_id=order.pk, actor=actor)

    now = timezone.now()
    order.status = target
    order.status_changed_at = now
    order.version += 1
    setattr(order, TIMESTAMP_FIELD[target], now)
    fields = ["status", "status_changed_at", "version", TIMESTAMP_FIELD[target]]
    if target == Status.FAILED:
        order.failure_reason = reason[:255]
        fields.append("failure_reason")
    if tracking_number:
        order.tracking_number = tracking_number
        fields.append("tracking_number")
    order.save(update_fields=fields)
    return order


def enqueue_first_stage(*, order_pks: Sequence[int]) -> None:
    """Defer the first stage job of new orders, inside the caller's transaction.

    The web process's Procrastinate app uses Django's connection, so the jobs commit or roll back
    with the orders. One ``batch_defer`` for any number of orders.
    """
    from fulfillment.tasks import advance_order

    if not order_pks:
        return
    jobs: list[JSONDict] = [
        {"order_pk": pk, "expected_status": Status.PENDING.value} for pk in order_pks
    ]
    advance_order.batch_defer(*jobs)
