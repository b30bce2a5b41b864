"""Schemas of the analytics endpoints: the window parameters and the figures."""

from __future__ import annotations

import datetime
from decimal import Decimal
from enum import StrEnum

from ninja import Schema
from pydantic import Field

from fulfillment.schemas.common import QueryDateTime, StrictIn

MAX_TOP = 100


class Bucket(StrEnum):
    HOUR = "hour"
    DAY = "day"


class WindowIn(StrictIn):
    """``from`` and ``to`` (ISO 8601 with a time zone) default to the last 7 days."""

    from_: QueryDateTime | None = Field(
        default=None,
        alias="from",
        description=(
            "window start (inclusive); default: to - 7 days. Must be before `to`, and the "
            "window at most ANALYTICS_MAX_SPAN_DAYS long (else 422)"
        ),
    )
    to: QueryDateTime | None = Field(
        default=None, description="window end (exclusive); default: now"
    )


class OrdersWindowIn(WindowIn):
    bucket: Bucket = Field(default=Bucket.HOUR, description="the series' step")


class TopWindowIn(WindowIn):
    limit: int = Field(default=10, ge=1, le=MAX_TOP, description="how many top rows")


class AnalyticsOut(Schema):
    start: datetime.datetime = Field(description="the window's start, aligned to its grain")
    end: datetime.datetime = Field(description="the window's end (exclusive), aligned")
    data_as_of: datetime.datetime | None = Field(
        description="when the rollups were last refreshed; later changes are not counted yet"
    )
    age_seconds: float | None


class OrderFiguresOut(Schema):
    accepted: int
    by_status: dict[str, int]
    revenue: Decimal
    average_order_value: Decimal | None


class OrderPointOut(OrderFiguresOut):
    start: datetime.datetime


class OrdersAnalyticsOut(AnalyticsOut):
    bucket: Bucket
    totals: OrderFiguresOut
    points: list[OrderPointOut]


class StageOut(Schema):
    stage: str
    entered: int
    completed: int
    failed: int
    failure_rate: float | None
    mean_seconds: float | None
    p50_seconds: float | None
    p95_seconds: float | None


class StagesAnalyticsOut(AnalyticsOut):
    stages: list[StageOut]


class ProductMovementOut(Schema):
    product_id: int
    sku: str
    name: str
    units_shipped: int
    on_hand: int
    available: int
    average_on_hand: float
    turnover: float | None
    days_of_cover: float | None


class InventoryAnalyticsOut(AnalyticsOut):
    products_moved: int
    units_shipped: int
    products: list[ProductMovementOut]


class TopCustomerOut(Schema):
    customer_email: str
    orders: int
    revenue: Decimal
    average_order_value: Decimal | None


class CustomersAnalyticsOut(AnalyticsOut):
    customers: int
    orders: int
    orders_per_customer: float | None
    repeat_customers: int
    repeat_customer_rate: float | None
    revenue: Decimal
    average_order_value: Decimal | None
    top_customers: list[TopCustomerOut]
