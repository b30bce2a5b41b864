"""Health checks: each check returns a dict with ``ok`` and details; never raises."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django_redis import get_redis_connection


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


def check_migrations() -> dict[str, Any]:
    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    return {"ok": not plan, "unapplied": len(plan)}


def check_workers() -> dict[str, Any]:
    """Procrastinate workers and their heartbeat age; fails when no heartbeat is fresh."""
    fresh = settings.STALLED_WORKER_SECONDS
    try:
        with connection.cursor() as cur:
            cur.execute(
                "SELECT id, EXTRACT(EPOCH FROM now() - last_heartbeat)::float "
                "FROM procrastinate_workers ORDER BY last_heartbeat DESC LIMIT 50"
            )
            rows = cur.fetchall()
    except Exception as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    workers = [
        {"id": r[0], "heartbeat_age_s": round(r[1], 1), "alive": r[1] <= fresh} for r in rows
    ]
    live = sum(1 for w in workers if w["alive"])
    return {"ok": live > 0, "live": live, "fresh_within_s": fresh, "workers": workers}


def check_queue() -> dict[str, Any]:
    """Jobs due and waiting, the age of the oldest, failed jobs in the last hour (informational)."""
    try:
        with connection.cursor() as cur:
            cur.execute(
                """
                WITH waiting AS (
                    SELECT j.id, COALESCE(j.scheduled_at,
                        (SELECT min(e.at) FROM procrastinate_events e
                         WHERE e.job_id = j.id AND e.type = 'deferred')) AS due_at
                    FROM procrastinate_jobs j
                    WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
                )
                SELECT (SELECT count(*) FROM waiting),
                       (SELECT EXTRACT(EPOCH FROM now() - min(due_at))::float FROM waiting),
                       (SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo'
                          AND scheduled_at > now()),
                       (SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'),
                       (SELECT count(*) FROM procrastinate_events
                          WHERE type = 'failed' AND at > now() - interval '1 hour')
                """
            )
            waiting, oldest, scheduled, running, failed = cur.fetchone()
    except Exception as exc:
        return {"ok": False, "error": exc.__class__.__name__}
    return {
        "ok": True,
        "jobs_waiting": waiting,
        "oldest_waiting_s": round(max(oldest or 0.0, 0.0), 1),
        "jobs_scheduled": scheduled,
        "jobs_running": running,
        "failed_last_hour": failed,
    }


def check_reconciliation() -> dict[str, Any]:
    """The last hourly inventory reconciliation (informational: drift is reported, not fatal)."""
    from fulfillment.models import ReconciliationRun

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
    "reconciliation": check_reconciliation,
}
NEEDS_DATABASE = {"migrations", "workers", "queue", "reconciliation"}


def report() -> tuple[bool, dict[str, Any]]:
    results: dict[str, Any] = {}
    for name, check in CHECKS.items():
        if name in NEEDS_DATABASE and not results.get("database", {}).get("ok"):
            results[name] = {"ok": False, "error": "database unavailable"}
            continue
        results[name] = check()
    healthy = all(r["ok"] for r in results.values())
    return healthy, results
