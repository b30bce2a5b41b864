"""Test data through the services production uses, so the ledger and the queue are always
consistent: products through ``product_create``, orders through the intake statement."""

from __future__ import annotations

import itertools
from decimal import Decimal

from fulfillment.models import Order, Product
from fulfillment.services.intake import order_create
from fulfillment.services.products import product_create
from fulfillment.services.receipts import OrderDraft

_seq = itertools.count(1)


def make_product(
    *,
    stock: int = 100,
    price: str = "10.00",
    sku: str | None = None,
    threshold: int | None = None,
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


def make_order(*, lines: list[tuple[Product, int]], customer: str = "Test Customer") -> Order:
    """A pending order made by intake (``order_create``): stock reserved, first stage job
    deferred, in one statement (a savepoint inside the test's transaction, if any)."""
    receipt = order_create(
        draft=OrderDraft(
            customer_name=customer,
            customer_email="customer@example.com",
            items=[(p.pk, q) for p, q in lines],
        ),
        actor="test",
    )
    return Order.objects.get(pk=receipt.pk)
