from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fulfillment.errors import InsufficientStock, ProductUnavailable
from fulfillment.models import Order, StockLevel, StockMovement
from fulfillment.services.intake import order_create
from fulfillment.services.receipts import OrderDraft
from fulfillment.services.reconciliation import inventory_reconcile
from tests.factories import make_product

pytestmark = pytest.mark.django_db(transaction=True)


def draft(*items: tuple[int, int]) -> OrderDraft:
    return OrderDraft(customer_name="Ann", customer_email="ann@example.com", items=list(items))


def test_single_order_is_one_sql_statement_outside_a_transaction():
    a, b = make_product(stock=5), make_product(stock=5)

    with CaptureQueriesContext(connection) as ctx:
        receipt = order_create(draft=draft((a.pk, 1), (b.pk, 2)), actor="test")

    assert len(ctx.captured_queries) == 1, [q["sql"][:80] for q in ctx.captured_queries]
    assert Order.objects.get(pk=receipt.pk).lines.count() == 2
    assert StockLevel.objects.get(product=b).reserved == 2


def test_rejected_order_in_autocommit_undoes_the_reservations_it_made():
    a, b = make_product(stock=5), make_product(stock=1)

    with pytest.raises(InsufficientStock) as exc:
        order_create(draft=draft((a.pk, 2), (b.pk, 3)), actor="test")

    assert [(s.product_id, s.requested, s.available) for s in exc.value.shortages] == [(b.pk, 3, 1)]
    assert not Order.objects.exists()
    assert StockLevel.objects.get(product=a).reserved == 0
    assert not StockMovement.objects.filter(kind="reserve").exists()
    assert inventory_reconcile().ok


def test_unknown_product_in_autocommit_is_product_unavailable():
    a = make_product(stock=5)
    with pytest.raises(ProductUnavailable) as exc:
        order_create(draft=draft((a.pk, 1), (987654, 1)), actor="test")
    assert exc.value.details["product_ids"] == [987654]
    assert StockLevel.objects.get(product=a).reserved == 0
