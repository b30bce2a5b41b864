"""Health checks: each check returns a dict with ``ok`` and details; never raises."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django_redis import get_redis_connection

from fulfillment import backpressure, queue
from fulfillment.models import ReconciliationRun


def check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
    except Exception as exc:  # any failure means "down", reported, not raised
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def check_redis() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        get_redis_connection("default").ping()
    except Exception as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


# Loading the migration graph costs tens of milliseconds; once a process has seen every
# migration applied, it says so again for this long without reloading it.
_MIGRATIONS_OK_FOR_S = 60.0
_migrations_ok_at: float | None = None


def check_migrations() -> dict[str, Any]:
    global _migrations_ok_at
    now = time.monotonic()
    if _migrations_ok_at is not None and now - _migrations_ok_at < _MIGRATIONS_OK_FOR_S:
        return {"ok": True, "unapplied": 0}
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    _migrations_ok_at = None if plan else now
    return {"ok": not plan, "unapplied": len(plan)}


def check_workers() -> dict[str, Any]:
    """Procrastinate workers and their heartbeat age; fails when no heartbeat is fresh."""
    fresh = settings.STALLED_WORKER_SECONDS
    try:
        rows = queue.worker_heartbeats(limit=50)
    except Exception as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    workers = [
        {"id": pk, "heartbeat_age_s": round(age, 1), "alive": age <= fresh} for pk, age in rows
    ]
    live = sum(1 for w in workers if w["alive"])
    return {"ok": live > 0, "live": live, "fresh_within_s": fresh, "workers": workers}


# queue.queue_depth's names -> the report's.
_QUEUE_FIGURES = {
    "waiting": "jobs_waiting",
    "scheduled": "jobs_scheduled",
    "running": "jobs_running",
    "oldest_waiting": "oldest_waiting_s",
}


def check_queue() -> dict[str, Any]:
    """Jobs due and waiting, the age of the oldest, failed jobs in the last hour (informational).
    Bounded cost at any backlog: ``estimated`` names the figures that are estimates."""
    try:
        depth = queue.queue_depth()
    except Exception as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    return {
        "ok": True,
        "jobs_waiting": depth["waiting"],
        "oldest_waiting_s": round(max(depth["oldest_waiting_s"] or 0.0, 0.0), 1),
        "jobs_scheduled": depth["scheduled"],
        "jobs_running": depth["running"],
        "failed_last_hour": depth["failed_last_hour"],
        "estimated": [_QUEUE_FIGURES.get(name, name) for name in depth["estimated"]],
    }


def check_backpressure() -> dict[str, Any]:
    """The queue lag (oldest due job's wait) and whether the pipeline is behind; informational:
    a pipeline that is behind is reported, and refuses intake only when that is switched on."""
    try:
        lag = backpressure.queue_lag(fresh=True)
    except Exception as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    return {
        "ok": True,
        "queue_lag_s": round(lag.lag_s, 1),
        "behind": lag.behind,
        "threshold_s": lag.threshold_s,
        "rejecting_intake": lag.behind and settings.BACKPRESSURE_REJECT_INTAKE,
    }


def check_reconciliation() -> dict[str, Any]:
    """The last hourly inventory reconciliation (informational: drift is reported, not fatal)."""
    try:
        run = ReconciliationRun.objects.order_by("-created_at", "-id").first()
    except Exception as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    if run is None:
        return {"ok": True, "last_run": None}
    return {
        "ok": True,
        "last_run": {
            "at": run.created_at.isoformat(),
            "consistent": run.ok,
            "products_checked": run.products_checked,
            "drifts": run.drift_count,
            "duration_ms": run.duration_ms,
        },
    }


CHECKS = {
    "database": check_database,
    "redis": check_redis,
    "migrations": check_migrations,
    "workers": check_workers,
    "queue": check_queue,
    "backpressure": check_backpressure,
    "reconciliation": check_reconciliation,
}
NEEDS_DATABASE = {"migrations", "workers", "queue", "backpressure", "reconciliation"}


def report() -> tuple[bool, dict[str, Any]]:
    results: dict[str, Any] = {}
    for name, check in CHECKS.items():
        if name in NEEDS_DATABASE and not results.get("database", {}).get("ok"):
            results[name] = {"ok": False, "error": "database unavailable"}
            continue
        results[name] = check()
    healthy = all(r["ok"] for r in results.values())
    return healthy, results
