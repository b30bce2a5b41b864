"""Request hardening: strict JSON parsing, a body size limit, JSON 404/500 pages for the API.

The parser is the NinjaAPI's ``parser=``; the middleware and the handlers are wired in settings
and ``config/urls.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja.parser import Parser


class StrictJSONError(ValueError):
    """A body that ``json.loads`` would accept but this API refuses; the message is for clients."""


def _reject_constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise StrictJSONError(f"duplicate key {key!r} in JSON object")
        result[key] = value
    return result


def _finite_float(text: str) -> float | int:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise StrictJSONError(f"number {text} is out of range")
    # JSON Schema's integer is any number without a fractional part: 3.0 is the integer 3.
    return int(value) if value.is_integer() else value


def strict_loads(body: bytes | str) -> Any:
    """``json.loads`` that refuses duplicate keys, NaN/Infinity, overflowing numbers, bad UTF-8."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrictJSONError("request body is not valid UTF-8") from exc
    try:
        return json.loads(
            body,
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except RecursionError as exc:
        raise StrictJSONError("JSON nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"request body is not valid JSON ({exc.msg})") from exc


class StrictJSONParser(Parser):
    """Request bodies are a JSON object (or an array, for list endpoints), never a bare scalar.

    ninja wraps any exception raised here in ``HttpError(400)``; ``config.api`` turns a
    ``StrictJSONError`` cause into a ``bad_request`` whose message says what was wrong.
    A body of the wrong container type (an array where an object is expected) reaches the
    schema and is a 422 ``validation_error`` like any other invalid field.
    """

    def parse_body(self, request: HttpRequest) -> Any:
        data = strict_loads(request.body)
        if not isinstance(data, dict | list):
            raise StrictJSONError("request body must be a JSON object")
        return data


def _error(status: int, code: str, message: str) -> HttpResponse:
    body = {"error": {"code": code, "message": message, "details": {}}}
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


# The error shape for views outside the NinjaAPI (``/metrics``).
error_json = _error


class BodySizeLimitMiddleware:
    """413 before any body is read when ``Content-Length`` exceeds ``DATA_UPLOAD_MAX_MEMORY_SIZE``.

    Django itself enforces the same limit when a body without a length (chunked) is read; the API
    maps that ``RequestDataTooBig`` to the same 413.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(400, "bad_request", "invalid Content-Length header")
        if limit is not None and length > limit:
            return _error(413, "payload_too_large", f"request body is larger than {limit} bytes")
        return self.get_response(request)


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: the error shape under /api/ (e.g. a path parameter of the wrong type)."""
    if _is_api(request):
        return _error(404, "not_found", f"no such endpoint: {request.path}")
    from django.views.defaults import page_not_found

    return page_not_found(request, exception or Exception("not found"))


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: never a stack trace, and the error shape under /api/."""
    if _is_api(request):
        return _error(500, "internal_error", "internal error")
    from django.views.defaults import server_error as default_server_error

    return default_server_error(request)
