"""Inventory schemas: stock levels, ledger rows, adjustments, summary, stock history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from ninja import Schema
from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from fulfillment import rules
from fulfillment.models import StockLevel, StockMovement
from fulfillment.rules import ADDING_KINDS, MAX_UNITS, AdjustKind
from fulfillment.schemas.common import INT32_MAX, JsonInt, RequiredText, StrictSchema, Text, Version

__all__ = ["Text"]  # also the type of the inventory list's ``search``


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


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise ValueError("must not be null: leave the field out")
    return value


def _adjust_json_schema(schema: dict[str, Any]) -> None:
    """The exactly-one-of rule, and the kinds each alternative allows, in JSON Schema."""
    props = schema["properties"]
    props["quantity_change"] = {
        "type": "integer",
        "minimum": -MAX_UNITS,
        "maximum": MAX_UNITS,
        "not": {"const": 0},
        "description": "signed change of on_hand (kinds adjust, receive, return)",
    }
    props["set_to"] = {
        "type": "integer",
        "minimum": 0,
        "maximum": MAX_UNITS,
        "description": "the counted on_hand (kind count)",
    }
    props["kind"] = {"type": "string", "enum": list(AdjustKind.values)}
    props["expected_version"] = {"type": "integer", "minimum": 1, "maximum": INT32_MAX}
    schema["oneOf"] = [
        {
            "title": "count",
            "required": ["set_to"],
            "not": {"required": ["quantity_change"]},
            "properties": {"kind": {"const": "count"}},
        },
        {
            "title": "adjust",
            "required": ["quantity_change"],
            "not": {"required": ["set_to"]},
            "properties": {"kind": {"const": "adjust"}},
        },
        {
            "title": "receive or return",
            "required": ["quantity_change", "kind"],
            "not": {"required": ["set_to"]},
            "properties": {
                "kind": {"enum": [k.value for k in ADDING_KINDS]},
                "quantity_change": {"minimum": 1},
            },
        },
    ]
    schema["examples"] = [
        {"quantity_change": -2, "reason": "damaged in aisle 4"},
        {"quantity_change": 50, "kind": "receive", "reason": "PO-1234"},
        {"set_to": 120, "reason": "cycle count"},
    ]


NotNull = BeforeValidator(_refuse_null)


class AdjustIn(StrictSchema):
    """Exactly one of ``quantity_change`` (signed) and ``set_to`` (absolute count)."""

    model_config = ConfigDict(json_schema_extra=_adjust_json_schema)

    quantity_change: Annotated[JsonInt | None, NotNull] = Field(
        default=None, ge=-MAX_UNITS, le=MAX_UNITS
    )
    set_to: Annotated[JsonInt | None, NotNull] = Field(default=None, ge=0, le=MAX_UNITS)
    kind: Annotated[AdjustKind | None, NotNull] = None
    reason: RequiredText = Field(max_length=255)
    expected_version: Annotated[Version | None, NotNull] = None

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
