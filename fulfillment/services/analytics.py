"""Write side of the analytics rollups: :func:`analytics_rollups_refresh`, run every minute by the
``analytics_refresh`` job.

The refresh is incremental by time. It recomputes, from the orders and the stock ledger:

- every hour (UTC) that holds an order whose status changed since the last refresh, minus an
  overlap (``ANALYTICS_REFRESH_OVERLAP_SECONDS``) that covers transactions which started
  before the last refresh and committed after it: ``OrderHourRollup`` and ``StageHourRollup``;
- every day of those hours: ``CustomerDayRollup``;
- every day with a stock movement since then: ``ProductDayRollup``.

A period is recomputed whole (delete, then ``INSERT ... SELECT``), so a refresh never double
counts and a rerun is harmless. The first refresh (no state row) rebuilds everything. One
refresh runs at a time (a transaction-level advisory lock); the whole refresh is one
transaction, so readers see the rollups either before or after it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from fulfillment.lifecycle import NEXT_STAGE, STAGE_TIMESTAMPS, UNSUCCESSFUL, Status
from fulfillment.models import STAGE_BUCKET_BOUNDS, RollupState

STATE_NAME = "analytics"
_LOCK_KEY = 0x616E616C  # pg_advisory_xact_lock key of the refresh ("anal")

# The stages of the pipeline, as (stage, column it starts at, column it ends at): the stage is
# named for the status an order reaches at its end.
STAGES: tuple[tuple[str, str, str], ...] = tuple(
    (target, STAGE_TIMESTAMPS[source], STAGE_TIMESTAMPS[target])
    for source, target in NEXT_STAGE.items()
)
ALL_STATUSES = list(Status.values)
UNSUCCESSFUL_STATUSES = sorted(UNSUCCESSFUL)


@dataclass(frozen=True)
class RefreshResult:
    hours: int
    days: int
    movement_days: int
    refreshed_at: datetime
    duration_ms: float


_DIRTY_HOURS_SQL = """
SELECT DISTINCT date_trunc('hour', created_at) FROM fulfillment_order
WHERE status = ANY(%(statuses)s) AND status_changed_at >= %(since)s
"""
_ALL_HOURS_SQL = "SELECT DISTINCT date_trunc('hour', created_at) FROM fulfillment_order"

_DIRTY_MOVEMENT_DAYS_SQL = """
SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM fulfillment_stockmovement
WHERE created_at >= %(since)s
"""
_ALL_MOVEMENT_DAYS_SQL = (
    "SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM fulfillment_stockmovement"
)

# Orders of the given hours, joined per hour so that each hour is an index range scan.
_HOUR_ORDERS = """
FROM unnest(%(hours)s::timestamptz[]) AS d(h)
JOIN fulfillment_order o ON o.created_at >= d.h AND o.created_at < d.h + interval '1 hour'
"""

_ORDER_HOURS_SQL = f"""
INSERT INTO fulfillment_orderhourrollup (hour, status, orders, amount)
SELECT d.h, o.status, count(*), COALESCE(sum(o.total_amount), 0)
{_HOUR_ORDERS}
GROUP BY d.h, o.status
"""


def _stage_hours_sql() -> str:
    stages = ",\n        ".join(f"('{stage}', o.{start}, o.{end})" for stage, start, end in STAGES)
    # width_bucket(x, bounds) is the number of bounds <= x: bucket i holds bounds[i-1] <= x <
    # bounds[i], the last one x >= the last bound.
    buckets = ", ".join(
        f"count(*) FILTER (WHERE s.ended IS NOT NULL AND width_bucket(s.secs, %(bounds)s::float8[]) = {i})"
        for i in range(len(STAGE_BUCKET_BOUNDS) + 1)
    )
    return f"""
INSERT INTO fulfillment_stagehourrollup
    (hour, stage, entered, completed, failed, seconds_sum, buckets)
SELECT d.h, s.stage, count(*), count(s.ended),
       count(*) FILTER (WHERE s.ended IS NULL AND o.failed_at IS NOT NULL),
       COALESCE(sum(s.secs), 0), ARRAY[{buckets}]
{_HOUR_ORDERS}
CROSS JOIN LATERAL (
    SELECT v.stage, v.ended, EXTRACT(EPOCH FROM v.ended - v.started)::float8 AS secs
    FROM (VALUES
        {stages}
    ) AS v(stage, started, ended)
    WHERE v.started IS NOT NULL
) AS s
GROUP BY d.h, s.stage
"""


_CUSTOMER_DAYS_SQL = """
INSERT INTO fulfillment_customerdayrollup
    (day, customer_key, customer_email, orders, revenue_orders, revenue_cents)
SELECT d.day, hashtextextended(o.customer_email, 0), o.customer_email, count(*),
       count(*) FILTER (WHERE o.status <> ALL(%(unsuccessful)s)),
       COALESCE(sum(o.total_amount * 100) FILTER (WHERE o.status <> ALL(%(unsuccessful)s)), 0)
FROM unnest(%(days)s::date[]) AS d(day)
JOIN fulfillment_order o
  ON o.created_at >= d.day::timestamp AT TIME ZONE 'UTC'
 AND o.created_at < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
GROUP BY d.day, o.customer_email
"""
_ROLLUP_TABLES = (
    "fulfillment_orderhourrollup",
    "fulfillment_stagehourrollup",
    "fulfillment_customerdayrollup",
    "fulfillment_productdayrollup",
)

_PRODUCT_DAYS_SQL = """
INSERT INTO fulfillment_productdayrollup (day, product_id, units_shipped, on_hand_delta)
SELECT d.day, m.product_id,
       COALESCE(sum(-m.on_hand_delta) FILTER (WHERE m.kind = 'ship'), 0), sum(m.on_hand_delta)
FROM unnest(%(days)s::date[]) AS d(day)
JOIN fulfillment_stockmovement m
  ON m.created_at >= d.day::timestamp AT TIME ZONE 'UTC'
 AND m.created_at < (d.day + 1)::timestamp AT TIME ZONE 'UTC'
GROUP BY d.day, m.product_id
"""


def _column(sql: str, params: dict[str, Any] | None = None) -> list:  # type: ignore[type-arg]
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return [row[0] for row in cur.fetchall()]


def _execute(sql: str, params: dict[str, Any]) -> None:
    with connection.cursor() as cur:
        cur.execute(sql, params)


@transaction.atomic
def analytics_rollups_refresh(*, full: bool = False) -> RefreshResult:
    """Bring the rollups up to date with the orders and the ledger (see the module docstring).
    ``full`` rebuilds every period. Serialized by an advisory lock held until commit."""
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s), now()", [_LOCK_KEY])
        _, now = cur.fetchone()
    state = RollupState.objects.filter(name=STATE_NAME).first()
    if full or state is None:
        hours: list[datetime] = _column(_ALL_HOURS_SQL)
        movement_days: list[date] = _column(_ALL_MOVEMENT_DAYS_SQL)
    else:
        since = state.refreshed_at - timedelta(seconds=settings.ANALYTICS_REFRESH_OVERLAP_SECONDS)
        hours = _column(_DIRTY_HOURS_SQL, {"statuses": ALL_STATUSES, "since": since})
        movement_days = _column(_DIRTY_MOVEMENT_DAYS_SQL, {"since": since})
    days = sorted({h.astimezone(UTC).date() for h in hours})

    if hours:
        _execute(
            "DELETE FROM fulfillment_orderhourrollup WHERE hour = ANY(%(hours)s)", {"hours": hours}
        )
        _execute(
            "DELETE FROM fulfillment_stagehourrollup WHERE hour = ANY(%(hours)s)", {"hours": hours}
        )
        _execute(_ORDER_HOURS_SQL, {"hours": hours})
        _execute(
            _stage_hours_sql(), {"hours": hours, "bounds": [float(b) for b in STAGE_BUCKET_BOUNDS]}
        )
    if days:
        _execute(
            "DELETE FROM fulfillment_customerdayrollup WHERE day = ANY(%(days)s)", {"days": days}
        )
        _execute(_CUSTOMER_DAYS_SQL, {"days": days, "unsuccessful": UNSUCCESSFUL_STATUSES})
    if movement_days:
        _execute(
            "DELETE FROM fulfillment_productdayrollup WHERE day = ANY(%(days)s)",
            {"days": movement_days},
        )
        _execute(_PRODUCT_DAYS_SQL, {"days": movement_days})

    if full or state is None:
        for table in _ROLLUP_TABLES:  # the planner's row estimates after a rebuild
            _execute(f"ANALYZE {table}", {})
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    RollupState.objects.update_or_create(
        name=STATE_NAME, defaults={"refreshed_at": now, "duration_ms": duration_ms}
    )
    return RefreshResult(
        hours=len(hours),
        days=len(days),
        movement_days=len(movement_days),
        refreshed_at=now,
        duration_ms=duration_ms,
    )
