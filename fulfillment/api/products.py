from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from ninja.pagination import paginate
from pydantic import Field

from fulfillment.api.common import Pagination, ProductIdPath, actor_of, expected_version
from fulfillment.models import Product
from fulfillment.schemas import ErrorOut
from fulfillment.schemas.common import QueryBool, Text
from fulfillment.schemas.inventory import StockEventOut
from fulfillment.schemas.products import ProductIn, ProductOut, ProductUpdateIn
from fulfillment.selectors import products as selectors
from fulfillment.services import products as product_services

router = Router(tags=["products"])
ERRORS = {404: ErrorOut, 409: ErrorOut, 422: ErrorOut}


class ProductFilters(Schema):
    search: Text | None = Field(default=None, max_length=200)
    is_active: QueryBool | None = None


@router.get("/", response=list[ProductOut])
@paginate(Pagination)
def list_products(request: HttpRequest, filters: Query[ProductFilters]):  # type: ignore[no-untyped-def]
    return selectors.product_list(search=filters.search, active=filters.is_active)


@router.post("/", response={201: ProductOut, **ERRORS})
def create_product(request: HttpRequest, payload: ProductIn) -> Status:
    product = product_services.product_create(actor=actor_of(request), **payload.dict())
    return Status(201, selectors.product_get(product_id=product.pk))


class LowStockFilters(Schema):
    is_active: QueryBool | None = None


# Literal paths are registered before "/{int:product_id}/" (which only matches digits anyway).
@router.get("/low_stock/", response=list[ProductOut])
@paginate(Pagination)
def low_stock_products(request: HttpRequest, filters: Query[LowStockFilters]):  # type: ignore[no-untyped-def]
    return selectors.product_low_stock(active=filters.is_active)


@router.get("/{int:product_id}/stock_history/", response={200: list[StockEventOut], 404: ErrorOut})
@paginate(Pagination)
def stock_history(request: HttpRequest, product_id: ProductIdPath):  # type: ignore[no-untyped-def]
    return selectors.product_stock_history(product_id=product_id)


@router.get("/{int:product_id}/", response={200: ProductOut, 404: ErrorOut})
def get_product(request: HttpRequest, product_id: ProductIdPath) -> Product:
    return selectors.product_get(product_id=product_id)


@router.api_operation(["PATCH", "PUT"], "/{int:product_id}/", response={200: ProductOut, **ERRORS})
def update_product(
    request: HttpRequest, product_id: ProductIdPath, payload: ProductUpdateIn
) -> Product:
    data = payload.dict(exclude_unset=True)
    version = expected_version(request, data.pop("expected_version", None))
    product_services.product_update(
        product_id=product_id, actor=actor_of(request), expected_version=version, **data
    )
    return selectors.product_get(product_id=product_id)
