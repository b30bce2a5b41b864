from __future__ import annotations

import json
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.db.models import Count

from fulfillment.lifecycle import OPEN, stale_q
from fulfillment.models import Order, OrderLine, StockLevel, StockMovement

pytestmark = pytest.mark.django_db


def _seed(**opts: object) -> None:
    call_command("seed_volume", quiet=True, stdout=StringIO(), **opts)


def _jobs() -> list[tuple[int, str, bool, str]]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT (args->>'order_pk')::bigint, args->>'expected_status', "
            "scheduled_at <= now(), status FROM procrastinate_jobs "
            "WHERE task_name = 'fulfillment.advance_order'"
        )
        return cur.fetchall()


def test_seed_volume_builds_a_data_set_that_reconciles():
    # given / when: three chunks, a fifth of the orders in flight
    _seed(orders=3000, products=100, jobs=600, due_fraction=0.5, chunk=1000)

    # then: the orders, statuses in their proportions
    assert Order.objects.count() == 3000
    by_status = dict(Order.objects.values_list("status").annotate(n=Count("id")))
    assert sum(by_status.get(s, 0) for s in ("pending", "processing", "shipped")) == 600
    assert by_status["delivered"] > 0.85 * 2400
    assert by_status.get("cancelled", 0) > 0 and by_status.get("failed", 0) > 0
    # lines: one to three per order, totals match
    per_order = list(
        OrderLine.objects.values("order_id").annotate(n=Count("id")).values_list("n", flat=True)
    )
    assert len(per_order) == 3000 and set(per_order) == {1, 2, 3}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM fulfillment_order o WHERE total_amount <> "
            "(SELECT sum(quantity * unit_price) FROM fulfillment_orderline l "
            " WHERE l.order_id = o.id)"
        )
        assert cur.fetchone()[0] == 0
    # none of the orders in flight is stale
    assert not Order.objects.filter(stale_q()).exists()

    # the ledger and stock reconcile, with running balances
    out = StringIO()
    call_command("reconcile_inventory", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["ok"] is True and result["products_checked"] >= 100
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM (SELECT on_hand_after, reserved_after, "
            " sum(on_hand_delta) OVER w AS oh, sum(reserved_delta) OVER w AS rs "
            " FROM fulfillment_stockmovement "
            " WINDOW w AS (PARTITION BY product_id ORDER BY id)) m "
            "WHERE on_hand_after <> oh OR reserved_after <> rs"
        )
        assert cur.fetchone()[0] == 0
    open_orders = Order.objects.filter(status__in=OPEN).count()
    assert open_orders > 0
    assert sum(s.reserved for s in StockLevel.objects.all()) > 0
    assert StockMovement.objects.filter(kind="ship").exists()

    # one waiting stage job per order in flight, expecting its status; half due
    jobs = _jobs()
    assert len(jobs) == 600 and {j[3] for j in jobs} == {"todo"}
    inflight = dict(
        Order.objects.filter(status__in=("pending", "processing", "shipped")).values_list(
            "pk", "status"
        )
    )
    assert {j[0]: j[1] for j in jobs} == inflight
    due = sum(1 for j in jobs if j[2])
    assert 200 < due < 400

    # audit history: an insert per order and line, an update per status change
    order_event = apps.get_model("fulfillment", "OrderEvent")
    line_event = apps.get_model("fulfillment", "OrderLineEvent")
    assert order_event.objects.filter(pgh_label="insert").count() == 3000
    assert line_event.objects.count() == OrderLine.objects.count()
    delivered = Order.objects.filter(status="delivered").first()
    assert delivered is not None
    steps = list(
        order_event.objects.filter(pgh_obj_id=delivered.pk)
        .order_by("version")
        .values_list("status", flat=True)
    )
    assert steps == ["pending", "processing", "shipped", "delivered"]


def test_seed_volume_writes_history_only_once_and_keeps_the_triggers():
    # given: a small data set
    _seed(orders=200, products=100, jobs=0)
    order_event = apps.get_model("fulfillment", "OrderEvent")
    assert order_event.objects.filter(pgh_label="insert").count() == 200
    assert _jobs() == []

    # when: an order is written the ordinary way after the load
    order = Order.objects.create(customer_name="A", customer_email="a@example.com")

    # then: its trigger is back on
    assert order_event.objects.filter(pgh_obj_id=order.pk, pgh_label="insert").count() == 1
