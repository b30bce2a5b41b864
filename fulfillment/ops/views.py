"""Views of the operations page. Staff only, by Django session (the admin's login): anonymous
users are sent to the admin login, the JSON endpoint answers 403 to non-staff sessions."""

from __future__ import annotations

from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from fulfillment.selectors.ops import ops_snapshot


@require_GET
@never_cache
@staff_member_required
def ops_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "ops/index.html",
        {
            "title": "Operations",
            "data_url": reverse("ops-data"),
            "refresh_ms": settings.OPS_REFRESH_SECONDS * 1000,
        },
    )


@require_GET
@never_cache
def ops_data(request: HttpRequest) -> JsonResponse:
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        body = {"error": {"code": "forbidden", "message": "staff only", "details": {}}}
        return JsonResponse(body, status=403)
    return JsonResponse(ops_snapshot())
