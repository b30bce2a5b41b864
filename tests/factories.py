"""Test data through the services, so the ledger is always consistent."""

from __future__ import annotations

import itertools
from decimal import Decimal

from django.db import transaction

from fulfillment.models import Order, OrderLine, Product
from fulfillment.services.inventory import stock_reserve
from fulfillment.services.pipeline import enqueue_first_stage
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


def make_order(
    *,
    lines: list[tuple[Product, int]],
    customer: str = "Test Customer",
    enqueue: bool = True,
) -> Order:
    """A pending order the way intake makes one: reserve stock through the inventory service,
    insert the order and its lines, defer the first stage job; all in one transaction."""
    with transaction.atomic():
        order = Order.objects.create(
            customer_name=customer,
            customer_email="customer@example.com",
            total_amount=sum((p.price * q for p, q in lines), Decimal("0")),
        )
        OrderLine.objects.bulk_create(
            [OrderLine(order=order, product=p, quantity=q, unit_price=p.price) for p, q in lines]
        )
        stock_reserve(lines=[(p.pk, q) for p, q in lines], order_id=order.pk, actor="test")
        if enqueue:
            enqueue_first_stage(order_pks=[order.pk])
    return order
