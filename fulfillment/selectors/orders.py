"""Order reads: detail with lines, keyset-paginated list, history, tracking and statistics."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.db.models import (
    Avg,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Prefetch,
    Q,
    QuerySet,
    Sum,
)
from django.utils import timezone

from fulfillment import lifecycle
from fulfillment.cache_keys import ORDER_STATISTICS
from fulfillment.errors import NotFound, ValidationFailed
from fulfillment.lifecycle import OrderStatus, stale_q
from fulfillment.models import Order, OrderLine


@dataclass(frozen=True)
class LineView:
    product_id: int
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


def order_get(*, order_id: UUID) -> Order:
    """One order with its lines and their products (two queries)."""
    lines = Prefetch("lines", queryset=OrderLine.objects.select_related("product").order_by("id"))
    order = Order.objects.prefetch_related(lines).filter(order_id=order_id).first()
    if order is None:
        raise NotFound("order", order_id)
    # The schema reads sku/name flat from each line.
    order.lines_view = [  # type: ignore[attr-defined]
        LineView(ln.product_id, ln.product.sku, ln.product.name, ln.quantity, ln.unit_price)
        for ln in order.lines.all()
    ]
    return order


# ----- list (keyset pagination on created_at, id: constant cost at any depth) ------------------


# ``<created_at in microseconds since the epoch>-<id>``: every string the pattern admits decodes
# (16 digits reach the year 2286, 18 stay below the bigint maximum).
CURSOR_PATTERN = r"^[0-9]{1,16}-[0-9]{1,18}$"
_CURSOR_RE = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(created_at: datetime, pk: int) -> str:
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}-{pk}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    if not _CURSOR_RE.match(cursor):
        raise ValidationFailed("cursor is not valid", field="cursor")
    micros, pk = cursor.split("-")
    return _EPOCH + timedelta(microseconds=int(micros)), int(pk)


def order_list(
    *,
    status: str | None = None,
    priority: str | None = None,
    customer_email: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    stale_only: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Order], str | None]:
    """Newest first. Returns one page and the cursor of the next page (None at the end)."""
    qs: QuerySet[Order] = Order.objects.order_by("-created_at", "-id")
    if status:
        qs = qs.filter(status=status)
    if priority:
        qs = qs.filter(priority=priority)
    if customer_email:
        qs = qs.filter(customer_email=customer_email)  # exact: order_customer_idx serves it
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    if stale_only:
        qs = qs.filter(stale_q())
    if cursor:
        created_at, pk = decode_cursor(cursor)
        # A row comparison lets PostgreSQL walk order_created_idx from the cursor.
        qs = qs.extra(where=["(created_at, id) < (%s, %s)"], params=[created_at, pk])
    rows = list(
        qs.only(
            "id",
            "order_id",
            "status",
            "version",
            "priority",
            "customer_name",
            "customer_email",
            "total_amount",
            "created_at",
            "status_changed_at",
        )[: limit + 1]
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].pk)
    return rows, next_cursor


# ----- history and tracking --------------------------------------------------------------------


def _order_pk(order_id: UUID) -> int:
    pk = Order.objects.filter(order_id=order_id).values_list("pk", flat=True).first()
    if pk is None:
        raise NotFound("order", order_id)
    return pk


def order_history(*, order_id: UUID) -> list[dict[str, Any]]:
    """pghistory events of the order and its lines, oldest first, with their context."""
    pk = _order_pk(order_id)
    order_event = apps.get_model("fulfillment", "OrderEvent")
    line_event = apps.get_model("fulfillment", "OrderLineEvent")
    events: list[dict[str, Any]] = []
    for model_name, qs in (
        ("order", order_event.objects.filter(pgh_obj_id=pk)),
        ("order_line", line_event.objects.filter(order_id=pk)),
    ):
        for row in qs.values(*_fields(qs.model), "pgh_context__metadata").order_by("pgh_id"):
            events.append(
                {
                    "model": model_name,
                    "event": row.pop("pgh_label"),
                    "at": row.pop("pgh_created_at"),
                    "object_id": row.pop("pgh_obj_id"),
                    "seq": row.pop("pgh_id"),
                    "context": row.pop("pgh_context__metadata"),
                    "data": row,
                }
            )
    # Events of one transaction share their timestamp: inserts before updates, order first.
    events.sort(key=lambda e: (e["at"], e["event"] != "insert", e["model"] != "order", e["seq"]))
    for e in events:
        del e["seq"]
    return events


def _fields(model: Any) -> list[str]:
    return [f.attname for f in model._meta.fields if f.name != "pgh_context"]


def order_tracking(*, order_id: UUID) -> dict[str, Any]:
    """The stages the order went through, in time order."""
    order = Order.objects.filter(order_id=order_id).first()
    if order is None:
        raise NotFound("order", order_id)
    steps = [
        {"status": status, "at": getattr(order, attr)}
        for status, attr in lifecycle.STAGE_TIMESTAMPS.items()
        if getattr(order, attr) is not None
    ]
    steps.sort(key=lambda s: s["at"])
    return {
        "order_id": order.order_id,
        "status": order.status,
        "tracking_number": order.tracking_number,
        "failure_reason": order.failure_reason,
        "timeline": steps,
    }


# ----- statistics ------------------------------------------------------------------------------


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else round(value.total_seconds(), 3)


def _avg_between(start: str, end: str) -> Avg:
    return Avg(ExpressionWrapper(F(end) - F(start), output_field=DurationField()))


# How long a snapshot the worker computed (``order_statistics_refresh``) stays served: a few
# refresh periods, so reads never compute while the worker runs, and fall back to computing
# when it has stopped.
STATISTICS_SNAPSHOT_SECONDS = 300


def order_statistics() -> dict[str, Any]:
    """Counts by status, last-24h orders and revenue, rates, stage times, stale count.

    Served from the snapshot in Redis: the one the worker refreshes every minute
    (:func:`order_statistics_refresh`), else one computed here and kept for
    ``ORDER_STATISTICS_TTL_SECONDS``. ``generated_at`` tells its age. Computing takes three
    aggregate queries (no Python loop over orders) whose cost grows with the table, which is why
    the worker, not the request, pays it; a Redis outage only means the cache is bypassed.
    """
    cached = cache.get(ORDER_STATISTICS)
    if cached is not None:
        return dict(cached)
    result = order_statistics_compute()
    cache.set(ORDER_STATISTICS, result, settings.ORDER_STATISTICS_TTL_SECONDS)
    return result


def order_statistics_refresh() -> dict[str, Any]:
    """Compute the statistics and store them for ``STATISTICS_SNAPSHOT_SECONDS`` (the periodic
    job's work)."""
    result = order_statistics_compute()
    cache.set(ORDER_STATISTICS, result, STATISTICS_SNAPSHOT_SECONDS)
    return result


def order_statistics_compute() -> dict[str, Any]:
    """The statistics now: three aggregate queries."""
    now = timezone.now()
    since = now - timedelta(hours=24)
    by_status = {s: 0 for s in OrderStatus.values}
    by_status.update(dict(Order.objects.order_by().values_list("status").annotate(n=Count("id"))))
    agg = Order.objects.aggregate(
        last_24h=Count("id", filter=Q(created_at__gte=since)),
        revenue=Sum(
            "total_amount",
            filter=Q(created_at__gte=since) & ~Q(status__in=lifecycle.UNSUCCESSFUL),
        ),
        to_processing=_avg_between("created_at", "processing_at"),
        to_shipped=_avg_between("processing_at", "shipped_at"),
        to_delivered=_avg_between("shipped_at", "delivered_at"),
    )
    stale = Order.objects.filter(stale_q()).count()
    total = sum(by_status.values())
    result = {
        "total_orders": total,
        "by_status": by_status,
        "orders_last_24h": agg["last_24h"],
        "revenue_last_24h": agg["revenue"] or Decimal("0.00"),
        "completion_rate": round(by_status[OrderStatus.DELIVERED] / total, 4) if total else 0.0,
        "failure_rate": round(by_status[OrderStatus.FAILED] / total, 4) if total else 0.0,
        "average_stage_seconds": {
            "pending_to_processing": _seconds(agg["to_processing"]),
            "processing_to_shipped": _seconds(agg["to_shipped"]),
            "shipped_to_delivered": _seconds(agg["to_delivered"]),
        },
        "stale_orders": stale,
        "generated_at": now,
    }
    return result
