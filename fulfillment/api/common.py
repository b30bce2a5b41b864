"""Helpers shared by the routers."""

from __future__ import annotations

from django.http import HttpRequest

from fulfillment.audit import actor_of, caller_of
from fulfillment.errors import ValidationFailed

__all__ = ["actor_of", "caller_of", "expected_version"]


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
