"""Health endpoints (public): /health/ for monitoring, /health/live/ and /health/ready/ for balancers."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from fulfillment import health


@require_GET
def health_report(request: HttpRequest) -> JsonResponse:
    healthy, checks = health.report()
    failed = [name for name, r in checks.items() if not r["ok"]]
    body = {"status": "ok" if healthy else "unhealthy", "failed": failed, "checks": checks}
    return JsonResponse(body, status=200 if healthy else 503)


@require_GET
def live(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    db = health.check_database()
    return JsonResponse(
        {"status": "ok" if db["ok"] else "unavailable", "database": db},
        status=200 if db["ok"] else 503,
    )
