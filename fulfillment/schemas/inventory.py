"""Inventory schemas: stock levels, ledger rows, adjustments, summary, stock history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from ninja import Schema
from pydantic import AfterValidator, Field, StrictInt, model_validator

from fulfillment import rules
from fulfillment.models import StockLevel, StockMovement
from fulfillment.rules import MAX_UNITS, AdjustKind
from fulfillment.schemas.common import StrictIn


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it here as a 422 instead of a DataError (500).
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


class InventoryOut(Schema):
    product_id: int
    sku: str
    name: str
    is_active: bool
    price: Decimal
    on_hand: int
    reserved: int
    available: int
    low_stock_threshold: int
    is_low: bool
    version: int
    updated_at: datetime

    @staticmethod
    def resolve_sku(obj: StockLevel) -> str:
        return obj.product.sku

    @staticmethod
    def resolve_name(obj: StockLevel) -> str:
        return obj.product.name

    @staticmethod
    def resolve_is_active(obj: StockLevel) -> bool:
        return obj.product.is_active

    @staticmethod
    def resolve_price(obj: StockLevel) -> Decimal:
        return obj.product.price


class MovementOut(Schema):
    id: int
    product_id: int
    kind: str
    on_hand_delta: int
    reserved_delta: int
    on_hand_after: int
    reserved_after: int
    order_id: UUID | None = None
    reason: str
    actor: str
    created_at: datetime

    @staticmethod
    def resolve_order_id(obj: StockMovement) -> UUID | None:
        return obj.order.order_id if obj.order_id is not None and obj.order else None


class AdjustIn(StrictIn):
    """Exactly one of ``quantity_change`` (signed) and ``set_to`` (absolute count)."""

    quantity_change: StrictInt | None = Field(default=None, ge=-MAX_UNITS, le=MAX_UNITS)
    set_to: StrictInt | None = Field(default=None, ge=0, le=MAX_UNITS)
    kind: AdjustKind | None = None
    reason: Text = Field(min_length=1, max_length=255)
    expected_version: StrictInt | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_change(self) -> AdjustIn:
        kind = rules.adjustment_kind(self.kind, self.set_to)
        problem = rules.adjustment_problem(kind, self.quantity_change, self.set_to)
        if problem is not None:
            raise ValueError(problem[1])
        self.kind = AdjustKind(kind)
        return self


class StockAfterOut(Schema):
    product_id: int
    on_hand: int
    reserved: int
    available: int
    version: int

    @staticmethod
    def resolve_available(obj: Any) -> int:
        return int(obj.on_hand - obj.reserved)


class AdjustOut(Schema):
    stock: StockAfterOut
    movement: MovementOut


class SummaryOut(Schema):
    product_count: int
    units_on_hand: int
    units_reserved: int
    units_available: int
    stock_value: Decimal
    low_stock_count: int
    generated_at: datetime
    cached: bool


class StockEventOut(Schema):
    """One pghistory event of a stock level: the row as it was after the change, and who/why."""

    id: int = Field(alias="pgh_id")
    created_at: datetime = Field(alias="pgh_created_at")
    label: str = Field(alias="pgh_label")
    on_hand: int
    reserved: int
    available: int
    low_stock_threshold: int
    version: int
    context: dict[str, Any] | None = None

    @staticmethod
    def resolve_available(obj: Any) -> int:
        return int(obj.on_hand - obj.reserved)

    @staticmethod
    def resolve_context(obj: Any) -> dict[str, Any] | None:
        return obj.pgh_context.metadata if obj.pgh_context_id and obj.pgh_context else None
