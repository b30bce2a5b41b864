"""Health checks: each check returns a dict with ``ok`` and details; never raises."""

from __future__ import annotations

import time
from typing import Any

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


CHECKS = {"database": check_database, "redis": check_redis, "migrations": check_migrations}


def report() -> tuple[bool, dict[str, Any]]:
    results: dict[str, Any] = {}
    for name, check in CHECKS.items():
        if name == "migrations" and not results.get("database", {}).get("ok"):
            results[name] = {"ok": False, "error": "database unavailable"}
            continue
        results[name] = check()
    healthy = all(r["ok"] for r in results.values())
    return healthy, results
