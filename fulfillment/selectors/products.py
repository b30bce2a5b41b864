"""Product reads."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db.models import Q, QuerySet

from fulfillment.errors import NotFound
from fulfillment.models import Product, low_stock_q


def product_list(*, search: str | None = None, active: bool | None = None) -> QuerySet[Product]:
    qs = Product.objects.select_related("stock").order_by("id")
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(sku__icontains=search))
    if active is not None:
        qs = qs.filter(is_active=active)
    return qs


def product_get(*, product_id: int) -> Product:
    product = Product.objects.select_related("stock").filter(pk=product_id).first()
    if product is None:
        raise NotFound("product", product_id)
    return product


def product_low_stock(*, active: bool | None = None) -> QuerySet[Product]:
    """Products whose available stock (on_hand - reserved) is at or below their threshold."""
    qs = Product.objects.select_related("stock").filter(low_stock_q("stock__")).order_by("id")
    if active is not None:
        qs = qs.filter(is_active=active)
    return qs


def product_stock_history(*, product_id: int) -> QuerySet[Any]:
    """pghistory events of the product's stock level, newest first, with their context."""
    if not Product.objects.filter(pk=product_id).exists():
        raise NotFound("product", product_id)
    event_model = apps.get_model("fulfillment", "StockLevelEvent")
    return (
        event_model.objects.filter(product_id=product_id)
        .select_related("pgh_context")
        .order_by("-pgh_id")
    )
