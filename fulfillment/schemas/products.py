"""Product schemas."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from ninja import Schema
from pydantic import Field

from fulfillment.rules import MAX_UNITS
from fulfillment.schemas.common import StrictIn

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


class ProductIn(StrictIn):
    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    is_active: bool = True
    initial_stock: int = Field(default=0, ge=0, le=MAX_UNITS)
    low_stock_threshold: int | None = Field(
        default=None,
        ge=0,
        le=MAX_UNITS,
        description="default: the DEFAULT_LOW_STOCK_THRESHOLD setting (10 unless configured)",
    )


class ProductUpdateIn(StrictIn):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    price: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=2)
    is_active: bool | None = None
    low_stock_threshold: int | None = Field(default=None, ge=0, le=MAX_UNITS)
    expected_version: int | None = Field(default=None, ge=1)
