"""Analytics scenario: the latency of the four analytics endpoints through HTTP, first on the
bench's small database, then after a set-based fill of ``analytics_orders`` orders (default a
million) spread over 90 days with a stock movement per shipped order; p50/p95 of each
endpoint on both, and the time of the full and of the incremental rollup refresh.

The fill is private to this scenario (one ``INSERT ... SELECT generate_series`` per table,
triggers off for the session) and leaves the orders in place: run it alone or last
(``--scenarios analytics``).
"""

from __future__ import annotations

import time
from typing import Any

import requests

from loadtests.benchlib import ROOT, Bench, percentile

ENDPOINTS = {
    "orders_hour": "/api/v1/analytics/orders/?bucket=hour",
    "orders_day_30d": "/api/v1/analytics/orders/?bucket=day&from={from30}",
    "stages": "/api/v1/analytics/stages/",
    "inventory": "/api/v1/analytics/inventory/",
    "customers": "/api/v1/analytics/customers/",
}
# The cheapest request of the app, measured beside them: what the machine's load alone costs.
REFERENCE = "/health/live/"
REQUESTS = 60
ROLLUP_TABLES = (
    "fulfillment_orderhourrollup",
    "fulfillment_stagehourrollup",
    "fulfillment_customerdayrollup",
    "fulfillment_productdayrollup",
)
WARMUP = 5
FILL_DAYS = 90
CUSTOMERS = 50_000

# Statuses by the order's age: older orders are done (a few cancelled or failed), the last hours
# are still in the pipeline.
_FILL_ORDERS_SQL = """
INSERT INTO fulfillment_order (
    order_id, customer_name, customer_email, priority, status, version, total_amount,
    shipping_address, shipping_city, shipping_postal_code, shipping_country, tracking_number,
    failure_reason, recovery_count, created_at, processing_at, shipped_at, delivered_at,
    cancelled_at, failed_at, status_changed_at)
SELECT gen_random_uuid(), 'Bench customer', 'c' || (i %% {customers}) || '@bench.example',
       'normal', s.status, 1, ((i %% 20) + 1) * 9.99, '', '', '', '', '',
       CASE WHEN s.status = 'failed' THEN 'bench' ELSE '' END, 0,
       t.created,
       CASE WHEN s.status IN ('processing', 'shipped', 'delivered', 'failed')
            THEN t.created + interval '2 seconds' * (1 + i %% 5) END,
       CASE WHEN s.status IN ('shipped', 'delivered') THEN t.created + interval '30 seconds' END,
       CASE WHEN s.status = 'delivered' THEN t.created + interval '2 minutes' END,
       CASE WHEN s.status = 'cancelled' THEN t.created + interval '1 minute' END,
       CASE WHEN s.status = 'failed' THEN t.created + interval '1 minute' END,
       t.created + interval '2 minutes'
FROM generate_series(1, %(n)s) AS i
CROSS JOIN LATERAL (SELECT now() - interval '{days} days' * (i::float8 / %(n)s) AS created) AS t
CROSS JOIN LATERAL (SELECT CASE
    WHEN t.created > now() - interval '1 minute' THEN 'pending'
    WHEN i %% 50 = 0 THEN 'cancelled'
    WHEN i %% 97 = 0 THEN 'failed'
    WHEN t.created > now() - interval '5 minutes' THEN 'shipped'
    ELSE 'delivered' END AS status) AS s
"""
_FILL_MOVEMENTS_SQL = """
INSERT INTO fulfillment_stockmovement (
    product_id, kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after, order_id,
    reason, actor, created_at)
SELECT (%(products)s::bigint[])[1 + o.id %% cardinality(%(products)s::bigint[])], 'ship',
       -1, -1, 1000, 0, o.id, '', 'bench', o.shipped_at
FROM fulfillment_order o WHERE o.shipped_at IS NOT NULL AND o.customer_name = 'Bench customer'
"""


def _fill(bench: Bench) -> None:
    """The orders and their shipments, with triggers (audit history, foreign keys) off for the
    session: a bulk load, not the write path under test."""
    import psycopg

    params = {"n": bench.analytics_orders, "products": bench.product_ids}
    with psycopg.connect(bench.env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(_FILL_ORDERS_SQL.format(customers=CUSTOMERS, days=FILL_DAYS), params)
        conn.execute(_FILL_MOVEMENTS_SQL, params)
        conn.execute("SET session_replication_role = DEFAULT")
        conn.execute("ANALYZE fulfillment_order")
        conn.execute("ANALYZE fulfillment_stockmovement")


def _measure(bench: Bench) -> dict[str, Any]:
    from datetime import UTC, datetime, timedelta

    from30 = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: dict[str, Any] = {}
    with requests.Session() as session:
        session.headers.update(bench.headers)
        for name, path in {**ENDPOINTS, "reference": REFERENCE}.items():
            url = bench.base_url + path.format(from30=from30)
            timings = []
            for i in range(WARMUP + REQUESTS):
                started = time.perf_counter()
                response = session.get(url, timeout=30)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
                if i >= WARMUP:
                    timings.append(elapsed)
            out[name] = (round(percentile(timings, 50), 1), round(percentile(timings, 95), 1))
    return out


def _refresh(bench: Bench, *flags: str) -> float:
    """A refresh through the management command (the worker's job, in one process); the time
    includes the command's start-up."""
    started = time.perf_counter()
    bench.manage("refresh_analytics", *flags)
    elapsed = round(time.perf_counter() - started, 2)
    # What autovacuum does soon after a rebuild: the visibility map the index-only scans need.
    for table in ROLLUP_TABLES:
        bench.sql(f"VACUUM ANALYZE {table}")
    return elapsed


def bench_analytics(bench: Bench) -> dict[str, Any]:
    own_server = not bench.base_url
    if own_server:
        log = ROOT / "loadtests" / "reports" / "bench-gunicorn.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        bench.start_gunicorn(log)
    try:
        _refresh(bench, "--full")
        small = _measure(bench)
        small_orders = bench.sql("SELECT count(*) FROM fulfillment_order")[0][0]
        started = time.perf_counter()
        _fill(bench)
        fill_s = round(time.perf_counter() - started, 1)
        full_s = _refresh(bench, "--full")
        incremental_s = _refresh(bench)
        large_orders = bench.sql("SELECT count(*) FROM fulfillment_order")[0][0]
        large = _measure(bench)
    finally:
        if own_server:
            bench.stop_gunicorn()
            bench.base_url = ""
    figures: dict[str, Any] = {
        "small orders": small_orders,
        "large orders": large_orders,
        "fill s": fill_s,
        "full refresh s": full_s,
        "incremental refresh s": incremental_s,
    }
    for name in (*ENDPOINTS, "reference"):
        figures[f"{name} p50 ms (small)"], figures[f"{name} p95 ms (small)"] = small[name]
        figures[f"{name} p50 ms"], figures[f"{name} p95 ms"] = large[name]
    return figures
