"""Order schemas (seed-compatible request bodies)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from django.conf import settings
from ninja import Schema
from pydantic import Field, field_validator

from fulfillment.schemas.common import ErrorBody, StrictIn
from fulfillment.services.orders import BulkResult, OrderDraft, OrderReceipt

EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
Priority = Literal["low", "normal", "high"]
StatusName = Literal["pending", "processing", "shipped", "delivered", "cancelled", "failed"]


class OrderItemIn(StrictIn):
    product_id: int = Field(ge=1, le=2**63 - 1)
    quantity: int = Field(ge=1, le=1_000_000)


class OrderIn(StrictIn):
    customer_name: str = Field(min_length=1, max_length=200)
    customer_email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)
    priority: Priority = "normal"
    items: list[OrderItemIn] = Field(min_length=1)
    shipping_address: str = Field(default="", max_length=255)
    shipping_city: str = Field(default="", max_length=100)
    shipping_postal_code: str = Field(default="", max_length=20)
    shipping_country: str = Field(default="", max_length=2)

    @field_validator("items")
    @classmethod
    def _lines(cls, items: list[OrderItemIn]) -> list[OrderItemIn]:
        if len(items) > settings.MAX_ORDER_LINES:
            raise ValueError(f"at most {settings.MAX_ORDER_LINES} lines per order")
        pids = [i.product_id for i in items]
        if len(set(pids)) != len(pids):
            raise ValueError("each product may appear only once per order")
        return items


class BulkOrderIn(StrictIn):
    orders: list[OrderIn] = Field(min_length=1)
    atomic: bool = True

    @field_validator("orders")
    @classmethod
    def _count(cls, orders: list[OrderIn]) -> list[OrderIn]:
        if len(orders) > settings.BULK_MAX_ORDERS:
            raise ValueError(f"at most {settings.BULK_MAX_ORDERS} orders per request")
        return orders


class CancelIn(StrictIn):
    expected_version: int | None = Field(default=None, ge=1)
    reason: str = Field(default="", max_length=200)


class OrderLineOut(Schema):
    product_id: int
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


class OrderSummaryOut(Schema):
    """A list row: no lines, so a page is one query."""

    order_id: UUID
    status: str
    version: int
    priority: str
    customer_name: str
    customer_email: str
    total_amount: Decimal
    created_at: datetime
    status_changed_at: datetime


class OrderOut(OrderSummaryOut):
    """One order with its lines and stage timestamps."""

    shipping_address: str
    shipping_city: str
    shipping_postal_code: str
    shipping_country: str
    tracking_number: str = ""
    failure_reason: str = ""
    processing_at: datetime | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    cancelled_at: datetime | None = None
    failed_at: datetime | None = None
    lines: list[OrderLineOut]

    @staticmethod
    def resolve_lines(obj: Any) -> Any:
        # Orders read by the selector carry flat line views (with sku/name); receipts from
        # intake carry them as ``lines`` already.
        view = getattr(obj, "lines_view", None)
        return view if view is not None else obj.lines


class OrderPageOut(Schema):
    items: list[OrderSummaryOut]
    next_cursor: str | None
    limit: int


class BulkOrderResultOut(Schema):
    index: int
    ok: bool
    order_id: UUID | None = None
    total_amount: Decimal | None = None
    error: ErrorBody | None = None


class BulkOrderOut(Schema):
    atomic: bool
    created: int
    rejected: int
    results: list[BulkOrderResultOut]


class HistoryEventOut(Schema):
    model: str
    event: str
    at: datetime
    object_id: int
    data: dict[str, Any]
    context: dict[str, Any] | None


class TrackingStepOut(Schema):
    status: str
    at: datetime


class TrackingOut(Schema):
    order_id: UUID
    status: str
    tracking_number: str
    failure_reason: str
    timeline: list[TrackingStepOut]


class StageTimesOut(Schema):
    pending_to_processing: float | None
    processing_to_shipped: float | None
    shipped_to_delivered: float | None


class OrderStatisticsOut(Schema):
    total_orders: int
    by_status: dict[str, int]
    orders_last_24h: int
    revenue_last_24h: Decimal
    completion_rate: float
    failure_rate: float
    average_stage_seconds: StageTimesOut
    stale_orders: int
    generated_at: datetime


def draft_of(payload: OrderIn) -> OrderDraft:
    return OrderDraft(
        customer_name=payload.customer_name,
        customer_email=payload.customer_email,
        priority=payload.priority,
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
                "error": r.error,
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
