"""Read side of the analytics endpoints: every figure comes from the rollups that the
``analytics_refresh`` job maintains (``services.analytics``), never from a scan of the orders.

Windows are half open, ``from <= t < to``, and aligned to the rollups' grain: hours (UTC) for
orders and stages, days (UTC) for customers and inventory; ``from`` rounds down and ``to``
rounds up to that grain. Each answer carries ``data_as_of`` (when the rollups were last
refreshed) and its age in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from fulfillment.errors import ValidationFailed
from fulfillment.lifecycle import NEXT_STAGE, UNSUCCESSFUL, Status
from fulfillment.models import STAGE_BUCKET_BOUNDS, RollupState

DEFAULT_WINDOW = timedelta(days=7)
STATE_NAME = "analytics"
STAGE_NAMES: tuple[str, ...] = tuple(NEXT_STAGE.values())
SUCCESSFUL_STATUSES: tuple[str, ...] = tuple(s for s in Status.values if s not in UNSUCCESSFUL)


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86400


def _floor(moment: datetime, grain: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if grain == "day" else moment


def _ceil(moment: datetime, grain: str) -> datetime:
    floored = _floor(moment, grain)
    if floored == moment.astimezone(UTC):
        return floored
    return floored + (timedelta(days=1) if grain == "day" else timedelta(hours=1))


def window_resolve(*, start: datetime | None, end: datetime | None, grain: str) -> Window:
    """The window of a request: defaults (the last 7 days, up to now), checks (``from`` before
    ``to``, at most ``ANALYTICS_MAX_SPAN_DAYS`` apart; 422 otherwise), then aligned to ``grain``."""
    end = end or timezone.now()
    start = start or end - DEFAULT_WINDOW
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationFailed("from and to need a time zone (for example 2026-01-01T00:00:00Z)")
    if start >= end:
        raise ValidationFailed("from must be before to", **{"from": start, "to": end})
    max_span = timedelta(days=settings.ANALYTICS_MAX_SPAN_DAYS)
    if end - start > max_span:
        raise ValidationFailed(
            f"the window may span at most {settings.ANALYTICS_MAX_SPAN_DAYS} days",
            max_span_days=settings.ANALYTICS_MAX_SPAN_DAYS,
        )
    return Window(start=_floor(start, grain), end=_ceil(end, grain))


def freshness() -> dict[str, Any]:
    """When the rollups were last refreshed and how many seconds ago (None if never)."""
    state = RollupState.objects.filter(name=STATE_NAME).first()
    if state is None:
        return {"data_as_of": None, "age_seconds": None}
    age = (timezone.now() - state.refreshed_at).total_seconds()
    return {"data_as_of": state.refreshed_at, "age_seconds": round(max(age, 0.0), 3)}


def _rows(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def _ratio(numerator: float | Decimal, denominator: float | Decimal) -> float | None:
    return round(float(numerator) / float(denominator), 4) if denominator else None


def _money(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(Decimal("0.01"))


# ----- orders -----------------------------------------------------------------------------------

_ORDERS_SQL = """
SELECT date_trunc(%(bucket)s, hour) AS b, status, sum(orders), sum(amount)
FROM fulfillment_orderhourrollup
WHERE hour >= %(start)s AND hour < %(end)s
GROUP BY 1, 2
"""


def orders_series(*, window: Window, bucket: str) -> dict[str, Any]:
    """Orders created per bucket (every bucket of the window, empty ones included): the count
    by current status, revenue and average order value (cancelled and failed orders are not
    revenue)."""
    step = timedelta(days=1) if bucket == "day" else timedelta(hours=1)
    by_bucket: dict[datetime, dict[str, tuple[int, Decimal]]] = {}
    for moment, status, orders, amount in _rows(
        _ORDERS_SQL, {"bucket": bucket, "start": window.start, "end": window.end}
    ):
        by_bucket.setdefault(moment, {})[status] = (int(orders), amount)
    points = []
    totals: dict[str, list[Any]] = {s: [0, Decimal(0)] for s in Status.values}
    moment = _floor(window.start, bucket)
    while moment < window.end:
        statuses = by_bucket.get(moment, {})
        for status, (orders, amount) in statuses.items():
            totals[status][0] += orders
            totals[status][1] += amount
        points.append({"start": moment, **_order_figures(statuses)})
        moment += step
    return {
        "bucket": bucket,
        "points": points,
        "totals": _order_figures({s: (n, a) for s, (n, a) in totals.items() if n}),
    }


def _order_figures(statuses: dict[str, tuple[int, Decimal]]) -> dict[str, Any]:
    paid = [statuses[s] for s in SUCCESSFUL_STATUSES if s in statuses]
    revenue = sum((a for _, a in paid), Decimal(0))
    paid_orders = sum(n for n, _ in paid)
    return {
        "accepted": sum(n for n, _ in statuses.values()),
        "by_status": {s: statuses.get(s, (0, 0))[0] for s in Status.values},
        "revenue": _money(revenue),
        "average_order_value": _money(revenue / paid_orders) if paid_orders else None,
    }


# ----- stages -----------------------------------------------------------------------------------

_STAGES_SQL = """
SELECT stage, sum(entered), sum(completed), sum(failed), sum(seconds_sum)
FROM fulfillment_stagehourrollup
WHERE hour >= %(start)s AND hour < %(end)s
GROUP BY stage
"""
_STAGE_BUCKETS_SQL = """
SELECT r.stage, u.i, sum(u.n)
FROM fulfillment_stagehourrollup r, unnest(r.buckets) WITH ORDINALITY AS u(n, i)
WHERE r.hour >= %(start)s AND r.hour < %(end)s
GROUP BY r.stage, u.i
"""


def percentile_from_buckets(counts: list[int], q: float) -> float | None:
    """The ``q`` quantile of a histogram over ``STAGE_BUCKET_BOUNDS``, interpolated linearly
    inside the bucket that holds it; a quantile in the open last bucket is its lower bound."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(STAGE_BUCKET_BOUNDS):
                return float(STAGE_BUCKET_BOUNDS[-1])
            low = STAGE_BUCKET_BOUNDS[i - 1] if i else 0.0
            high = STAGE_BUCKET_BOUNDS[i]
            return round(low + (high - low) * (rank - seen) / count, 3)
        seen += count
    return float(STAGE_BUCKET_BOUNDS[-1])


@dataclass
class _StageTotals:
    entered: int = 0
    completed: int = 0
    failed: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(STAGE_BUCKET_BOUNDS) + 1))


def stages_summary(*, window: Window) -> list[dict[str, Any]]:
    """Per stage, over the orders created in the window: how many entered, completed and failed
    it, the failure rate, the mean and the p50/p95 of the seconds it took."""
    acc = {stage: _StageTotals() for stage in STAGE_NAMES}
    params = {"start": window.start, "end": window.end}
    for stage, entered, completed, failed, seconds in _rows(_STAGES_SQL, params):
        if stage in acc:
            acc[stage] = _StageTotals(int(entered), int(completed), int(failed), float(seconds))
    for stage, index, count in _rows(_STAGE_BUCKETS_SQL, params):
        if stage in acc and 1 <= index <= len(acc[stage].buckets):
            acc[stage].buckets[index - 1] = int(count)
    return [
        {
            "stage": stage,
            "entered": a.entered,
            "completed": a.completed,
            "failed": a.failed,
            "failure_rate": _ratio(a.failed, a.entered),
            "mean_seconds": round(a.seconds / a.completed, 3) if a.completed else None,
            "p50_seconds": percentile_from_buckets(a.buckets, 0.50),
            "p95_seconds": percentile_from_buckets(a.buckets, 0.95),
        }
        for stage, a in acc.items()
    ]


# ----- inventory --------------------------------------------------------------------------------

_INVENTORY_SQL = """
WITH w AS (
    SELECT product_id, sum(units_shipped) AS shipped, sum(on_hand_delta) AS delta
    FROM fulfillment_productdayrollup
    WHERE day >= %(start)s AND day < %(end)s
    GROUP BY product_id
), later AS (
    SELECT product_id, sum(on_hand_delta) AS delta
    FROM fulfillment_productdayrollup
    WHERE day >= %(end)s AND product_id IN (SELECT product_id FROM w)
    GROUP BY product_id
)
SELECT w.product_id, p.sku, p.name, w.shipped, w.delta, COALESCE(later.delta, 0),
       s.on_hand, s.on_hand - s.reserved
FROM w
JOIN fulfillment_product p ON p.id = w.product_id
JOIN fulfillment_stocklevel s ON s.product_id = w.product_id
LEFT JOIN later ON later.product_id = w.product_id
ORDER BY w.shipped DESC, w.product_id
LIMIT %(limit)s
"""
_INVENTORY_TOTALS_SQL = """
SELECT count(DISTINCT product_id), COALESCE(sum(units_shipped), 0)
FROM fulfillment_productdayrollup
WHERE day >= %(start)s AND day < %(end)s
"""


def inventory_summary(*, window: Window, limit: int) -> dict[str, Any]:
    """The products that moved in the window, top movers (most units shipped) first, up to
    ``limit``: units shipped, average on-hand, turnover and days of cover.

    On-hand at the end of the window is the current on-hand minus the net movements since;
    at its start, that minus the net movements inside it; the average is the mean of the two.
    Turnover is units shipped over that average; days of cover is the available stock now over
    the window's daily shipping rate."""
    params = {"start": window.start.date(), "end": window.end.date(), "limit": limit}
    products = []
    for pk, sku, name, shipped, delta, later, on_hand, available in _rows(_INVENTORY_SQL, params):
        closing = on_hand - later
        opening = closing - delta
        average = (opening + closing) / 2
        daily = shipped / window.days if window.days else 0
        products.append(
            {
                "product_id": pk,
                "sku": sku,
                "name": name,
                "units_shipped": int(shipped),
                "on_hand": on_hand,
                "available": available,
                "average_on_hand": round(average, 2),
                "turnover": _ratio(shipped, average) if average > 0 else None,
                "days_of_cover": round(available / daily, 2) if daily else None,
            }
        )
    moved, shipped_total = _rows(_INVENTORY_TOTALS_SQL, params)[0]
    return {"products_moved": moved, "units_shipped": int(shipped_total), "products": products}


# ----- customers --------------------------------------------------------------------------------

_CUSTOMERS_SQL = """
WITH c AS (
    SELECT customer_key, sum(orders) AS orders, sum(revenue_orders) AS paid,
           sum(revenue_cents) AS revenue
    FROM fulfillment_customerdayrollup
    WHERE day >= %(start)s AND day < %(end)s
    GROUP BY customer_key
), top AS (
    SELECT * FROM c ORDER BY revenue DESC, orders DESC, customer_key LIMIT %(limit)s
)
SELECT NULL, count(*), count(*) FILTER (WHERE orders >= 2), COALESCE(sum(orders), 0),
       COALESCE(sum(paid), 0), COALESCE(sum(revenue), 0), 0
FROM c
UNION ALL
SELECT (SELECT r.customer_email FROM fulfillment_customerdayrollup r
        WHERE r.customer_key = top.customer_key LIMIT 1),
       1, 0, orders, paid, revenue, 1
FROM top
"""


def customers_summary(*, window: Window, limit: int) -> dict[str, Any]:
    """Customers (by email) who ordered in the window: how many, orders per customer, the
    share with two orders or more, average order value, and the top ``limit`` by revenue."""
    params = {"start": window.start.date(), "end": window.end.date(), "limit": limit}
    with transaction.atomic():
        # The grouping holds one entry per customer of the window: in memory, not on disk.
        with connection.cursor() as cur:
            cur.execute("SET LOCAL work_mem = '64MB'")
        rows = _rows(_CUSTOMERS_SQL, params)
    rows = [(*r[:5], Decimal(r[5]) / 100, r[6]) for r in rows]  # revenue: cents to units
    _, customers, repeat, orders, paid, revenue, _ = next(r for r in rows if r[6] == 0)
    top = [
        {
            "customer_email": email,
            "orders": int(n),
            "revenue": _money(rev),
            "average_order_value": _money(rev / p) if p else None,
        }
        for email, _, _, n, p, rev, kind in sorted(rows, key=lambda r: (-r[5], -r[3], r[0] or ""))
        if kind == 1
    ]
    return {
        "customers": customers,
        "orders": int(orders),
        "orders_per_customer": _ratio(orders, customers),
        "repeat_customers": repeat,
        "repeat_customer_rate": _ratio(repeat, customers),
        "revenue": _money(revenue),
        "average_order_value": _money(revenue / paid) if paid else None,
        "top_customers": top,
    }
