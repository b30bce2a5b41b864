"""Read side of the operations page (``/ops/``): one snapshot of the live system.

Every query is bounded and indexed, so the page costs the same with a million orders:
stage events of the last hour come from the orders whose status changed in it (the
``status``/``status_changed_at`` index), counts by status from the same index, lists are capped.
Each panel is one function in :data:`PANELS`; the snapshot is their results by name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F
from django.urls import reverse
from django.utils import timezone

from fulfillment import queue
from fulfillment.lifecycle import ALLOWED, STAGE_TIMESTAMPS, Status
from fulfillment.models import (
    Order,
    ReconciliationRun,
    StockLevel,
    WebhookEndpoint,
    low_stock_q,
)

THROUGHPUT_MINUTES = 60
LIST_LIMIT = 20
LAG_SAMPLE = 500
IN_FLIGHT: tuple[str, ...] = tuple(ALLOWED)  # the statuses an order can still leave

_THROUGHPUT_SQL = """
SELECT e.status, date_trunc('minute', e.at) AS minute, count(*)
FROM fulfillment_order o
CROSS JOIN LATERAL (VALUES {events}) AS e(status, at)
WHERE o.status = ANY(%(statuses)s) AND o.status_changed_at >= %(since)s AND e.at >= %(since)s
GROUP BY 1, 2
"""


def throughput() -> dict[str, Any]:
    """Orders reaching each status per minute over the last hour, one series per status, on
    one time axis of minutes (Unix seconds) ending with the current minute."""
    now = timezone.now().replace(second=0, microsecond=0)
    since = now - timedelta(minutes=THROUGHPUT_MINUTES - 1)
    events = ", ".join(f"('{status}', o.{column})" for status, column in STAGE_TIMESTAMPS.items())
    with connection.cursor() as cur:
        cur.execute(
            _THROUGHPUT_SQL.format(events=events),
            {"statuses": list(Status.values), "since": since},
        )
        rows = cur.fetchall()
    minutes = [since + timedelta(minutes=i) for i in range(THROUGHPUT_MINUTES)]
    index = {m: i for i, m in enumerate(minutes)}
    series = {status: [0] * THROUGHPUT_MINUTES for status in STAGE_TIMESTAMPS}
    for status, minute, count in rows:
        if minute in index:
            series[status][index[minute]] = count
    return {"minutes": [int(m.timestamp()) for m in minutes], "series": series}


def in_flight() -> dict[str, int]:
    """Orders in each status they can still leave."""
    counts = dict.fromkeys(IN_FLIGHT, 0)
    rows = Order.objects.filter(status__in=IN_FLIGHT).values("status").order_by()
    for status, count in rows.annotate(n=Count("id")).values_list("status", "n"):
        counts[status] = count
    return counts


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3)


def stage_lag() -> dict[str, Any]:
    lags = queue.recent_stage_lags(limit=LAG_SAMPLE)
    return {"p99_seconds": _p99(lags), "sample": len(lags)}


def queues() -> list[dict[str, Any]]:
    return queue.queue_depth_by_queue()


def workers() -> list[dict[str, Any]]:
    return [{"id": pk, "seconds_since_heartbeat": round(age, 1)}
            for pk, age in queue.worker_heartbeats(limit=LIST_LIMIT)]  # fmt: skip


def low_stock() -> list[dict[str, Any]]:
    """Products at or below their low-stock threshold, the emptiest first."""
    levels = (
        StockLevel.objects.filter(low_stock_q())
        .select_related("product")
        .annotate(free=F("on_hand") - F("reserved"))
        .order_by("free", "product_id")[:LIST_LIMIT]
    )
    return [
        {
            "product_id": s.product_id,
            "sku": s.product.sku,
            "name": s.product.name,
            "available": s.on_hand - s.reserved,
            "threshold": s.low_stock_threshold,
            "out_of_stock": s.on_hand - s.reserved <= 0,
            "admin_url": reverse("admin:fulfillment_stocklevel_change", args=[s.pk]),
        }
        for s in levels
    ]


def last_reconciliation() -> dict[str, Any] | None:
    run = ReconciliationRun.objects.order_by("-created_at", "-id").first()
    if run is None:
        return None
    return {
        "at": _iso(run.created_at),
        "ok": run.ok,
        "products_checked": run.products_checked,
        "drift_count": run.drift_count,
        "admin_url": reverse("admin:fulfillment_reconciliationrun_change", args=[run.pk]),
    }


def recent_failures() -> list[dict[str, Any]]:
    orders = Order.objects.filter(status=Status.FAILED).order_by("-status_changed_at")[:LIST_LIMIT]
    return [
        {
            "order_id": str(o.order_id),
            "at": _iso(o.status_changed_at),
            "reason": o.failure_reason,
            "customer": o.customer_email,
            "admin_url": reverse("admin:fulfillment_order_change", args=[o.pk]),
        }
        for o in orders
    ]


def webhook_endpoints() -> list[dict[str, Any]]:
    """Webhook endpoints, failing and disabled ones first: their state, since when it fails,
    and why one was disabled."""
    endpoints = WebhookEndpoint.objects.order_by(
        "is_active", F("failing_since").asc(nulls_last=True), "id"
    )[:LIST_LIMIT]
    rows = []
    for e in endpoints:
        if not e.is_active:
            state = f"disabled: {e.disabled_reason}" if e.disabled_reason else "disabled"
        elif e.failing_since is not None:
            state = "failing"
        else:
            state = "ok"
        rows.append(
            {
                "id": e.pk,
                "url": e.url,
                "state": state,
                "failing_since": _iso(e.failing_since) if e.failing_since else "",
                "admin_url": reverse("admin:fulfillment_webhookendpoint_change", args=[e.pk]),
            }
        )
    return rows


def _iso(moment: datetime) -> str:
    return moment.isoformat()


# The panels of the page, by name: the snapshot holds each one's result under its name.
PANELS: dict[str, Callable[[], Any]] = {
    "throughput": throughput,
    "in_flight": in_flight,
    "stage_lag": stage_lag,
    "queues": queues,
    "workers": workers,
    "low_stock": low_stock,
    "reconciliation": last_reconciliation,
    "failures": recent_failures,
    "webhooks": webhook_endpoints,
}


def ops_snapshot() -> dict[str, Any]:
    return {"generated_at": _iso(timezone.now()), **{name: f() for name, f in PANELS.items()}}
