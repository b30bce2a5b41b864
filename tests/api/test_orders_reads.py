from __future__ import annotations

import uuid
from datetime import timedelta

import pghistory
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fulfillment.models import Order
from tests.conftest import assert_error, without_auth_queries
from tests.factories import make_product

pytestmark = pytest.mark.django_db


def create(api, product, qty=1, email="ada@example.com", priority="normal"):
    response = api.post(
        "orders/",
        {
            "customer_name": "Ada",
            "customer_email": email,
            "priority": priority,
            "items": [{"product_id": product.pk, "quantity": qty}],
        },
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_detail_has_lines_with_product_sku_and_name(api):
    product = make_product(stock=10, price="3.00")
    created = create(api, product, qty=2)

    response = api.get(f"orders/{created['order_id']}/")

    assert response.status_code == 200
    data = response.json()
    assert data == created
    assert data["lines"] == [
        {
            "product_id": product.pk,
            "sku": product.sku,
            "name": product.name,
            "quantity": 2,
            "unit_price": "3.00",
        }
    ]


def test_detail_of_unknown_order_is_404(api):
    assert_error(api.get(f"orders/{uuid.uuid4()}/"), 404, "not_found")


def test_list_filters_and_keyset_pagination(api):
    product = make_product(stock=100)
    ids = [create(api, product, email=f"c{i % 2}@example.com")["order_id"] for i in range(5)]
    high = create(api, product, priority="high")["order_id"]

    page1 = api.get("orders/?limit=4").json()
    page2 = api.get(f"orders/?limit=4&cursor={page1['next_cursor']}").json()
    assert [o["order_id"] for o in page1["items"] + page2["items"]] == [high, *reversed(ids)]
    assert page2["next_cursor"] is None

    by_email = api.get("orders/?customer_email=c1@example.com").json()["items"]
    assert {o["order_id"] for o in by_email} == {ids[1], ids[3]}
    assert [o["order_id"] for o in api.get("orders/?priority=high").json()["items"]] == [high]

    api.post(f"orders/{ids[0]}/cancel/")
    cancelled = api.get("orders/?status=cancelled").json()["items"]
    assert [o["order_id"] for o in cancelled] == [ids[0]]

    future = (timezone.now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert api.get(f"orders/?created_after={future}").json()["items"] == []
    assert len(api.get(f"orders/?created_before={future}").json()["items"]) == 6


def test_list_stale_only_uses_the_stale_definition(api, settings):
    product = make_product(stock=100)
    old = create(api, product)["order_id"]
    create(api, product)
    Order.objects.filter(order_id=old).update(
        status_changed_at=timezone.now()
        - timedelta(seconds=settings.STALE_AFTER_SECONDS["pending"] + 5)
    )

    items = api.get("orders/?stale_only=true").json()["items"]

    assert [o["order_id"] for o in items] == [old]


@pytest.mark.parametrize(
    "query",
    [
        "status=lost",
        "priority=urgent",
        "limit=0",
        "limit=100000",
        "cursor=%25%25%25",
        "created_after=yesterday",
    ],
)
def test_list_rejects_bad_filters(api, query):
    assert_error(api.get(f"orders/?{query}"), 422)


def test_history_has_order_and_line_events_with_context(api):
    product = make_product(stock=10)
    order_id = create(api, product)["order_id"]
    api.post(f"orders/{order_id}/cancel/", headers={"X-Request-ID": "req-cancel-1"})

    response = api.get(f"orders/{order_id}/history/")

    assert response.status_code == 200
    events = response.json()
    assert [(e["model"], e["event"]) for e in events] == [
        ("order", "insert"),
        ("order_line", "insert"),
        ("order", "update"),
    ]
    assert events[2]["data"]["status"] == "cancelled"
    assert events[2]["context"]["request_id"] == "req-cancel-1"
    assert events[1]["data"]["product_id"] == product.pk


def test_history_of_unknown_order_is_404(api):
    assert_error(api.get(f"orders/{uuid.uuid4()}/history/"), 404, "not_found")


def test_tracking_lists_the_stages_in_order(api):
    product = make_product(stock=10)
    order_id = create(api, product)["order_id"]
    api.post(f"orders/{order_id}/cancel/")

    data = api.get(f"orders/{order_id}/tracking/").json()

    assert data["status"] == "cancelled"
    assert [s["status"] for s in data["timeline"]] == ["pending", "cancelled"]
    assert_error(api.get(f"orders/{uuid.uuid4()}/tracking/"), 404)


def test_statistics_are_computed_in_sql_and_cached(api):
    product = make_product(stock=100, price="5.00")
    for _ in range(3):
        create(api, product, qty=2)
    cancelled = create(api, product)["order_id"]
    api.post(f"orders/{cancelled}/cancel/")
    now = timezone.now()
    delivered = Order.objects.filter(status="pending").first()
    with pghistory.context(test="stats"):
        Order.objects.filter(pk=delivered.pk).update(
            status="delivered",
            processing_at=delivered.created_at + timedelta(seconds=2),
            shipped_at=delivered.created_at + timedelta(seconds=5),
            delivered_at=now,
        )

    with CaptureQueriesContext(connection) as ctx:
        stats = api.get("orders/statistics/").json()
    assert len(without_auth_queries(ctx.captured_queries)) <= 3

    assert stats["total_orders"] == 4
    assert stats["by_status"]["pending"] == 2
    assert stats["by_status"]["cancelled"] == 1 and stats["by_status"]["delivered"] == 1
    assert stats["orders_last_24h"] == 4
    assert stats["revenue_last_24h"] == "30.00"
    assert stats["completion_rate"] == 0.25
    assert stats["average_stage_seconds"]["pending_to_processing"] == 2.0
    assert stats["average_stage_seconds"]["processing_to_shipped"] == 3.0
    assert stats["stale_orders"] == 0

    create(api, product)
    with CaptureQueriesContext(connection) as ctx:
        cached = api.get("orders/statistics/").json()
    assert without_auth_queries(ctx.captured_queries) == []
    assert cached["total_orders"] == 4
