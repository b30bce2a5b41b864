from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from fulfillment.models import IdempotencyRecord, Order, OrderLine, StockLevel, StockMovement
from fulfillment.queue import ADVANCE_ORDER_TASK
from fulfillment.services.reports import retention_cleanup
from tests.conftest import assert_error
from tests.factories import make_product
from tests.jobs import new_jobs, remember_last_job  # noqa: F401 (fixture)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("remember_last_job")]


def body(*items: tuple[int, int], **extra):
    return {
        "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.com",
        "priority": "high",
        "items": [{"product_id": pid, "quantity": qty} for pid, qty in items],
        **extra,
    }


def stock(product) -> tuple[int, int]:
    s = StockLevel.objects.get(product=product)
    return s.on_hand, s.reserved


def assert_nothing_written(*products, reserved=0):
    assert not Order.objects.exists()
    assert not OrderLine.objects.exists()
    assert not StockMovement.objects.filter(kind="reserve").exists()
    assert not new_jobs().exists()
    for p in products:
        assert stock(p)[1] == reserved


def test_order_create_reserves_stock_writes_ledger_and_defers_one_job(api):
    # given
    a = make_product(stock=10, price="2.50")
    b = make_product(stock=5, price="10.00")

    # when
    response = api.post("orders/", body((a.pk, 3), (b.pk, 2), shipping_city="Paris"))

    # then
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["status"] == "pending" and data["version"] == 1
    assert data["total_amount"] == "27.50"
    assert data["priority"] == "high" and data["shipping_city"] == "Paris"
    assert [(ln["product_id"], ln["quantity"], ln["unit_price"]) for ln in data["lines"]] == [
        (a.pk, 3, "2.50"),
        (b.pk, 2, "10.00"),
    ]
    assert data["lines"][0]["sku"] == a.sku and data["lines"][0]["name"] == a.name
    order = Order.objects.get(order_id=data["order_id"])
    assert stock(a) == (10, 3) and stock(b) == (5, 2)
    moves = StockMovement.objects.filter(order=order, kind="reserve").order_by("product_id")
    assert [(m.product_id, m.reserved_delta, m.reserved_after) for m in moves] == [
        (a.pk, 3, 3),
        (b.pk, 2, 2),
    ]
    job = new_jobs().get()
    assert job.task_name == ADVANCE_ORDER_TASK
    assert job.args == {"order_pk": order.pk, "expected_status": "pending"}


def test_order_create_rolls_back_everything_when_the_last_line_is_short(api):
    a = make_product(stock=10)
    b = make_product(stock=10)
    c = make_product(stock=1)

    response = api.post("orders/", body((a.pk, 1), (b.pk, 2), (c.pk, 2)))

    error = assert_error(response, 409, "insufficient_stock")
    assert error["details"]["shortages"] == [{"product_id": c.pk, "requested": 2, "available": 1}]
    assert_nothing_written(a, b, c)


def test_insufficient_stock_lists_every_short_line(api):
    a = make_product(stock=1)
    b = make_product(stock=10)
    c = make_product(stock=0)

    response = api.post("orders/", body((a.pk, 2), (b.pk, 1), (c.pk, 1)))

    error = assert_error(response, 409, "insufficient_stock")
    assert sorted(s["product_id"] for s in error["details"]["shortages"]) == [a.pk, c.pk]
    assert_nothing_written(a, b, c)


@pytest.mark.parametrize(
    "mutate, status",
    [
        (lambda b, p: b["items"].append({"product_id": 999999, "quantity": 1}), 409),
        (lambda b, p: b["items"].append({"product_id": p.pk, "quantity": 1}), 422),  # duplicate
        (lambda b, p: b["items"][0].update(quantity=0), 422),
        (lambda b, p: b["items"][0].update(quantity=-3), 422),
        (lambda b, p: b["items"][0].update(quantity="many"), 422),
        (lambda b, p: b.update(items=[]), 422),
        (lambda b, p: b.update(customer_email="not-an-email"), 422),
        (lambda b, p: b.update(priority="urgent"), 422),
        (lambda b, p: b.update(unknown_field=1), 422),
        (lambda b, p: b.pop("customer_name"), 422),
        (
            lambda b, p: b.update(items=[{"product_id": i, "quantity": 1} for i in range(1, 60)]),
            422,
        ),
    ],
)
def test_order_create_rejects_bad_input_and_writes_nothing(api, mutate, status):
    product = make_product(stock=10)
    data = body((product.pk, 1))
    mutate(data, product)

    response = api.post("orders/", data)

    assert_error(response, status)
    assert_nothing_written(product)


def test_order_create_rejects_inactive_product_and_writes_nothing(api):
    active = make_product(stock=10)
    inactive = make_product(stock=10, active=False)

    response = api.post("orders/", body((active.pk, 1), (inactive.pk, 1)))

    error = assert_error(response, 409, "product_unavailable")
    assert error["details"]["product_ids"] == [inactive.pk]
    assert_nothing_written(active, inactive)


def test_order_create_rejects_malformed_json(api):
    response = api.post("orders/", raw="{not json")
    assert_error(response, 400)
    assert not Order.objects.exists()


def test_max_order_lines_is_a_setting(api, settings):
    settings.MAX_ORDER_LINES = 2
    products = [make_product(stock=5) for _ in range(3)]

    response = api.post("orders/", body(*((p.pk, 1) for p in products)))

    assert_error(response, 422, "validation_error")
    assert_nothing_written(*products)


# ----- idempotency -----------------------------------------------------------------------------


def test_same_idempotency_key_and_body_returns_the_original_response(api):
    product = make_product(stock=10)
    headers = {"Idempotency-Key": "key-1"}

    first = api.post("orders/", body((product.pk, 2)), headers=headers)
    second = api.post("orders/", body((product.pk, 2)), headers=headers)

    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert Order.objects.count() == 1
    assert Order.objects.get().idempotency_key == "key-1"
    assert stock(product) == (10, 2)
    assert new_jobs().count() == 1


def test_same_idempotency_key_with_another_body_is_409(api):
    product = make_product(stock=10)
    headers = {"Idempotency-Key": "key-2"}
    assert api.post("orders/", body((product.pk, 2)), headers=headers).status_code == 201

    response = api.post("orders/", body((product.pk, 3)), headers=headers)

    assert_error(response, 409, "idempotency_mismatch")
    assert Order.objects.count() == 1 and stock(product) == (10, 2)


def test_failed_idempotent_request_stores_nothing_and_can_be_retried(api):
    product = make_product(stock=1)
    headers = {"Idempotency-Key": "key-3"}

    assert_error(api.post("orders/", body((product.pk, 2)), headers=headers), 409)
    from fulfillment.services.inventory import stock_receive

    stock_receive(product_id=product.pk, quantity=5, actor="test")
    retried = api.post("orders/", body((product.pk, 2)), headers=headers)

    assert retried.status_code == 201, retried.content
    assert Order.objects.count() == 1


def test_idempotency_keys_are_scoped_to_the_caller(api_as):
    # given: two API keys that happen to send the same Idempotency-Key and body
    product = make_product(stock=10)
    headers = {"Idempotency-Key": "shared-key"}
    first_caller, second_caller = api_as("operator"), api_as("operator")

    # when
    first = first_caller.post("orders/", body((product.pk, 2)), headers=headers)
    second = second_caller.post("orders/", body((product.pk, 2)), headers=headers)
    other_body = second_caller.post("orders/", body((product.pk, 3)), headers=headers)

    # then: two orders, each caller's retry sees only its own response
    assert first.status_code == second.status_code == 201
    assert first.json()["order_id"] != second.json()["order_id"]
    assert_error(other_body, 409, "idempotency_mismatch")
    assert Order.objects.count() == 2
    assert stock(product) == (10, 4)
    assert first_caller.post("orders/", body((product.pk, 2)), headers=headers).json() == (
        first.json()
    )


def test_idempotency_key_is_forgotten_after_the_retention(api, settings):
    # given: an order created with a key whose record is older than the retention
    settings.IDEMPOTENCY_RETENTION_HOURS = 24
    product = make_product(stock=10)
    headers = {"Idempotency-Key": "old-key"}
    first = api.post("orders/", body((product.pk, 2)), headers=headers)
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))

    # when: the same key is sent again, with the same body and then with another
    again = api.post("orders/", body((product.pk, 2)), headers=headers)
    retried = api.post("orders/", body((product.pk, 3)), headers=headers)

    # then: the expired key ran as a new request, and is remembered again from then on
    assert first.status_code == again.status_code == 201
    assert again.json()["order_id"] != first.json()["order_id"]
    assert_error(retried, 409, "idempotency_mismatch")
    assert Order.objects.filter(idempotency_key="old-key").count() == 2
    assert IdempotencyRecord.objects.count() == 1
    assert stock(product) == (10, 4)


def test_idempotency_key_within_the_retention_is_still_remembered(api, settings):
    settings.IDEMPOTENCY_RETENTION_HOURS = 24
    product = make_product(stock=10)
    headers = {"Idempotency-Key": "recent-key"}
    first = api.post("orders/", body((product.pk, 2)), headers=headers)
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=23))

    again = api.post("orders/", body((product.pk, 2)), headers=headers)

    assert again.json() == first.json()
    assert Order.objects.count() == 1


def test_retention_cleanup_deletes_expired_idempotency_records_only(api, settings):
    settings.IDEMPOTENCY_RETENTION_HOURS = 24
    product = make_product(stock=10)
    for key in ("expired-key", "live-key"):
        api.post("orders/", body((product.pk, 1)), headers={"Idempotency-Key": key})
    IdempotencyRecord.objects.filter(key="expired-key").update(
        created_at=timezone.now() - timedelta(hours=25)
    )

    result = retention_cleanup()

    assert result.idempotency_records_deleted == 1
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["live-key"]


def test_idempotency_key_must_be_printable_and_short(api):
    product = make_product(stock=10)
    response = api.post("orders/", body((product.pk, 1)), headers={"Idempotency-Key": "x" * 300})
    assert_error(response, 422, "validation_error")
    assert_nothing_written(product)


# ----- cancel ----------------------------------------------------------------------------------


def test_cancel_releases_the_reservation_and_sets_cancelled_at(api):
    product = make_product(stock=10)
    order_id = api.post("orders/", body((product.pk, 4))).json()["order_id"]

    response = api.post(f"orders/{order_id}/cancel/")

    assert response.status_code == 200, response.content
    data = response.json()
    assert data["status"] == "cancelled" and data["cancelled_at"] and data["version"] == 2
    assert stock(product) == (10, 0)
    release = StockMovement.objects.get(kind="release")
    assert (release.reserved_delta, release.reserved_after) == (-4, 0)


def test_cancel_twice_is_409_and_releases_once(api):
    product = make_product(stock=10)
    order_id = api.post("orders/", body((product.pk, 4))).json()["order_id"]
    assert api.post(f"orders/{order_id}/cancel/").status_code == 200

    again = api.post(f"orders/{order_id}/cancel/")

    assert_error(again, 409, "invalid_transition")
    assert StockMovement.objects.filter(kind="release").count() == 1
    assert stock(product) == (10, 0)


def test_cancel_after_shipping_is_409(api):
    product = make_product(stock=10)
    order_id = api.post("orders/", body((product.pk, 1))).json()["order_id"]
    Order.objects.filter(order_id=order_id).update(status="shipped")

    assert_error(api.post(f"orders/{order_id}/cancel/"), 409, "invalid_transition")
    assert stock(product) == (10, 1)


def test_cancel_with_a_stale_version_is_409_and_changes_nothing(api):
    product = make_product(stock=10)
    order_id = api.post("orders/", body((product.pk, 1))).json()["order_id"]

    by_body = api.post(f"orders/{order_id}/cancel/", {"expected_version": 5})
    by_header = api.post(f"orders/{order_id}/cancel/", headers={"If-Match": '"7"'})

    assert_error(by_body, 409, "version_conflict")
    assert_error(by_header, 409, "version_conflict")
    assert Order.objects.get().status == "pending" and stock(product) == (10, 1)
    ok = api.post(f"orders/{order_id}/cancel/", {"expected_version": 1})
    assert ok.status_code == 200


def test_cancel_unknown_order_is_404_and_bad_id_is_404(api):
    assert_error(api.post(f"orders/{uuid.uuid4()}/cancel/"), 404, "not_found")
    # not a UUID: no route matches at all
    assert api.post("orders/not-a-uuid/cancel/").status_code == 404


def test_single_create_defers_the_same_job_as_enqueue_first_stage(api):
    """order_create writes its job in the same SQL statement; it must match the pipeline's."""
    from django.db import transaction

    from fulfillment.services.stages import enqueue_first_stage

    product = make_product(stock=10)
    order_id = api.post("orders/", body((product.pk, 1))).json()["order_id"]
    pk = Order.objects.get(order_id=order_id).pk
    with transaction.atomic():
        enqueue_first_stage(order_pks=[pk])

    fields = ("queue_name", "task_name", "priority", "lock", "queueing_lock", "args", "status")
    ours, pipelines = new_jobs().order_by("id").values_list(*fields, "scheduled_at")
    assert ours[:-1] == pipelines[:-1]
    assert (ours[-1] is None) == (pipelines[-1] is None)


def test_single_create_schedules_the_first_stage_after_the_processing_delay(api, settings):
    """With the default 2-5 s processing delay, the first job waits like a bulk order's does."""
    from django.utils import timezone

    settings.PIPELINE_DELAYS = {**settings.PIPELINE_DELAYS, "processing": (2.0, 5.0)}
    product = make_product(stock=10)
    before = timezone.now()

    assert api.post("orders/", body((product.pk, 1))).status_code == 201

    (scheduled_at,) = new_jobs().values_list("scheduled_at", flat=True)
    assert scheduled_at is not None
    assert 1.9 <= (scheduled_at - before).total_seconds() <= 5.5


@pytest.mark.django_db(transaction=True)
def test_order_intake_makes_the_next_inventory_summary_fresh(api):
    """Reservations change `reserved`/`available`: after single and bulk intake the summary is
    recomputed (their ledger rows move the head the cached one is tagged with)."""
    product = make_product(stock=10)
    assert api.get("inventory/summary/").json()["cached"] is False
    assert api.get("inventory/summary/").json()["cached"] is True

    assert api.post("orders/", body((product.pk, 2))).status_code == 201
    after_single = api.get("inventory/summary/").json()
    assert (after_single["cached"], after_single["units_reserved"]) == (False, 2)

    bulk = {"orders": [body((product.pk, 1)), body((product.pk, 1))], "atomic": True}
    assert api.post("orders/bulk_create/", bulk).status_code in (200, 201)
    assert api.get("inventory/summary/").json()["cached"] is False
    assert api.get("inventory/summary/").json()["units_reserved"] == 4
