"""The NinjaAPI at /api/v1/ and its exception handlers: one error shape for every failure.

{"error": {"code": "insufficient_stock", "message": "...", "details": {...}}}

The schema hook (``FulfillmentAPI.get_openapi_schema``) is the one place that declares, for every
operation of every router: its security as the server enforces it (reads also accept no key when
``ALLOW_ANONYMOUS_READS`` is on), the role it needs (``x-required-role``), the common error
responses with examples (429 with ``Retry-After``), and the links from created resources. A router
declares only its success responses.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from ninja import NinjaAPI
from ninja.errors import (
    AuthenticationError,
    AuthorizationError,
    HttpError,
    Throttled,
    ValidationError,
)
from ninja.openapi.schema import OpenAPISchema

from fulfillment import errors, metrics
from fulfillment.auth import API_AUTH, VIEWER, required_role
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
# the fuzzer know every status an operation can answer with.
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


def _example(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"value": {"error": {"code": code, "message": message, "details": details}}}


# Examples of each status's body (several for the 409 variants).
ERROR_EXAMPLES: dict[int, dict[str, dict[str, Any]]] = {
    400: {"bad_request": _example("bad_request", "request body is not valid JSON")},
    401: {
        "unauthorized": _example(
            "unauthorized",
            "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>",
        )
    },
    403: {
        "forbidden": _example(
            "forbidden", "API key 'reader' has role 'viewer'; POST /api/v1/orders/ needs 'operator'"
        )
    },
    404: {"not_found": _example("not_found", "order 5b0e3c52-... not found")},
    409: {
        "insufficient_stock": _example(
            "insufficient_stock",
            "not enough stock for 1 line(s)",
            shortages=[{"product_id": 3, "requested": 5, "available": 2}],
        ),
        "product_unavailable": _example(
            "product_unavailable",
            "product(s) 7 do not exist or are not active",
            product_ids=[7],
        ),
        "version_conflict": _example(
            "version_conflict",
            "order 5b0e3c52-... is at version 2, not the expected 1",
            resource="order",
            id="5b0e3c52-...",
            expected_version=1,
            current_version=2,
        ),
        "invalid_transition": _example(
            "invalid_transition",
            "order 5b0e3c52-... cannot go from shipped to cancelled",
            order_id="5b0e3c52-...",
            current="shipped",
            target="cancelled",
        ),
        "invalid_stock_change": _example(
            "invalid_stock_change", "on_hand would fall below reserved"
        ),
        "idempotency_mismatch": _example(
            "idempotency_mismatch", "Idempotency-Key was used with a different body"
        ),
    },
    413: {"payload_too_large": _example("payload_too_large", "request body is too large")},
    422: {
        "validation_error": _example(
            "validation_error",
            "items: each product may appear only once per order",
            errors=[
                {
                    "loc": ["body", "payload", "items"],
                    "msg": "Value error, each product may appear only once per order",
                    "type": "value_error",
                }
            ],
        )
    },
    429: {
        "throttled": _example(
            "throttled", "too many requests, retry later", retry_after=12, limit="1200/min"
        )
    },
    503: {
        "database_unavailable": _example(
            "database_unavailable", "the database is unavailable, retry later"
        )
    },
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
        root = reverse("api:api-root")
        for path, operations in schema["paths"].items():
            below_root = re.sub(r"\{[^}]*\}", "x", path.removeprefix(root))
            for method, operation in operations.items():
                _document_errors(operation)
                _document_security(operation, method.upper(), below_root)
                _document_links(operation, path.removeprefix(root))
        return schema


def _document_security(operation: dict[str, Any], method: str, path: str) -> None:
    """The operation's security as the server enforces it: an operation that anonymous reads
    cover lists the empty requirement ``{}`` (a key is optional) when they are on."""
    security = operation.get("security")
    if not security:
        return
    if settings.ALLOW_ANONYMOUS_READS and required_role(method, path) == VIEWER:
        operation["security"] = [{}, *security]
    operation["x-required-role"] = required_role(method, path)


# Links for clients and the fuzzer's stateful phase: from a created product or order to the
# operations on it.
_PRODUCT_ID = {"product_id": "$response.body#/id"}
_ORDER_ID = {"order_id": "$response.body#/order_id"}
LINKS: dict[str, dict[str, dict[str, Any]]] = {
    "products/": {
        "GetProduct": {
            "operationId": "fulfillment_api_products_get_product",
            "parameters": _PRODUCT_ID,
        },
        "UpdateProduct": {
            "operationId": "fulfillment_api_products_update_product",
            "parameters": _PRODUCT_ID,
        },
        "StockHistory": {
            "operationId": "fulfillment_api_products_stock_history",
            "parameters": _PRODUCT_ID,
        },
        "GetInventory": {
            "operationId": "fulfillment_api_inventory_get_inventory",
            "parameters": _PRODUCT_ID,
        },
        "AdjustInventory": {
            "operationId": "fulfillment_api_inventory_adjust_inventory",
            "parameters": _PRODUCT_ID,
        },
        "Transactions": {
            "operationId": "fulfillment_api_inventory_list_transactions",
            "parameters": _PRODUCT_ID,
        },
    },
    "orders/": {
        "GetOrder": {"operationId": "fulfillment_api_orders_get_order", "parameters": _ORDER_ID},
        "CancelOrder": {
            "operationId": "fulfillment_api_orders_cancel_order",
            "parameters": _ORDER_ID,
        },
        "OrderHistory": {
            "operationId": "fulfillment_api_orders_order_history",
            "parameters": _ORDER_ID,
        },
        "OrderTracking": {
            "operationId": "fulfillment_api_orders_order_tracking",
            "parameters": _ORDER_ID,
        },
    },
}


def _document_links(operation: dict[str, Any], path: str) -> None:
    links = LINKS.get(path)
    if links is None:
        return
    responses = operation.get("responses", {})
    created = responses.get(201) or responses.get("201")
    if created is not None:
        created["links"] = links


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
        if status in responses or str(status) in responses:
            continue
        responses[status] = {
            "description": description,
            "content": {"application/json": {"schema": _ERROR_REF}},
        }
    for status, response in responses.items():
        code = int(status)
        content = response.get("content", {}).get("application/json")
        if code >= 400 and content is not None:
            content["examples"] = ERROR_EXAMPLES.get(code, {})
        if code == 429:
            response.setdefault("headers", {})["Retry-After"] = {
                "description": "Seconds to wait before retrying",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
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
    metrics.intake_rejected(request, code)
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
    from fulfillment.api import analytics, events, inventory, orders, pipeline, products, webhooks

    api.add_router("/products/", products.router)
    api.add_router("/inventory/", inventory.router)
    # Before the orders router: /orders/check_stale/ must win over /orders/{order_id}/.
    api.add_router("/orders/", pipeline.stale_router)
    api.add_router("/orders/", orders.router)
    api.add_router("/reports/", pipeline.reports_router)
    api.add_router("/analytics/", analytics.router)
    api.add_router("/events/", events.router)
    api.add_router("/webhooks/", webhooks.router)


_register_routers()
