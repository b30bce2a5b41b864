from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fulfillment.models import Order, OrderLine, StockLevel, StockMovement
from tests.conftest import assert_error
from tests.factories import make_product
from tests.jobs import new_jobs, remember_last_job  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("remember_last_job")]


def order(*items: tuple[int, int], n: int = 0):
    return {
        "customer_name": f"Customer {n}",
        "customer_email": f"c{n}@example.com",
        "items": [{"product_id": pid, "quantity": qty} for pid, qty in items],
    }


def reserved(product) -> int:
    return StockLevel.objects.get(product=product).reserved


def test_bulk_atomic_creates_every_order_with_ledger_rows_and_jobs(api):
    a = make_product(stock=10, price="1.00")
    b = make_product(stock=10, price="2.00")

    response = api.post(
        "orders/bulk_create/",
        {"orders": [order((a.pk, 2), (b.pk, 1), n=1), order((a.pk, 3), n=2)], "atomic": True},
    )

    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["created"], data["rejected"]) == (2, 0)
    assert [r["total_amount"] for r in data["results"]] == ["4.00", "3.00"]
    assert reserved(a) == 5 and reserved(b) == 1
    first = Order.objects.get(order_id=data["results"][0]["order_id"])
    assert first.customer_email == "c1@example.com" and first.lines.count() == 2
    moves = list(StockMovement.objects.filter(product=a, kind="reserve").order_by("id"))
    assert [(m.reserved_delta, m.reserved_after) for m in moves] == [(2, 2), (3, 5)]
    assert new_jobs().count() == 2


def test_bulk_atomic_rolls_back_everything_and_lists_failing_orders_by_index(api):
    a = make_product(stock=5)
    b = make_product(stock=1)

    response = api.post(
        "orders/bulk_create/",
        {"orders": [order((a.pk, 2)), order((b.pk, 2)), order((a.pk, 4))], "atomic": True},
    )

    error = assert_error(response, 409, "insufficient_stock")
    assert [(s["index"], s["product_id"]) for s in error["details"]["shortages"]] == [
        (1, b.pk),
        (2, a.pk),
    ]
    assert not Order.objects.exists() and not OrderLine.objects.exists()
    assert not StockMovement.objects.filter(kind="reserve").exists()
    assert not new_jobs().exists()
    assert reserved(a) == 0 and reserved(b) == 0


def test_bulk_atomic_with_unknown_product_is_409_and_writes_nothing(api):
    a = make_product(stock=5)
    inactive = make_product(stock=5, active=False)

    response = api.post(
        "orders/bulk_create/", {"orders": [order((a.pk, 1)), order((inactive.pk, 1))]}
    )

    error = assert_error(response, 409, "product_unavailable")
    assert error["details"]["orders"] == [{"index": 1, "product_ids": [inactive.pk]}]
    assert not Order.objects.exists() and reserved(a) == 0


def test_bulk_non_atomic_accepts_and_rejects_each_order_on_its_own(api):
    a = make_product(stock=5, price="1.00")

    response = api.post(
        "orders/bulk_create/",
        {
            "orders": [
                order((a.pk, 3)),
                order((a.pk, 3)),  # only 2 left
                order((999999, 1)),
                order((a.pk, 2)),
            ],
            "atomic": False,
        },
    )

    assert response.status_code == 200, response.content
    data = response.json()
    assert (data["created"], data["rejected"]) == (2, 2)
    assert [r["ok"] for r in data["results"]] == [True, False, False, True]
    assert data["results"][1]["error"]["code"] == "insufficient_stock"
    assert data["results"][1]["error"]["details"]["shortages"] == [
        {"product_id": a.pk, "requested": 3, "available": 2}
    ]
    assert data["results"][2]["error"]["code"] == "product_unavailable"
    assert Order.objects.count() == 2 and reserved(a) == 5
    assert new_jobs().count() == 2


def test_bulk_non_atomic_with_nothing_accepted_writes_nothing(api):
    a = make_product(stock=0)
    response = api.post("orders/bulk_create/", {"orders": [order((a.pk, 1))], "atomic": False})
    assert response.status_code == 200
    assert response.json()["created"] == 0
    assert not Order.objects.exists() and not new_jobs().exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"orders": []},
        {"orders": "x"},
        {"orders": [{"customer_name": "x"}]},
        {"orders": [], "atomic": "maybe"},
        {"nope": 1},
    ],
)
def test_bulk_rejects_bad_input_and_writes_nothing(api, payload):
    make_product(stock=5)
    assert_error(api.post("orders/bulk_create/", payload), 422, "validation_error")
    assert not Order.objects.exists()


def test_bulk_maximum_is_a_setting(api, settings):
    settings.BULK_MAX_ORDERS = 2
    a = make_product(stock=50)
    response = api.post("orders/bulk_create/", {"orders": [order((a.pk, 1))] * 3})
    assert_error(response, 422, "validation_error")
    assert not Order.objects.exists() and reserved(a) == 0


def test_bulk_idempotency_replays_the_response(api):
    a = make_product(stock=50)
    payload = {"orders": [order((a.pk, 1)), order((a.pk, 2))]}
    headers = {"Idempotency-Key": "bulk-1"}

    first = api.post("orders/bulk_create/", payload, headers=headers)
    second = api.post("orders/bulk_create/", payload, headers=headers)
    other = api.post("orders/bulk_create/", {"orders": [order((a.pk, 1))]}, headers=headers)

    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert_error(other, 409, "idempotency_mismatch")
    assert Order.objects.count() == 2 and reserved(a) == 3


def _statements_for(api, products, count: int) -> int:
    orders = [
        order(*((p.pk, 1) for p in products[i % 3 : i % 3 + 1 + i % 3]), n=i) for i in range(count)
    ]
    with CaptureQueriesContext(connection) as ctx:
        response = api.post("orders/bulk_create/", {"orders": orders, "atomic": True})
    assert response.status_code == 201, response.content
    assert response.json()["created"] == count
    return len(ctx.captured_queries)


def test_bulk_statement_count_does_not_grow_with_the_number_of_orders(api):
    products = [make_product(stock=100_000) for _ in range(6)]

    ten = _statements_for(api, products, 10)
    thousand = _statements_for(api, products, 1000)

    assert thousand <= ten + 2, (ten, thousand)
    assert Order.objects.count() == 1010
    assert new_jobs().count() == 1010
