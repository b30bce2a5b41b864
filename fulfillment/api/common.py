"""Helpers shared by the routers."""

from __future__ import annotations

from django.http import HttpRequest

from fulfillment.audit import actor_of
from fulfillment.errors import ValidationFailed

__all__ = ["actor_of", "expected_version"]


def caller_of(request: HttpRequest) -> str:
    """Whose request it is, by a stable id (names can be reused): the scope of its idempotency
    keys. Anonymous callers share one scope."""
    key = getattr(request, "api_key", None)
    if key is not None:
        return f"api_key:{key.pk}"
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return "anonymous"


def expected_version(request: HttpRequest, body_value: int | None) -> int | None:
    """``If-Match`` (a bare or quoted integer) works as ``expected_version``."""
    if body_value is not None:
        return body_value
    raw = request.headers.get("If-Match", "").strip().strip('"').removeprefix('W/"').strip('"')
    if not raw:
        return None
    if not raw.isdigit():
        raise ValidationFailed("If-Match must be a version number", header="If-Match")
    return int(raw)
