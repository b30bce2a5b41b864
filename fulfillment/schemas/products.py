"""Product schemas."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ninja import Schema
from pydantic import Field

from fulfillment.rules import MAX_UNITS
from fulfillment.schemas.common import (
    Bool,
    JsonInt,
    Price,
    RequiredText,
    Sku,
    StrictSchema,
    Text,
    Version,
)

# ----- products --------------------------------------------------------------------------------


class StockOut(Schema):
    on_hand: int
    reserved: int
    available: int
    low_stock_threshold: int
    version: int
    is_low: bool


class ProductOut(Schema):
    id: int
    sku: str
    name: str
    description: str
    price: Decimal
    is_active: bool
    version: int
    created_at: datetime
    updated_at: datetime
    stock: StockOut | None = None


class ProductIn(StrictSchema):
    sku: Sku
    name: RequiredText = Field(max_length=200)
    description: Text = Field(default="", max_length=5000)
    price: Price
    is_active: Bool = True
    initial_stock: JsonInt = Field(default=0, ge=0, le=MAX_UNITS)
    low_stock_threshold: JsonInt | None = Field(
        default=None,
        ge=0,
        le=MAX_UNITS,
        description="default: the DEFAULT_LOW_STOCK_THRESHOLD setting (10 unless configured)",
    )


class ProductUpdateIn(StrictSchema):
    """Fields left out or ``null`` stay as they are."""

    name: RequiredText | None = Field(default=None, max_length=200)
    description: Text | None = Field(default=None, max_length=5000)
    price: Price | None = None
    is_active: Bool | None = None
    low_stock_threshold: JsonInt | None = Field(default=None, ge=0, le=MAX_UNITS)
    expected_version: Version | None = None
