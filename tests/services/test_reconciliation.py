from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from fulfillment.models import Order, OrderLine, StockLevel
from fulfillment.services.inventory import stock_adjust, stock_reserve
from fulfillment.services.reconciliation import Drift, inventory_reconcile
from tests.factories import make_product

pytestmark = pytest.mark.django_db


def raw_sql(sql: str, params: list) -> None:
    """Bypass the services (and the ledger) on purpose."""
    with connection.cursor() as cur:
        cur.execute(sql, params)


def make_open_order(product_id: int, quantity: int, status: str = "pending") -> Order:
    order = Order.objects.create(customer_name="C", customer_email="c@example.com", status=status)
    OrderLine.objects.create(
        order=order, product_id=product_id, quantity=quantity, unit_price=Decimal("1.00")
    )
    stock_reserve(lines=[(product_id, quantity)], order_id=order.pk, actor="test")
    return order


def test_consistent_stock_reconciles_without_drift():
    a, b = make_product(stock=10), make_product(stock=0)
    stock_adjust(product_id=a.pk, delta=-3, actor="t", reason="r")
    make_open_order(a.pk, 2)
    make_open_order(a.pk, 1, status="processing")

    result = inventory_reconcile()

    assert result.ok is True
    assert result.drifts == []
    assert result.products_checked == 2
    assert result.movements_checked == 4  # a: receive, adjust, 2 reserves; b: none
    assert 0 < result.duration_ms < 10_000  # measured around one statement, in milliseconds
    assert b.pk  # a product without any movement checks as zero == zero


def test_drift_introduced_by_raw_sql_is_detected_with_amounts():
    # given: one clean product and one changed behind the ledger's back
    make_product(stock=10, sku="CLEAN")
    bad = make_product(stock=10, sku="BAD")
    raw_sql("UPDATE fulfillment_stocklevel SET on_hand = 13 WHERE product_id = %s", [bad.pk])

    # when
    result = inventory_reconcile()

    # then
    assert result.ok is False
    assert result.products_checked == 2
    assert result.drifts == [
        Drift(
            product_id=bad.pk,
            sku="BAD",
            on_hand=13,
            ledger_on_hand=10,
            reserved=0,
            ledger_reserved=0,
            open_order_reserved=0,
        )
    ]
    assert result.drifts[0].on_hand_diff == 3


def test_reserved_drift_and_orphan_reservation_are_detected():
    product = make_product(stock=10)
    make_open_order(product.pk, 4)
    # reserved moved without a ledger row
    raw_sql("UPDATE fulfillment_stocklevel SET reserved = 6 WHERE product_id = %s", [product.pk])

    drift = inventory_reconcile().drifts[0]
    assert (drift.reserved, drift.ledger_reserved, drift.open_order_reserved) == (6, 4, 4)

    # a reservation on the ledger that no open order holds (order finished behind our back)
    raw_sql("UPDATE fulfillment_stocklevel SET reserved = 4 WHERE product_id = %s", [product.pk])
    assert inventory_reconcile().ok
    Order.objects.update(status="delivered")
    drift = inventory_reconcile().drifts[0]
    assert (drift.reserved, drift.ledger_reserved, drift.open_order_reserved) == (4, 4, 0)


def test_reconciliation_is_one_statement():
    make_product(stock=1)
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        inventory_reconcile()

    assert len(ctx.captured_queries) == 1


def test_reconcile_command_exits_zero_when_clean_and_one_on_drift():
    product = make_product(stock=5, sku="CMD-1")
    out = StringIO()

    call_command("reconcile_inventory", stdout=out)
    assert "no drift" in out.getvalue()

    raw_sql("UPDATE fulfillment_stocklevel SET on_hand = 1 WHERE product_id = %s", [product.pk])
    out, err = StringIO(), StringIO()
    with pytest.raises(SystemExit) as exc:
        call_command("reconcile_inventory", stdout=out, stderr=err)
    assert exc.value.code == 1
    assert f"DRIFT product {product.pk} (CMD-1): on_hand 1 vs ledger 5 (-4)" in out.getvalue()
    assert "1 drifting" in err.getvalue()

    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("reconcile_inventory", "--json", stdout=out)
    body = json.loads(out.getvalue())
    assert body["ok"] is False
    assert body["drifts"][0]["product_id"] == product.pk
    assert StockLevel.objects.get(product=product).on_hand == 1  # reconciliation repairs nothing
