"""The NinjaAPI at /api/v1/ and its exception handlers: one error shape for every failure.

{"error": {"code": "insufficient_stock", "message": "...", "details": {...}}}
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import (
    AuthenticationError,
    AuthorizationError,
    HttpError,
    Throttled,
    ValidationError,
)

from fulfillment import errors

logger = logging.getLogger("fulfillment.api")

STATUS_BY_CODE: dict[type[errors.FulfillmentError], int] = {
    errors.NotFound: 404,
    errors.ValidationFailed: 422,
    errors.Conflict: 409,
    errors.ServiceUnavailable: 503,
}
CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "validation_error",
    429: "throttled",
    503: "service_unavailable",
}

api = NinjaAPI(
    title="Order fulfillment API",
    version="1.0.0",
    description="Products, stock, orders and their fulfillment pipeline. Errors share one shape: "
    '`{"error": {"code", "message", "details"}}`.',
    docs_url="/docs",
    urls_namespace="api",
)


def error_response(
    request: HttpRequest,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
) -> HttpResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return HttpResponse(
        json.dumps(body, default=str), status=status, content_type="application/json"
    )


def _status_for(exc: errors.FulfillmentError) -> int:
    for cls in type(exc).__mro__:
        if issubclass(cls, errors.FulfillmentError) and cls in STATUS_BY_CODE:
            return STATUS_BY_CODE[cls]
    return 400


@api.exception_handler(errors.FulfillmentError)
def on_domain_error(request: HttpRequest, exc: errors.FulfillmentError) -> HttpResponse:
    return error_response(request, _status_for(exc), exc.code, exc.message, exc.details)


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems = [
        {"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors
    ]
    first = problems[0] if problems else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"][1:] or first["loc"])
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return error_response(request, 422, "validation_error", message, {"errors": problems})


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    status = exc.status_code
    message = str(exc)
    if status == 400 and "JSON" in message.upper():
        message = "request body is not valid JSON"
    response = error_response(request, status, CODE_BY_STATUS.get(status, "error"), message)
    if isinstance(exc, Throttled) and exc.wait:
        response["Retry-After"] = str(int(exc.wait))
    return response


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, 404, "not_found", str(exc) or "not found")


@api.exception_handler(DatabaseError)
def on_database_error(request: HttpRequest, exc: DatabaseError) -> HttpResponse:
    if isinstance(exc, DataError):
        # Values the database cannot store (NUL characters, out-of-range numbers) are bad input.
        return error_response(request, 422, "validation_error", "a value cannot be stored as given")
    if isinstance(exc, OperationalError | InterfaceError):
        logger.warning("database unavailable: %s", exc)
        return error_response(
            request, 503, "database_unavailable", "the database is unavailable, retry later"
        )
    logger.exception("database error")
    return error_response(request, 500, "internal_error", "internal error")


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(request, 500, "internal_error", "internal error")


__all__ = ["api", "error_response", "AuthenticationError", "AuthorizationError"]


def _register_routers() -> None:
    from fulfillment.api import inventory, orders, pipeline, products

    api.add_router("/products/", products.router)
    api.add_router("/inventory/", inventory.router)
    # Before the orders router: /orders/check_stale/ must win over /orders/{order_id}/.
    api.add_router("/orders/", pipeline.stale_router)
    api.add_router("/orders/", orders.router)
    api.add_router("/reports/", pipeline.reports_router)


_register_routers()
