"""Order schemas (seed-compatible request bodies)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from ninja import Schema
from pydantic import Field, field_validator

from fulfillment import rules
from fulfillment.lifecycle import OrderPriority, OrderStatus
from fulfillment.schemas.common import (
    Bool,
    DbId,
    ErrorBody,
    JsonInt,
    RequiredText,
    StrictSchema,
    Text,
    Version,
)

EMAIL_PATTERN = r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$"
# The lifecycle's choices (OpenAPI lists their values).
Priority = OrderPriority
StatusName = OrderStatus


class OrderItemIn(StrictSchema):
    product_id: DbId
    quantity: JsonInt = Field(ge=1, le=rules.MAX_LINE_QUANTITY)


class OrderIn(StrictSchema):
    customer_name: RequiredText = Field(max_length=200)
    customer_email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)
    priority: Priority = OrderPriority.NORMAL
    items: list[OrderItemIn] = Field(
        min_length=1,
        max_length=settings.MAX_ORDER_LINES,
        description="each product at most once per order (a repeated `product_id` is 422)",
        json_schema_extra={"uniqueItems": True},
    )
    shipping_address: Text = Field(default="", max_length=255)
    shipping_city: Text = Field(default="", max_length=100)
    shipping_postal_code: Text = Field(default="", max_length=20)
    shipping_country: Text = Field(default="", max_length=2)

    @field_validator("items")
    @classmethod
    def _lines(cls, items: list[OrderItemIn]) -> list[OrderItemIn]:
        problem = rules.order_items_problem([(i.product_id, i.quantity) for i in items])
        if problem is not None:
            raise ValueError(problem[1])
        return items


class BulkOrderIn(StrictSchema):
    orders: list[OrderIn] = Field(min_length=1, max_length=settings.BULK_MAX_ORDERS)
    atomic: Bool = True

    @field_validator("orders")
    @classmethod
    def _count(cls, orders: list[OrderIn]) -> list[OrderIn]:
        if len(orders) > settings.BULK_MAX_ORDERS:
            raise ValueError(rules.too_many_orders())
        return orders


class CancelIn(StrictSchema):
    expected_version: Version | None = None
    reason: Text = Field(default="", max_length=200)


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
