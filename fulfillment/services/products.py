"""Product write side."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from fulfillment.errors import Conflict, NotFound, VersionConflict
from fulfillment.models import Product, StockLevel, default_low_stock_threshold
from fulfillment.services.inventory import (
    invalidate_summary_on_commit,
    stock_receive,
    stock_threshold_set,
)

UPDATABLE_FIELDS = ("name", "description", "price", "is_active")


@transaction.atomic
def product_create(
    *,
    sku: str,
    name: str,
    price: Decimal,
    actor: str,
    description: str = "",
    is_active: bool = True,
    initial_stock: int = 0,
    low_stock_threshold: int | None = None,
) -> Product:
    """Create a product and its stock level; initial stock is a ``receive`` movement on the ledger.

    ``low_stock_threshold`` defaults to the ``DEFAULT_LOW_STOCK_THRESHOLD`` setting.
    """
    try:
        with transaction.atomic():
            product = Product.objects.create(
                sku=sku, name=name, price=price, description=description, is_active=is_active
            )
    except IntegrityError as exc:
        raise Conflict(f"a product with sku {sku!r} already exists", field="sku", sku=sku) from exc
    if low_stock_threshold is None:
        low_stock_threshold = default_low_stock_threshold()
    StockLevel.objects.create(product=product, low_stock_threshold=low_stock_threshold)
    invalidate_summary_on_commit()  # one more product, whether or not it has stock
    if initial_stock:
        stock_receive(
            product_id=product.pk, quantity=initial_stock, actor=actor, reason="initial stock"
        )
    return product


@transaction.atomic
def product_update(
    *, product_id: int, actor: str, expected_version: int | None = None, **changes: Any
) -> Product:
    """Partial update under a row lock; ``expected_version`` gives optimistic concurrency."""
    product = Product.objects.select_for_update().filter(pk=product_id).first()
    if product is None:
        raise NotFound("product", product_id)
    if expected_version is not None and product.version != expected_version:
        raise VersionConflict("product", product_id, expected_version, product.version)
    fields = [f for f in UPDATABLE_FIELDS if f in changes and changes[f] is not None]
    if fields:
        for f in fields:
            setattr(product, f, changes[f])
        product.version += 1
        product.save(update_fields=[*fields, "version", "updated_at"])
    threshold = changes.get("low_stock_threshold")
    if threshold is not None:
        stock_threshold_set(product_id=product_id, threshold=threshold)  # drops the summary too
    if fields:
        invalidate_summary_on_commit()  # the stock value moves with the price
    return product
