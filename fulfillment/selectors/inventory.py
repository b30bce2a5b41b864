"""Inventory reads: stock levels, the ledger and the cached summary."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from fulfillment.errors import NotFound
from fulfillment.models import Product, StockLevel, StockMovement

# Invalidated by fulfillment.services.inventory after every committed stock write.
SUMMARY_CACHE_KEY = "inventory:summary:v1"

# Low stock: available (on_hand - reserved) at or below the product's threshold.
LOW_STOCK = Q(low_stock_threshold__gte=F("on_hand") - F("reserved"))


def stock_list(*, low_stock: bool | None = None, search: str | None = None) -> QuerySet[StockLevel]:
    qs = StockLevel.objects.select_related("product").order_by("product_id")
    if low_stock is True:
        qs = qs.filter(LOW_STOCK)
    elif low_stock is False:
        qs = qs.exclude(LOW_STOCK)
    if search:
        qs = qs.filter(Q(product__sku__icontains=search) | Q(product__name__icontains=search))
    return qs


def stock_get(*, product_id: int) -> StockLevel:
    level = StockLevel.objects.select_related("product").filter(product_id=product_id).first()
    if level is None:
        raise NotFound("product", product_id)
    return level


def movement_list(*, product_id: int, kind: str | None = None) -> QuerySet[StockMovement]:
    """The ledger of one product, newest first (index ``movement_product_idx``)."""
    if not Product.objects.filter(pk=product_id).exists():
        raise NotFound("product", product_id)
    qs = StockMovement.objects.filter(product_id=product_id).select_related("order")
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("-id")


def movement_get(*, movement_id: int) -> StockMovement:
    return StockMovement.objects.select_related("order").get(pk=movement_id)


def inventory_summary() -> dict[str, Any]:
    """Totals over all stock levels, cached for ``CACHE_TTL_SECONDS`` (cache-aside).

    One aggregate query on a miss. The stock services drop the key after every committed write,
    so the TTL only bounds staleness from changes outside them (price, product activation).
    """
    cached = cache.get(SUMMARY_CACHE_KEY)
    if cached is not None:
        return {**cached, "cached": True}
    totals = StockLevel.objects.aggregate(
        product_count=Count("id"),
        units_on_hand=Coalesce(Sum("on_hand"), 0),
        units_reserved=Coalesce(Sum("reserved"), 0),
        stock_value=Coalesce(
            Sum(F("on_hand") * F("product__price"), output_field=DecimalField(decimal_places=2)),
            Value(Decimal("0.00")),
            output_field=DecimalField(decimal_places=2),
        ),
        low_stock_count=Count("id", filter=LOW_STOCK),
    )
    summary = {
        **totals,
        "units_available": totals["units_on_hand"] - totals["units_reserved"],
        "stock_value": Decimal(totals["stock_value"]).quantize(Decimal("0.01")),
        "generated_at": timezone.now(),
    }
    cache.set(SUMMARY_CACHE_KEY, summary, timeout=settings.CACHE_TTL_SECONDS)
    return {**summary, "cached": False}
