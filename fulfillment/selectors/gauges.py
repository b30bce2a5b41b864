"""Reads behind the gauges of ``/metrics``: each bounded, so a scrape stays cheap with a million
orders (exact counts up to a cap, the planner's estimate beyond it)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.db import connection

from fulfillment.lifecycle import OrderStatus
from fulfillment.models import Order, ReconciliationRun, StockLevel, low_stock_q

_ORDERS_IN_STATUS_SQL = f"""
SELECT s.status, (SELECT count(*) FROM (
    SELECT 1 FROM {Order._meta.db_table} o WHERE o.status = s.status LIMIT %(cap)s) capped)
FROM unnest(%(statuses)s::text[]) AS s(status)
"""
_STATUS_ESTIMATE_SQL = (
    f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {Order._meta.db_table} WHERE status = %s"
)


@dataclass(frozen=True)
class Count:
    value: int
    exact: bool  # False: more than the cap, ``value`` is the planner's estimate


def orders_in_status(*, cap: int) -> dict[str, Count]:
    """Orders per status: exact up to ``cap`` (an index-only scan of at most ``cap`` entries of
    the status index per status), the planner's estimate from the table statistics beyond."""
    statuses = [s.value for s in OrderStatus]
    out: dict[str, Count] = {}
    with connection.cursor() as cur:
        cur.execute(_ORDERS_IN_STATUS_SQL, {"statuses": statuses, "cap": cap})
        for status, count in cur.fetchall():
            if count < cap:
                out[status] = Count(int(count), True)
                continue
            cur.execute(_STATUS_ESTIMATE_SQL, [status])
            plan = cur.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            out[status] = Count(max(int(plan[0]["Plan"]["Plan Rows"]), cap), False)
    return out


def low_stock_products() -> int:
    """Products whose available stock is at or below their low-stock threshold (exact: one row
    per product)."""
    return StockLevel.objects.filter(low_stock_q()).count()


def reconciliation_drift_products() -> int | None:
    """Products whose stock drifted from the ledger at the last reconciliation; None before the
    first one."""
    return (
        ReconciliationRun.objects.order_by("-created_at", "-id")
        .values_list("drift_count", flat=True)
        .first()
    )
