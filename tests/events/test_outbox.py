"""Events are written by the same statement or transaction as the change: an event exists if and
only if its change committed."""

from __future__ import annotations

import pytest
from django.db import transaction

from fulfillment.errors import InsufficientStock, InvalidStockChange
from fulfillment.lifecycle import OrderStatus
from fulfillment.models import Event, Order
from fulfillment.services import inventory
from fulfillment.services.bulk_intake import order_bulk_create
from fulfillment.services.receipts import OrderDraft
from fulfillment.services.stages import order_advance, order_cancel
from tests.factories import make_order, make_product

pytestmark = pytest.mark.django_db


def _events(type_: str | None = None) -> list[Event]:
    qs = Event.objects.order_by("id")
    return list(qs.filter(type=type_) if type_ else qs)


def _draft(*lines: tuple[int, int]) -> OrderDraft:
    return OrderDraft(customer_name="Ann", customer_email="ann@example.com", items=list(lines))


def test_order_created_event_is_written_by_the_intake_statement_with_its_payload():
    # given
    product = make_product(stock=10, price="2.50")
    before = Event.objects.count()

    # when
    order = make_order(lines=[(product, 3)])

    # then
    created = _events("order.created")
    assert len(created) == 1 and Event.objects.count() == before + 1
    data = created[0].data
    assert data == {
        "order_id": str(order.order_id),
        "status": "pending",
        "priority": "normal",
        "customer_email": "customer@example.com",
        "total_amount": "7.50",
        "items": [{"product_id": product.pk, "quantity": 3}],
    }
    assert created[0].occurred_at == order.created_at


def test_insufficient_stock_order_writes_no_event():
    product = make_product(stock=2)
    before = Event.objects.count()

    with pytest.raises(InsufficientStock):
        make_order(lines=[(product, 5)])

    assert Event.objects.count() == before
    assert not Order.objects.exists()


def test_bulk_intake_writes_one_order_created_event_per_order():
    product = make_product(stock=100)
    drafts = [_draft((product.pk, 1)) for _ in range(5)]

    result = order_bulk_create(drafts=drafts, atomic=True, actor="test")

    created = _events("order.created")
    assert [e.data["order_id"] for e in created] == [str(r.order.order_id) for r in result.results]
    assert all(e.data["items"] == [{"product_id": product.pk, "quantity": 1}] for e in created)


def test_bulk_intake_rejected_atomically_writes_no_event():
    product = make_product(stock=1)
    before = Event.objects.count()

    with pytest.raises(InsufficientStock):
        order_bulk_create(
            drafts=[_draft((product.pk, 1)), _draft((product.pk, 1))], atomic=True, actor="test"
        )

    assert Event.objects.count() == before


def test_each_stage_writes_its_event_and_a_no_op_stage_writes_none():
    product = make_product(stock=10)
    order = make_order(lines=[(product, 1)])

    for expected, target in [
        (OrderStatus.PENDING, "processing"),
        (OrderStatus.PROCESSING, "shipped"),
        (OrderStatus.SHIPPED, "delivered"),
    ]:
        outcome = order_advance(order_pk=order.pk, expected_status=expected, actor="test")
        assert (outcome.action, outcome.status) == ("advanced", target)
    count = Event.objects.count()
    # the same job run again finds nothing to do
    assert order_advance(
        order_pk=order.pk, expected_status=OrderStatus.PENDING, actor="t"
    ).action == ("skipped")

    assert Event.objects.count() == count
    types = [e.type for e in _events() if e.data.get("order_id") == str(order.order_id)]
    assert types == ["order.created", "order.processing", "order.shipped", "order.delivered"]
    shipped = _events("order.shipped")[0].data
    order.refresh_from_db()
    assert shipped["tracking_number"] == order.tracking_number != ""
    assert shipped["version"] == 3


def test_rolled_back_stage_writes_no_event():
    product = make_product(stock=10)
    order = make_order(lines=[(product, 1)])
    count = Event.objects.count()

    with pytest.raises(RuntimeError), transaction.atomic():
        order_advance(order_pk=order.pk, expected_status=OrderStatus.PENDING, actor="test")
        assert Event.objects.count() == count + 1
        raise RuntimeError("roll back")

    assert Event.objects.count() == count
    order.refresh_from_db()
    assert order.status == OrderStatus.PENDING


def test_cancel_event_says_who_cancelled_and_failure_event_says_why(settings):
    product = make_product(stock=10)
    cancelled = make_order(lines=[(product, 1)])
    failing = make_order(lines=[(product, 1)])
    settings.PIPELINE_FAILURE_RATES = {"processing": 1.0, "shipped": 0.0, "delivered": 0.0}

    order_cancel(order_id=cancelled.order_id, actor="key:ops", reason="customer asked")
    order_advance(order_pk=failing.pk, expected_status=OrderStatus.PENDING, actor="test")

    [cancel] = _events("order.cancelled")
    assert cancel.data["cancelled_by"] == "key:ops"
    assert cancel.data["reason"] == "customer asked"
    assert cancel.data["order_id"] == str(cancelled.order_id)
    [failed] = _events("order.failed")
    assert failed.data["reason"] == "simulated failure in stage processing"
    assert "cancelled_by" not in failed.data


def test_stock_adjustment_writes_stock_adjusted_and_a_refused_one_writes_nothing():
    product = make_product(stock=10)
    count = Event.objects.count()

    inventory.stock_adjust(product_id=product.pk, delta=-2, actor="key:ops", reason="broken")
    [adjusted] = _events("stock.adjusted")[-1:]
    assert adjusted.data["kind"] == "adjust"
    assert adjusted.data["on_hand_delta"] == -2
    assert adjusted.data["on_hand"] == 8
    assert adjusted.data["actor"] == "key:ops"
    assert Event.objects.count() == count + 1

    with pytest.raises(InvalidStockChange):
        inventory.stock_adjust(product_id=product.pk, delta=-50, actor="key:ops", reason="x")
    assert Event.objects.count() == count + 1


def test_stock_low_and_out_are_written_once_when_available_crosses_down():
    product = make_product(stock=10, threshold=3)

    make_order(lines=[(product, 5)])  # 5 left: above the threshold
    assert not _events("stock.low")
    make_order(lines=[(product, 2)])  # 3 left: crosses down to the threshold
    make_order(lines=[(product, 1)])  # 2 left: already low, no new event
    [low] = _events("stock.low")
    assert low.data == {
        "product_id": product.pk,
        "available": 3,
        "on_hand": 10,
        "reserved": 7,
        "low_stock_threshold": 3,
    }
    assert not _events("stock.out")
    make_order(lines=[(product, 2)])  # 0 left
    [out] = _events("stock.out")
    assert out.data["available"] == 0
    assert len(_events("stock.low")) == 1
    # stock coming back does not write low/out
    inventory.stock_receive(product_id=product.pk, quantity=5, actor="test")
    assert len(_events("stock.low")) == 1 and len(_events("stock.out")) == 1


def test_event_ids_grow_with_commit_order_of_transactions():
    product = make_product(stock=10)
    first = make_order(lines=[(product, 1)])
    second = make_order(lines=[(product, 1)])

    ids = {e.data["order_id"]: e.id for e in _events("order.created")}
    assert ids[str(first.order_id)] < ids[str(second.order_id)]
