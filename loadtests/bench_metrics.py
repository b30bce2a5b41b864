"""Metrics scenarios: what recording the Prometheus series costs intake, and what a scrape of
``/metrics`` costs.

- ``http_single_metrics``: the single-order intake of ``http_single`` against two gunicorns
  started for it, one after the other, as production runs them: with metrics on (multiprocess
  mode, a fresh ``PROMETHEUS_MULTIPROC_DIR``) and with ``METRICS_ENABLED=0``. Reports both
  rates and their ratio (target: metrics on within 5 % of off, ratio >= 0.95).
- ``metrics_scrape``: ``GET /metrics`` timed 30 times (p50, p95) on the database as the run left
  it; with ``--metrics-volume N`` first N orders and N waiting jobs are inserted in bulk.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from loadtests.bench_intake import _http_run
from loadtests.benchlib import ROOT, Bench, percentile, start_web, stop_web

SCRAPE_TOKEN = "bench-metrics-token-0123456789abcdef"
LOG = ROOT / "loadtests" / "reports" / "bench-gunicorn-metrics.log"


def _intake_with(bench: Bench, env: dict[str, str]) -> dict[str, Any]:
    LOG.parent.mkdir(parents=True, exist_ok=True)
    proc, base = start_web({**bench.env, **env}, bench.web_concurrency, LOG)
    saved, bench.base_url = bench.base_url, base
    try:
        return _http_run(bench, "single", bench.clients)
    finally:
        bench.base_url = saved
        stop_web(proc)


def http_single_metrics(bench: Bench) -> dict[str, Any]:
    """Intake with metrics on (multiprocess) and off, measured back to back."""
    multiproc = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    try:
        on = _intake_with(
            bench, {"METRICS_ENABLED": "1", "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
        )
    finally:
        shutil.rmtree(multiproc, ignore_errors=True)
    off = _intake_with(bench, {"METRICS_ENABLED": "0", "PROMETHEUS_MULTIPROC_DIR": ""})
    return {
        "clients": bench.clients,
        "orders/s metrics on": on["orders/s"],
        "orders/s metrics off": off["orders/s"],
        "ratio on/off": round(on["orders/s"] / off["orders/s"], 3) if off["orders/s"] else 0.0,
        "p99 ms on": on["p99 ms"],
        "p99 ms off": off["p99 ms"],
        "5xx": on["5xx"] + off["5xx"],
    }


_ORDERS_SQL = """
INSERT INTO fulfillment_order (order_id, customer_name, customer_email, priority, status,
    version, total_amount, shipping_address, shipping_city, shipping_postal_code,
    shipping_country, tracking_number, failure_reason, recovery_count, created_at,
    status_changed_at)
SELECT gen_random_uuid(), 'Volume ' || i, 'volume' || (i %% 5000) || '@example.com', 'normal',
    (ARRAY['pending','processing','shipped','delivered','delivered','delivered','cancelled',
           'failed'])[1 + i %% 8],
    1, 10, '', '', '', '', '', '', 0, now() - (i || ' seconds')::interval, now()
FROM generate_series(1, %(n)s) AS i
"""
_JOBS_SQL = """
INSERT INTO procrastinate_jobs (queue_name, task_name, priority, args, status, scheduled_at)
SELECT 'pipeline', 'fulfillment.advance_order', 0,
    jsonb_build_object('order_pk', -i, 'expected_status', 'pending'), 'todo',
    now() - interval '10 minutes' + (i || ' milliseconds')::interval
FROM generate_series(1, %(n)s) AS i
"""


def _seed_volume(bench: Bench, n: int) -> None:
    import psycopg

    with psycopg.connect(bench.env["DATABASE_URL"], autocommit=True) as conn:
        # Rows only (no audit trigger): the scrape reads the tables, not their history.
        conn.execute("SET session_replication_role = replica")
        conn.execute(_ORDERS_SQL, {"n": n})
        conn.execute(_JOBS_SQL, {"n": n})
        conn.execute("VACUUM ANALYZE fulfillment_order")
        conn.execute("VACUUM ANALYZE procrastinate_jobs")


def _drop_volume(bench: Bench) -> None:
    import psycopg

    with psycopg.connect(bench.env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("DELETE FROM fulfillment_order WHERE customer_name LIKE 'Volume %%'")
        conn.execute("DELETE FROM procrastinate_jobs WHERE (args->>'order_pk')::bigint < 0")
        conn.execute("VACUUM ANALYZE fulfillment_order")
        conn.execute("VACUUM ANALYZE procrastinate_jobs")


def metrics_scrape(bench: Bench) -> dict[str, Any]:
    """``GET /metrics`` latency on the database as it is (after ``--metrics-volume`` rows)."""
    volume = bench.metrics_volume
    if volume:
        started = time.monotonic()
        _seed_volume(bench, volume)
        seed_s = round(time.monotonic() - started, 1)
    LOG.parent.mkdir(parents=True, exist_ok=True)
    proc, base = start_web({**bench.env, "METRICS_TOKEN": SCRAPE_TOKEN}, 2, LOG)
    try:
        request = urllib.request.Request(
            base + "/metrics", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
        )
        latencies = []
        for i in range(33):
            t0 = time.perf_counter()
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
            if i >= 3:  # the first scrapes of each process warm its connection
                latencies.append(time.perf_counter() - t0)
        orders = bench.sql(
            "SELECT reltuples::bigint FROM pg_class WHERE relname = 'fulfillment_order'"
        )
        jobs = bench.sql("SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'")
    finally:
        stop_web(proc)
        if volume:  # later rounds measure intake on the database as before
            _drop_volume(bench)
    figures: dict[str, Any] = {
        "orders (estimate)": int(orders[0][0]),
        "waiting jobs": int(jobs[0][0]),
        "scrapes": len(latencies),
        "p50 ms": round(percentile(latencies, 50) * 1000, 1),
        "p95 ms": round(percentile(latencies, 95) * 1000, 1),
        "bytes": len(body),
    }
    if volume:
        figures["seeding s"] = seed_s
    return figures
