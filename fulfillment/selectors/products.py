"""Product reads."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from fulfillment.errors import NotFound
from fulfillment.models import Product


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
