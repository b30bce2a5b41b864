"""Analytics endpoints (viewer role): orders, stages, inventory and customers over a window, read
from the rollups the worker maintains (``selectors.analytics``)."""

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from fulfillment.errors import ValidationFailed
from fulfillment.schemas import ErrorOut
from fulfillment.schemas.analytics import (
    CustomersAnalyticsOut,
    InventoryAnalyticsOut,
    OrdersAnalyticsOut,
    OrdersWindowIn,
    StagesAnalyticsOut,
    TopWindowIn,
    WindowIn,
)
from fulfillment.selectors import analytics as selectors

router = Router(tags=["analytics"])
ERRORS = {422: ErrorOut}


def _window(
    request: HttpRequest, params: WindowIn, grain: str
) -> tuple[selectors.Window, dict[str, Any]]:
    # ninja reads only the parameters it knows: an unknown one (a typo) is a 422 here.
    known = {f.alias or name for name, f in type(params).model_fields.items()}
    if unknown := sorted(set(request.GET) - known):
        raise ValidationFailed(f"unknown query parameter(s): {', '.join(unknown)}", unknown=unknown)
    window = selectors.window_resolve(start=params.from_, end=params.to, grain=grain)
    return window, {"start": window.start, "end": window.end, **selectors.freshness()}


@router.get("/orders/", response={200: OrdersAnalyticsOut, **ERRORS})
def orders_analytics(request: HttpRequest, params: Query[OrdersWindowIn]) -> dict[str, Any]:
    """Orders created per hour or day: counts by status, revenue, average order value."""
    window, head = _window(request, params, params.bucket.value)
    return {**head, **selectors.orders_series(window=window, bucket=params.bucket.value)}


@router.get("/stages/", response={200: StagesAnalyticsOut, **ERRORS})
def stages_analytics(request: HttpRequest, params: Query[WindowIn]) -> dict[str, Any]:
    """Per pipeline stage: p50/p95 seconds (from histogram buckets) and the failure rate."""
    window, head = _window(request, params, "hour")
    return {**head, "stages": selectors.stages_summary(window=window)}


@router.get("/inventory/", response={200: InventoryAnalyticsOut, **ERRORS})
def inventory_analytics(request: HttpRequest, params: Query[TopWindowIn]) -> dict[str, Any]:
    """Per product: units shipped, average on-hand, turnover, days of cover; top movers first."""
    window, head = _window(request, params, "day")
    return {**head, **selectors.inventory_summary(window=window, limit=params.limit)}


@router.get("/customers/", response={200: CustomersAnalyticsOut, **ERRORS})
def customers_analytics(request: HttpRequest, params: Query[TopWindowIn]) -> dict[str, Any]:
    """Orders per customer, repeat-customer rate, average order value, top customers."""
    window, head = _window(request, params, "day")
    return {**head, **selectors.customers_summary(window=window, limit=params.limit)}
