"""Concurrency for real: threads, each with its own PostgreSQL connection, against the services
and the API. The assertions are the invariants (no oversell, ledger reconciles), not just "no
exception"."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from fulfillment.errors import InsufficientStock, InvalidTransition
from fulfillment.models import Order, OrderLine, StockLevel, StockMovement
from fulfillment.services.intake import order_create
from fulfillment.services.receipts import OrderDraft
from fulfillment.services.reconciliation import inventory_reconcile
from fulfillment.services.stages import order_cancel
from tests.conftest import issue_key
from tests.factories import make_product
from tests.jobs import new_jobs, remember_last_job  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("remember_last_job")]


def run_threads(n: int, target: Callable[[int], Any]) -> list[Any]:
    def wrapped(i: int) -> Any:
        try:
            return target(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(wrapped, range(n)))


def draft(items: list[tuple[int, int]]) -> OrderDraft:
    return OrderDraft(customer_name="Load", customer_email="load@example.com", items=items)


def test_no_oversell_with_32_threads_on_one_product():
    # given
    product = make_product(stock=500)

    def buyer(i: int) -> int:
        rng = random.Random(i)
        units = 0
        qty = rng.randint(1, 3)
        while True:
            try:
                order_create(draft=draft([(product.pk, qty)]), actor=f"thread-{i}")
                units += qty
                qty = rng.randint(1, 3)
            except InsufficientStock as exc:
                available = exc.shortages[0].available
                if available == 0:
                    return units
                qty = min(qty, available)

    # when
    accepted = sum(run_threads(32, buyer))

    # then
    level = StockLevel.objects.get(product=product)
    assert accepted == 500
    assert (level.on_hand, level.reserved) == (500, 500)
    assert sum(OrderLine.objects.values_list("quantity", flat=True)) == 500
    assert new_jobs().count() == Order.objects.count()
    assert inventory_reconcile().ok


@pytest.mark.slow
def test_no_deadlock_with_random_multi_line_orders_in_random_line_order():
    products = [make_product(stock=1_000_000).pk for _ in range(5)]
    deadline = time.monotonic() + 10
    errors: list[BaseException] = []

    def client(i: int) -> int:
        rng = random.Random(i)
        created = 0
        while time.monotonic() < deadline:
            lines = rng.sample(products, rng.randint(1, 5))  # random line order
            try:
                order_create(
                    draft=draft([(pid, rng.randint(1, 3)) for pid in lines]), actor=f"t{i}"
                )
                created += 1
            except Exception as exc:  # anything here (deadlock, serialization) is a failure
                errors.append(exc)
                return created
        return created

    created = sum(run_threads(16, client))

    assert errors == []
    assert created > 0 and Order.objects.count() == created
    assert inventory_reconcile().ok


def test_concurrent_idempotent_requests_create_exactly_one_order():
    product = make_product(stock=100)
    body = json.dumps(
        {
            "customer_name": "Ada",
            "customer_email": "ada@example.com",
            "items": [{"product_id": product.pk, "quantity": 2}],
        }
    )
    barrier = threading.Barrier(8)
    key = issue_key("operator")

    def request(i: int) -> tuple[int, Any]:
        barrier.wait()
        response = Client().post(
            "/api/v1/orders/",
            data=body,
            content_type="application/json",
            headers={"Idempotency-Key": "same-key", "Authorization": f"Bearer {key}"},
        )
        return response.status_code, response.json()

    results = run_threads(8, request)

    assert {status for status, _ in results} == {201}
    assert len({json.dumps(b, sort_keys=True) for _, b in results}) == 1
    assert Order.objects.count() == 1
    assert StockLevel.objects.get(product=product).reserved == 2
    assert new_jobs().count() == 1


def test_racing_cancels_release_stock_once():
    product = make_product(stock=10)
    order = order_create(draft=draft([(product.pk, 4)]), actor="test")
    barrier = threading.Barrier(2)

    def cancel(i: int) -> str:
        barrier.wait()
        try:
            order_cancel(order_id=order.order_id, actor=f"t{i}")
            return "ok"
        except InvalidTransition:
            return "conflict"

    outcomes = sorted(run_threads(2, cancel))

    assert outcomes == ["conflict", "ok"]
    assert StockMovement.objects.filter(kind="release").count() == 1
    assert StockLevel.objects.get(product=product).reserved == 0
    assert inventory_reconcile().ok
