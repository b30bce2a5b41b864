"""Reads behind the gauges of ``/metrics``: each bounded, so a scrape stays cheap with a million
orders (exact counts up to a cap, the planner's estimate beyond it)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection

from fulfillment.lifecycle import OrderStatus
from fulfillment.models import Order, ReconciliationRun, StockLevel, low_stock_q

# One SELECT per status (UNION ALL), each with its status as a parameter the planner sees: an
# index-only scan of at most ``cap`` entries of the status index each.
_ONE_STATUS_SQL = f"""
SELECT %s::text, (SELECT count(*) FROM (
    SELECT 1 FROM {Order._meta.db_table} o WHERE o.status = %s
    ORDER BY o.status_changed_at LIMIT %s) capped)
"""
# The planner's view of the status column: rows in the table times each status's frequency
# among the most common values (ANALYZE keeps both; a handful of statuses are all "common").
_STATUS_ESTIMATE_SQL = f"""
SELECT m.status, m.freq * greatest(c.reltuples, 0)
FROM pg_class c, pg_stats s,
     unnest(s.most_common_vals::text::text[], s.most_common_freqs) AS m(status, freq)
WHERE c.oid = '{Order._meta.db_table}'::regclass AND s.schemaname = current_schema()
  AND s.tablename = '{Order._meta.db_table}' AND s.attname = 'status'
"""


@dataclass(frozen=True)
class Count:
    value: int
    exact: bool  # False: more than the cap, ``value`` is the planner's estimate


def orders_in_status(*, cap: int) -> dict[str, Count]:
    """Orders per status: exact up to ``cap`` (an index-only scan of at most ``cap`` entries of
    the status index per status), the estimate from the table statistics beyond (rows times
    the status's frequency, as of the last ANALYZE; at least ``cap``)."""
    statuses = [s.value for s in OrderStatus]
    out: dict[str, Count] = {}
    with connection.cursor() as cur:
        sql = " UNION ALL ".join(f"({_ONE_STATUS_SQL})" for _ in statuses)
        cur.execute(sql, [p for status in statuses for p in (status, status, cap)])
        counts = dict(cur.fetchall())
        estimates: dict[str, float] = {}
        if any(count >= cap for count in counts.values()):
            cur.execute(_STATUS_ESTIMATE_SQL)
            estimates = dict(cur.fetchall())
    for status, count in counts.items():
        if count < cap:
            out[status] = Count(int(count), True)
        else:
            out[status] = Count(max(round(estimates.get(status, 0)), cap), False)
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
