"""Test data through the services, so the ledger is always consistent."""

from __future__ import annotations

import itertools
from decimal import Decimal

from fulfillment.models import Product
from fulfillment.services.products import product_create

_seq = itertools.count(1)


def make_product(
    *,
    stock: int = 100,
    price: str = "10.00",
    sku: str | None = None,
    threshold: int = 10,
    active: bool = True,
) -> Product:
    n = next(_seq)
    return product_create(
        sku=sku or f"TEST-{n:06d}",
        name=f"Test product {n}",
        price=Decimal(price),
        initial_stock=stock,
        low_stock_threshold=threshold,
        is_active=active,
        actor="test",
    )
