"""Helpers shared by the routers."""

from __future__ import annotations

from typing import Annotated

from django.conf import settings
from django.http import HttpRequest
from ninja import Path, Schema
from ninja.pagination import LimitOffsetPagination
from pydantic import Field

from fulfillment.audit import actor_of, caller_of
from fulfillment.errors import ValidationFailed
from fulfillment.schemas.common import BIGINT_MAX, INT32_MAX, QueryOffset

__all__ = ["Pagination", "ProductIdPath", "actor_of", "caller_of", "expected_version"]

# A path id bounded like the bigint column it names (a larger number is 422, not a database error).
ProductIdPath = Annotated[int, Path(ge=1, le=BIGINT_MAX)]


class Pagination(LimitOffsetPagination):
    """``limit``/``offset`` pagination with an ``offset`` bounded like the database's."""

    class Input(Schema):
        limit: int = Field(settings.PAGE_SIZE_DEFAULT, ge=1, le=settings.PAGE_SIZE_MAX)
        offset: QueryOffset = 0


def expected_version(request: HttpRequest, body_value: int | None) -> int | None:
    """``If-Match`` (a bare or quoted integer) works as ``expected_version``."""
    if body_value is not None:
        return body_value
    raw = request.headers.get("If-Match", "").strip().strip('"').removeprefix('W/"').strip('"')
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= INT32_MAX:
        raise ValidationFailed("If-Match must be a version number", header="If-Match")
    return int(raw)
