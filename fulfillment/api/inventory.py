"""Inventory endpoints: stock levels, manual adjustments (optimistic concurrency), the ledger and
the cached summary. ``{product_id}`` is the product's id (each product has one stock level)."""

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema
from ninja.pagination import paginate
from pydantic import Field

from fulfillment.api.common import Pagination, ProductIdPath, actor_of, expected_version
from fulfillment.models import StockLevel, StockMovement
from fulfillment.schemas import ErrorOut
from fulfillment.schemas.common import QueryBool
from fulfillment.schemas.inventory import (
    AdjustIn,
    AdjustOut,
    InventoryOut,
    MovementOut,
    SummaryOut,
    Text,
)
from fulfillment.selectors import inventory as selectors
from fulfillment.services import inventory as services

router = Router(tags=["inventory"])
ERRORS = {404: ErrorOut, 409: ErrorOut, 422: ErrorOut}


class InventoryFilters(Schema):
    low_stock: QueryBool | None = None
    search: Text | None = Field(default=None, max_length=200)


class MovementFilters(Schema):
    kind: StockMovement.Kind | None = None


@router.get("/", response=list[InventoryOut])
@paginate(Pagination)
def list_inventory(request: HttpRequest, filters: Query[InventoryFilters]):  # type: ignore[no-untyped-def]
    return selectors.stock_list(low_stock=filters.low_stock, search=filters.search)


@router.get("/summary/", response=SummaryOut)
def inventory_summary(request: HttpRequest) -> dict:
    return selectors.inventory_summary()


@router.get("/{int:product_id}/", response={200: InventoryOut, 404: ErrorOut})
def get_inventory(
    request: HttpRequest, response: HttpResponse, product_id: ProductIdPath
) -> StockLevel:
    level = selectors.stock_get(product_id=product_id)
    response["ETag"] = f'"{level.version}"'  # send it back as If-Match when adjusting
    return level


@router.post("/{int:product_id}/adjust/", response={200: AdjustOut, **ERRORS})
def adjust_inventory(
    request: HttpRequest, response: HttpResponse, product_id: ProductIdPath, payload: AdjustIn
) -> dict:
    result = services.stock_apply_adjustment(
        product_id=product_id,
        kind=str(payload.kind),
        quantity_change=payload.quantity_change,
        set_to=payload.set_to,
        reason=payload.reason,
        actor=actor_of(request),
        expected_version=expected_version(request, payload.expected_version),
    )
    response["ETag"] = f'"{result.version}"'
    return {"stock": result, "movement": selectors.movement_get(movement_id=result.movement_id)}


@router.get("/{int:product_id}/transactions/", response={200: list[MovementOut], 404: ErrorOut})
@paginate(Pagination)
def list_transactions(  # type: ignore[no-untyped-def]
    request: HttpRequest, product_id: ProductIdPath, filters: Query[MovementFilters]
):
    return selectors.movement_list(product_id=product_id, kind=filters.kind)
