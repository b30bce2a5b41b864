import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema
from ninja.errors import HttpError, ValidationError
from ninja.responses import NinjaJSONEncoder
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from fulfillment import backpressure, metrics
from fulfillment.api.common import actor_of, caller_of, expected_version
from fulfillment.hardening import StrictJSONError, strict_loads
from fulfillment.schemas import ErrorOut
from fulfillment.schemas.common import QueryBool, QueryDateTime, Text
from fulfillment.schemas.orders import (
    BulkOrderIn,
    BulkOrderOut,
    CancelIn,
    HistoryEventOut,
    OrderIn,
    OrderOut,
    OrderPageOut,
    OrderStatisticsOut,
    Priority,
    StatusName,
    TrackingOut,
)
from fulfillment.selectors import orders as selectors
from fulfillment.selectors.orders import CURSOR_PATTERN
from fulfillment.services import idempotency
from fulfillment.services.bulk_intake import order_bulk_create
from fulfillment.services.intake import order_create
from fulfillment.services.receipts import BulkResult, OrderDraft, OrderReceipt
from fulfillment.services.stages import order_cancel

router = Router(tags=["orders"])
ERRORS = {400: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}
IDEMPOTENCY_HEADER = "Idempotency-Key"


def _maybe_idempotent(
    request: HttpRequest, scope: str, payload: Schema, run: Callable[[], tuple[int, Any]]
) -> HttpResponse:
    """Without the header: run directly (no lookup on the hot path). With it: run at most once.

    ``run`` returns ``(status, data)`` where data is already in the documented response shape;
    it is encoded the way ninja encodes responses, skipping a second validation pass.
    """
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        status, data = run()
        return _json_response(status, json.dumps(data, cls=NinjaJSONEncoder))
    status, body = idempotency.idempotent_call(
        owner=caller_of(request),
        scope=scope,
        key=key,
        request_hash=idempotency.request_fingerprint(payload.model_dump(mode="json")),
        run=lambda: _stored(*run()),
    )
    return _json_response(status, json.dumps(body))


def _stored(status: int, data: Any) -> tuple[int, Any]:
    return status, json.loads(json.dumps(data, cls=NinjaJSONEncoder))


def _json_response(status: int, content: str) -> HttpResponse:
    return HttpResponse(content, status=status, content_type="application/json")


def _optional_body(request: HttpRequest, schema: type[CancelIn]) -> CancelIn:
    """The body is optional (``POST .../cancel/`` with nothing is fine); when present it is checked."""
    if request.content_type != "application/json" or not request.body.strip():
        return schema()
    try:
        return schema.model_validate(strict_loads(request.body))
    except StrictJSONError as exc:
        raise HttpError(400, str(exc)) from exc
    except PydanticValidationError as exc:
        raise ValidationError([dict(e) for e in exc.errors(include_url=False)]) from exc


# ----- conversions between the schemas and the intake services ---------------------------------


def draft_of(payload: OrderIn) -> OrderDraft:
    return OrderDraft(
        customer_name=payload.customer_name,
        customer_email=payload.customer_email,
        priority=payload.priority.value,
        items=[(i.product_id, i.quantity) for i in payload.items],
        shipping_address=payload.shipping_address,
        shipping_city=payload.shipping_city,
        shipping_postal_code=payload.shipping_postal_code,
        shipping_country=payload.shipping_country,
    )


def bulk_out(result: BulkResult) -> dict[str, Any]:
    return {
        "atomic": result.atomic,
        "created": result.created,
        "rejected": result.rejected,
        "results": [
            {
                "index": r.index,
                "ok": r.order is not None,
                "order_id": r.order.order_id if r.order else None,
                "total_amount": r.order.total_amount if r.order else None,
                "error": None
                if r.error is None
                else {"code": r.error.code, "message": r.error.message, "details": r.error.details},
            }
            for r in result.results
        ],
    }


def receipt_json(r: OrderReceipt) -> dict[str, Any]:
    """``OrderOut`` of a just-created order, built directly (the hot path skips re-validation;
    a test checks it equals ``GET /orders/{order_id}/``)."""
    return {
        "order_id": r.order_id,
        "status": r.status,
        "version": r.version,
        "priority": r.priority,
        "customer_name": r.customer_name,
        "customer_email": r.customer_email,
        "total_amount": r.total_amount,
        "shipping_address": r.shipping_address,
        "shipping_city": r.shipping_city,
        "shipping_postal_code": r.shipping_postal_code,
        "shipping_country": r.shipping_country,
        "tracking_number": "",
        "failure_reason": "",
        "created_at": r.created_at,
        "status_changed_at": r.status_changed_at,
        "processing_at": None,
        "shipped_at": None,
        "delivered_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "lines": [
            {
                "product_id": ln.product_id,
                "sku": ln.sku,
                "name": ln.name,
                "quantity": ln.quantity,
                "unit_price": ln.unit_price,
            }
            for ln in r.lines
        ],
    }


@router.post("/", response={201: OrderOut, **ERRORS})
def create_order(request: HttpRequest, payload: OrderIn) -> HttpResponse:
    def run() -> tuple[int, Any]:
        backpressure.refuse_intake_if_behind()
        receipt = order_create(
            draft=draft_of(payload),
            actor=actor_of(request),
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
        )
        metrics.order_accepted("single")
        return 201, receipt_json(receipt)

    return _maybe_idempotent(request, "orders.create", payload, run)


@router.post("/bulk_create/", response={200: BulkOrderOut, 201: BulkOrderOut, **ERRORS})
def bulk_create_orders(request: HttpRequest, payload: BulkOrderIn) -> HttpResponse:
    def run() -> tuple[int, Any]:
        backpressure.refuse_intake_if_behind()
        result = order_bulk_create(
            drafts=[draft_of(o) for o in payload.orders],
            atomic=payload.atomic,
            actor=actor_of(request),
        )
        metrics.order_accepted("bulk", result.created)
        for item in result.results:
            if item.error is not None:
                metrics.order_rejected(metrics.rejection_reason(item.error.code))
        return (201 if result.rejected == 0 else 200), bulk_out(result)

    return _maybe_idempotent(request, "orders.bulk_create", payload, run)


class OrderFilters(Schema):
    status: StatusName | None = None
    priority: Priority | None = None
    customer_email: Text | None = Field(default=None, max_length=254)
    created_after: QueryDateTime | None = None
    created_before: QueryDateTime | None = None
    stale_only: QueryBool = False
    cursor: str | None = Field(
        default=None,
        max_length=200,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page",
    )
    limit: int = Field(default=settings.PAGE_SIZE_DEFAULT, ge=1, le=settings.PAGE_SIZE_MAX)


@router.get("/", response={200: OrderPageOut, 422: ErrorOut})
def list_orders(request: HttpRequest, filters: Query[OrderFilters]) -> dict[str, Any]:
    rows, next_cursor = selectors.order_list(**filters.dict())
    return {"items": rows, "next_cursor": next_cursor, "limit": filters.limit}


@router.get("/statistics/", response=OrderStatisticsOut)
def order_statistics(request: HttpRequest) -> dict[str, Any]:
    return selectors.order_statistics()


@router.get("/{uuid:order_id}/", response={200: OrderOut, 404: ErrorOut})
def get_order(request: HttpRequest, order_id: UUID) -> Any:
    return selectors.order_get(order_id=order_id)


@router.post(
    "/{uuid:order_id}/cancel/",
    response={200: OrderOut, **ERRORS},
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": CancelIn.model_json_schema()}},
        }
    },
)
def cancel_order(request: HttpRequest, order_id: UUID) -> Any:
    payload = _optional_body(request, CancelIn)
    order_cancel(
        order_id=order_id,
        actor=actor_of(request),
        expected_version=expected_version(request, payload.expected_version),
        reason=payload.reason,
    )
    return selectors.order_get(order_id=order_id)


@router.get("/{uuid:order_id}/history/", response={200: list[HistoryEventOut], 404: ErrorOut})
def order_history(request: HttpRequest, order_id: UUID) -> Any:
    return selectors.order_history(order_id=order_id)


@router.get("/{uuid:order_id}/tracking/", response={200: TrackingOut, 404: ErrorOut})
def order_tracking(request: HttpRequest, order_id: UUID) -> Any:
    return selectors.order_tracking(order_id=order_id)
