"""Health endpoints (public): /health/ for monitoring, /health/live/ and /health/ready/ for balancers."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from fulfillment import health

HEALTH_REPORT_CACHE_KEY = "health:report"


@require_GET
def health_report(request: HttpRequest) -> JsonResponse:
    """The detailed report, shared by every caller for ``HEALTH_CACHE_SECONDS`` (public and not
    throttled: repeated calls cost one cache read and a ``SELECT 1``, not the checks). The
    database is checked on every call, so a cached report never hides a database that just
    went down: a failed check recomputes the report."""
    body = cache.get(HEALTH_REPORT_CACHE_KEY) if settings.HEALTH_CACHE_SECONDS else None
    if body is not None and not health.check_database()["ok"]:
        body = None
    if body is None:
        healthy, checks = health.report()
        failed = [name for name, r in checks.items() if not r["ok"]]
        body = {
            "status": "ok" if healthy else "unhealthy",
            "failed": failed,
            "checks": checks,
            "generated_at": timezone.now().isoformat(),
        }
        if settings.HEALTH_CACHE_SECONDS:
            cache.set(HEALTH_REPORT_CACHE_KEY, body, settings.HEALTH_CACHE_SECONDS)
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)


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
