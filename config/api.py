"""The NinjaAPI at /api/v1/ and its exception handlers: one error shape for every failure.

{"error": {"code": "insufficient_stock", "message": "...", "details": {...}}}
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from django.core.exceptions import RequestDataTooBig
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
from ninja.openapi.schema import OpenAPISchema

from fulfillment import errors
from fulfillment.auth import API_AUTH
from fulfillment.hardening import StrictJSONError, StrictJSONParser
from fulfillment.schemas import ErrorOut
from fulfillment.throttling import API_THROTTLES

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

_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
# Documented on every operation (see FulfillmentAPI.get_openapi_schema), so clients, the docs and
# the schemathesis run know every status an operation can answer with.
COMMON_RESPONSES = {
    401: "Missing, invalid or revoked API key",
    403: "The API key's role may not call this operation",
    429: "Too many requests for this key or client; retry after `Retry-After` seconds",
    503: "A dependency (the database) is unavailable, or intake refuses orders while the "
    "pipeline is behind; retry later (after `Retry-After` seconds when given)",
}
BODY_RESPONSES = {
    400: "Malformed or non-strict JSON body",
    413: "Request body too large",
    422: "Invalid input",
}


class FulfillmentAPI(NinjaAPI):
    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        error_schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(error_schema.pop("$defs", {}))
        components.setdefault("ErrorOut", error_schema)
        for operations in schema["paths"].values():
            for operation in operations.values():
                _document_errors(operation)
        return schema


def _document_errors(operation: dict[str, Any]) -> None:
    params = operation.get("parameters", [])
    extra = dict(COMMON_RESPONSES)
    if "requestBody" in operation:
        extra.update(BODY_RESPONSES)
    if params:
        extra[422] = BODY_RESPONSES[422]
    if any(p.get("in") == "path" for p in params):
        extra[404] = "Not found"
    responses = operation.setdefault("responses", {})
    for status, description in extra.items():
        if str(status) in responses:
            continue
        response = responses.setdefault(
            status,
            {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}},
        )
        if status == 429:
            response.setdefault("headers", {})["Retry-After"] = {
                "description": "Seconds to wait before retrying",
                "schema": {"type": "integer"},
            }


api = FulfillmentAPI(
    title="Order fulfillment API",
    version="1.0.0",
    description="Products, stock, orders and their fulfillment pipeline. Errors share one shape: "
    '`{"error": {"code", "message", "details"}}`. Every operation needs an API key '
    "(`Authorization: Bearer <key>` or `X-API-Key: <key>`; roles viewer < operator < admin), "
    "except reads when the server allows anonymous reads.",
    docs_url="/docs",
    urls_namespace="api",
    auth=API_AUTH,
    throttle=API_THROTTLES,
    parser=StrictJSONParser(),
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
    response = error_response(request, _status_for(exc), exc.code, exc.message, exc.details)
    if "retry_after" in exc.details:
        response["Retry-After"] = str(exc.details["retry_after"])
    return response


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
    details: dict[str, Any] = {}
    if isinstance(exc, AuthenticationError) and message == "Unauthorized":
        # No authentication method accepted the request (ninja's default error).
        message = "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>"
    if isinstance(exc.__cause__, StrictJSONError):
        message = str(exc.__cause__)
    elif status == 400 and ("JSON" in message.upper() or "parse request body" in message):
        message = "request body is not valid JSON"
    if isinstance(exc, Throttled):
        message = "too many requests, retry later"
        if exc.wait:
            details["retry_after"] = max(1, math.ceil(exc.wait))
        if limit := getattr(request, "throttle_limit", None):
            details["limit"] = limit
    response = error_response(
        request, status, CODE_BY_STATUS.get(status, "error"), message, details
    )
    if "retry_after" in details:
        response["Retry-After"] = str(details["retry_after"])
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(RequestDataTooBig)
def on_body_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return error_response(request, 413, "payload_too_large", "request body is too large")


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
