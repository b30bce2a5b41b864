from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from fulfillment.models import Product, StockLevel, StockMovement
from fulfillment.services.inventory import stock_reserve
from fulfillment.services.reconciliation import inventory_reconcile
from tests.conftest import ApiClient, assert_error, issue_key, without_auth_queries
from tests.factories import make_product

pytestmark = pytest.mark.django_db


def snapshot(product: Product) -> tuple[int, int, int, int]:
    level = StockLevel.objects.get(product=product)
    return level.on_hand, level.reserved, level.version, StockMovement.objects.count()


# ----- list / detail ---------------------------------------------------------------------------


def test_inventory_list_paginates_and_filters_low_stock_and_search(api):
    low = make_product(stock=5, threshold=10, sku="LOW-1")
    make_product(stock=50, threshold=10, sku="OK-1")
    make_product(stock=10, threshold=10, sku="EDGE-1")  # available == threshold counts as low

    page = api.get("inventory/?limit=2").json()
    assert page["count"] == 3 and len(page["items"]) == 2
    first = page["items"][0]
    assert first["product_id"] == low.pk
    assert first["sku"] == "LOW-1"
    assert (first["on_hand"], first["reserved"], first["available"]) == (5, 0, 5)
    assert first["is_low"] is True and first["version"] == 2

    low_only = api.get("inventory/?low_stock=true").json()
    assert sorted(i["sku"] for i in low_only["items"]) == ["EDGE-1", "LOW-1"]
    enough = api.get("inventory/?low_stock=false").json()
    assert [i["sku"] for i in enough["items"]] == ["OK-1"]
    found = api.get("inventory/?search=edge").json()
    assert [i["sku"] for i in found["items"]] == ["EDGE-1"]


def test_inventory_detail_shows_available_and_version(api):
    product = make_product(stock=30)
    stock_reserve(lines=[(product.pk, 4)], order_id=None, actor="test")

    body = api.get(f"inventory/{product.pk}/").json()

    assert (body["on_hand"], body["reserved"], body["available"]) == (30, 4, 26)
    assert body["version"] == 3 and body["is_low"] is False


def test_inventory_detail_of_unknown_product_is_404(api):
    assert_error(api.get("inventory/999999/"), 404, "not_found")


def test_openapi_schema_documents_the_inventory_endpoints(api):
    paths = api.get("/api/v1/openapi.json").json()["paths"]
    for path in (
        "/api/v1/inventory/",
        "/api/v1/inventory/summary/",
        "/api/v1/inventory/{product_id}/",
        "/api/v1/inventory/{product_id}/adjust/",
        "/api/v1/inventory/{product_id}/transactions/",
        "/api/v1/products/low_stock/",
        "/api/v1/products/{product_id}/stock_history/",
    ):
        assert path in paths, path


def test_inventory_list_rejects_bad_filter_values(api):
    assert_error(api.get("inventory/?low_stock=maybe"), 422, "validation_error")
    assert_error(api.get("inventory/?search=%00"), 422, "validation_error")
    assert_error(api.get("inventory/?limit=0"), 422, "validation_error")


# ----- adjust: each kind writes exactly one movement ------------------------------------------


@pytest.mark.parametrize(
    ("body", "kind", "on_hand_delta", "on_hand_after"),
    [
        ({"quantity_change": 7, "reason": "found a box"}, "adjust", 7, 27),
        ({"quantity_change": -5, "reason": "damaged"}, "adjust", -5, 15),
        ({"quantity_change": 30, "kind": "receive", "reason": "PO-17"}, "receive", 30, 50),
        ({"quantity_change": 2, "kind": "return", "reason": "RMA-3"}, "return", 2, 22),
        ({"set_to": 12, "reason": "cycle count"}, "count", -8, 12),
        ({"set_to": 25, "kind": "count", "reason": "cycle count"}, "count", 5, 25),
    ],
)
def test_adjust_writes_exactly_one_movement_with_correct_balances(
    api, body, kind, on_hand_delta, on_hand_after
):
    # given
    product = make_product(stock=20)
    stock_reserve(lines=[(product.pk, 3)], order_id=None, actor="test")
    before = StockMovement.objects.count()

    # when
    response = api.post(f"inventory/{product.pk}/adjust/", body)

    # then
    assert response.status_code == 200, response.content
    assert StockMovement.objects.count() == before + 1
    movement = StockMovement.objects.filter(product=product).order_by("-id").first()
    assert movement.kind == kind
    assert (movement.on_hand_delta, movement.reserved_delta) == (on_hand_delta, 0)
    assert (movement.on_hand_after, movement.reserved_after) == (on_hand_after, 3)
    assert movement.reason == body["reason"]
    assert movement.actor.startswith("api_key:test-admin-")
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved, level.version) == (on_hand_after, 3, 4)
    out = response.json()
    assert out["stock"] == {
        "product_id": product.pk,
        "on_hand": on_hand_after,
        "reserved": 3,
        "available": on_hand_after - 3,
        "version": 4,
    }
    assert out["movement"]["id"] == movement.pk
    assert out["movement"]["kind"] == kind
    assert out["movement"]["on_hand_delta"] == on_hand_delta
    assert out["movement"]["on_hand_after"] == on_hand_after


def test_adjust_with_same_expected_version_twice_second_is_409_and_changes_nothing(api):
    product = make_product(stock=10)
    version = api.get(f"inventory/{product.pk}/").json()["version"]
    body = {"quantity_change": 5, "reason": "recount", "expected_version": version}

    first = api.post(f"inventory/{product.pk}/adjust/", body)
    assert first.status_code == 200, first.content
    after_first = snapshot(product)

    second = api.post(f"inventory/{product.pk}/adjust/", {**body, "quantity_change": -3})

    error = assert_error(second, 409, "version_conflict")
    assert error["details"]["expected_version"] == version
    assert error["details"]["current_version"] == version + 1
    assert snapshot(product) == after_first == (15, 0, version + 1, 2)


def test_if_match_header_works_as_expected_version(api):
    product = make_product(stock=10)
    assert api.get(f"inventory/{product.pk}/")["ETag"] == '"2"'

    stale = api.post(
        f"inventory/{product.pk}/adjust/",
        {"quantity_change": 1, "reason": "x"},
        headers={"If-Match": '"1"'},
    )
    assert_error(stale, 409, "version_conflict")
    assert snapshot(product) == (10, 0, 2, 1)

    fresh = api.post(
        f"inventory/{product.pk}/adjust/",
        {"quantity_change": 1, "reason": "x"},
        headers={"If-Match": '"2"'},
    )
    assert fresh.status_code == 200, fresh.content
    assert fresh.json()["stock"]["version"] == 3
    assert fresh["ETag"] == '"3"'


def test_count_with_stale_version_is_409_and_changes_nothing(api):
    product = make_product(stock=10)

    response = api.post(
        f"inventory/{product.pk}/adjust/", {"set_to": 4, "reason": "count", "expected_version": 9}
    )

    assert_error(response, 409, "version_conflict")
    assert snapshot(product) == (10, 0, 2, 1)


# ----- adjust: invalid input is 4xx and writes nothing ----------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"quantity_change": -11, "reason": "loss"}, 409, "invalid_stock_change"),
        ({"quantity_change": -8, "reason": "below reserved"}, 409, "invalid_stock_change"),
        ({"set_to": 2, "reason": "count below reserved"}, 409, "invalid_stock_change"),
        ({"quantity_change": 0, "reason": "nothing"}, 422, "validation_error"),
        ({"set_to": 10, "reason": "count equals on hand"}, 409, "invalid_stock_change"),
        ({"quantity_change": 1, "kind": "ship", "reason": "x"}, 422, "validation_error"),
        ({"quantity_change": 1, "kind": "reserve", "reason": "x"}, 422, "validation_error"),
        ({"quantity_change": 1, "kind": "steal", "reason": "x"}, 422, "validation_error"),
        ({"quantity_change": 1}, 422, "validation_error"),
        ({"quantity_change": 1, "reason": "   "}, 422, "validation_error"),
        ({"quantity_change": 1, "reason": "r" * 256}, 422, "validation_error"),
        ({"quantity_change": 1, "reason": "nul\x00byte"}, 422, "validation_error"),
        ({"reason": "neither"}, 422, "validation_error"),
        ({"quantity_change": 1, "set_to": 3, "reason": "both"}, 422, "validation_error"),
        ({"quantity_change": 1, "kind": "count", "reason": "x"}, 422, "validation_error"),
        ({"set_to": 3, "kind": "adjust", "reason": "x"}, 422, "validation_error"),
        ({"quantity_change": -1, "kind": "receive", "reason": "x"}, 422, "validation_error"),
        ({"quantity_change": -1, "kind": "return", "reason": "x"}, 422, "validation_error"),
        ({"set_to": -1, "reason": "x"}, 422, "validation_error"),
        ({"quantity_change": "5", "reason": "x"}, 422, "validation_error"),
        ({"quantity_change": 1.5, "reason": "x"}, 422, "validation_error"),
        ({"quantity_change": True, "reason": "x"}, 422, "validation_error"),
        ({"quantity_change": 10**12, "reason": "x"}, 422, "validation_error"),
        ({"quantity_change": 1, "reason": "x", "expected_version": 0}, 422, "validation_error"),
        ({"quantity_change": 1, "reason": "x", "unknown": 1}, 422, "validation_error"),
        ([1, 2], 422, "validation_error"),
    ],
)
def test_invalid_adjustment_is_4xx_and_writes_nothing(api, body, status, code):
    # given: 10 on hand, 3 reserved
    product = make_product(stock=10)
    stock_reserve(lines=[(product.pk, 3)], order_id=None, actor="test")
    before = snapshot(product)

    # when
    response = api.post(f"inventory/{product.pk}/adjust/", body)

    # then
    assert_error(response, status, code)
    assert snapshot(product) == before


def test_adjust_beyond_the_largest_storable_on_hand_is_409_and_writes_nothing(api):
    # given: on hand near the column's limit (each change is within the schema's bound)
    product = make_product(stock=10)
    for _ in range(2):
        ok = api.post(
            f"inventory/{product.pk}/adjust/", {"quantity_change": 1_000_000_000, "reason": "x"}
        )
        assert ok.status_code == 200, ok.content
    before = snapshot(product)

    # when: one more billion would pass 2**31 - 1
    response = api.post(
        f"inventory/{product.pk}/adjust/", {"quantity_change": 1_000_000_000, "reason": "x"}
    )

    # then
    assert_error(response, 409, "invalid_stock_change")
    assert snapshot(product) == before


def test_adjust_of_unknown_product_is_404_and_writes_nothing(api):
    make_product(stock=10)
    before = StockMovement.objects.count()

    response = api.post("inventory/999999/adjust/", {"quantity_change": 1, "reason": "x"})

    assert_error(response, 404, "not_found")
    assert StockMovement.objects.count() == before


@pytest.mark.parametrize(
    ("raw", "headers", "status"),
    [
        ("{not json", {}, 400),
        ('{"quantity_change": 1, "reason": "x"}', {"If-Match": "abc"}, 422),
    ],
)
def test_malformed_adjust_request_is_4xx_and_writes_nothing(api, raw, headers, status):
    product = make_product(stock=10)
    before = snapshot(product)

    response = api.post(f"inventory/{product.pk}/adjust/", raw=raw, headers=headers)

    assert_error(response, status)
    assert snapshot(product) == before


@pytest.mark.django_db(transaction=True)
def test_one_adjustment_request_runs_at_most_four_statements(api):
    """The closing number of issue 3: BEGIN, the one conditional UPDATE ... INSERT statement
    (lock, invariants, version, ledger row), COMMIT, and the read of the movement for the
    response. (transaction=True: as in production there is no enclosing test transaction.)"""
    product = make_product(stock=10)

    with CaptureQueriesContext(connection) as ctx:
        response = api.post(
            f"inventory/{product.pk}/adjust/",
            {"quantity_change": 3, "reason": "x", "expected_version": 2},
        )

    assert response.status_code == 200, response.content
    queries = without_auth_queries(ctx.captured_queries)
    print(f"\nstatements for one adjustment request: {len(queries)} (+ the API key lookup)")
    for q in queries:
        print("  ", q["sql"].split("; ", 1)[-1][:90].replace("\n", " "))
    assert len(queries) <= 4
    writes = [q for q in queries if "UPDATE" in q["sql"] or "INSERT" in q["sql"]]
    assert len(writes) == 1


@pytest.mark.django_db(transaction=True)
def test_one_count_request_runs_at_most_seven_statements(api):
    product = make_product(stock=10)

    with CaptureQueriesContext(connection) as ctx:
        response = api.post(f"inventory/{product.pk}/adjust/", {"set_to": 4, "reason": "count"})

    assert response.status_code == 200, response.content
    # BEGIN, SELECT ... FOR UPDATE, SAVEPOINT, UPDATE+INSERT, RELEASE, COMMIT, read of the movement
    assert len(without_auth_queries(ctx.captured_queries)) <= 7


# ----- transactions (ledger) ------------------------------------------------------------------


def test_transactions_are_newest_first_paginated_and_filterable(api):
    product = make_product(stock=10)
    other = make_product(stock=1)
    for i in range(1, 4):
        api.post(f"inventory/{product.pk}/adjust/", {"quantity_change": i, "reason": f"r{i}"})

    page = api.get(f"inventory/{product.pk}/transactions/?limit=2").json()

    assert page["count"] == 4
    assert [m["reason"] for m in page["items"]] == ["r3", "r2"]
    assert page["items"][0]["on_hand_after"] == 16
    rest = api.get(f"inventory/{product.pk}/transactions/?limit=2&offset=2").json()
    assert [m["reason"] for m in rest["items"]] == ["r1", "initial stock"]
    assert all(m["product_id"] == product.pk for m in page["items"] + rest["items"])
    receives = api.get(f"inventory/{product.pk}/transactions/?kind=receive").json()
    assert [m["kind"] for m in receives["items"]] == ["receive"]
    assert api.get(f"inventory/{other.pk}/transactions/").json()["count"] == 1


def test_transactions_of_unknown_product_is_404_and_bad_kind_is_422(api):
    product = make_product(stock=1)
    assert_error(api.get("inventory/999999/transactions/"), 404, "not_found")
    assert_error(api.get(f"inventory/{product.pk}/transactions/?kind=steal"), 422)


# ----- summary ---------------------------------------------------------------------------------


def test_summary_totals_units_value_and_low_stock(api):
    a = make_product(stock=10, price="2.50", threshold=5)
    make_product(stock=3, price="10.00", threshold=5)
    stock_reserve(lines=[(a.pk, 6)], order_id=None, actor="test")  # available 4: low

    body = api.get("inventory/summary/").json()

    assert body["product_count"] == 2
    assert body["units_on_hand"] == 13
    assert body["units_reserved"] == 6
    assert body["units_available"] == 7
    assert Decimal(body["stock_value"]) == Decimal("55.00")
    assert body["low_stock_count"] == 2
    assert body["cached"] is False


@pytest.mark.django_db(transaction=True)  # invalidation runs on a real commit
def test_summary_is_cached_and_invalidated_by_an_adjustment(api):
    # given: a cached summary
    product = make_product(stock=10)
    first = api.get("inventory/summary/").json()
    assert first["cached"] is False and first["units_on_hand"] == 10
    assert api.get("inventory/summary/").json()["cached"] is True

    # when
    adjusted = api.post(f"inventory/{product.pk}/adjust/", {"quantity_change": 5, "reason": "x"})
    assert adjusted.status_code == 200

    # then: the next read recomputes
    after = api.get("inventory/summary/").json()
    assert after["cached"] is False and after["units_on_hand"] == 15


@pytest.mark.django_db(transaction=True)
def test_failed_adjustment_keeps_the_cached_summary(api):
    product = make_product(stock=10)
    api.get("inventory/summary/")

    assert_error(
        api.post(f"inventory/{product.pk}/adjust/", {"quantity_change": -50, "reason": "x"}), 409
    )

    assert api.get("inventory/summary/").json()["cached"] is True


# ----- concurrency -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_random_adjustments_never_500_never_deadlock_and_reconcile():
    # given: 5 products with little stock, so many decrements are refused
    products = [make_product(stock=20).pk for _ in range(5)]
    results: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    keys = [issue_key("admin") for _ in range(16)]  # one per thread: own throttle budget

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        api = ApiClient(Client(), {"Authorization": f"Bearer {keys[seed]}"})
        try:
            start.wait()
            for _ in range(50):
                pid = rng.choice(products)
                delta = rng.choice([-7, -5, -3, -1, 1, 2, 4, 6])
                body: dict = {"quantity_change": delta, "reason": f"thread {seed}"}
                if rng.random() < 0.2:  # some requests carry a (probably stale) version
                    body["expected_version"] = rng.randint(1, 40)
                response = api.post(f"inventory/{pid}/adjust/", body)
                with lock:
                    results.append((response.status_code, pid, delta))
                if response.status_code >= 400:
                    code = response.json()["error"]["code"]
                    assert code in ("invalid_stock_change", "version_conflict"), code
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # then
    assert not errors, errors
    assert len(results) == 16 * 50
    statuses = {s for s, _, _ in results}
    assert statuses <= {200, 409}, statuses
    assert sum(1 for s, _, _ in results if s == 200) > 0
    assert sum(1 for s, _, _ in results if s == 409) > 0
    for pid in products:
        applied = sum(d for s, p, d in results if s == 200 and p == pid)
        level = StockLevel.objects.get(product_id=pid)
        assert level.on_hand == 20 + applied >= 0
        ok_count = sum(1 for s, p, _ in results if s == 200 and p == pid)
        assert level.version == 2 + ok_count
        assert StockMovement.objects.filter(product_id=pid).count() == 1 + ok_count
    outcome = inventory_reconcile()
    assert outcome.ok, outcome.drifts
    assert outcome.products_checked == 5


# ----- product endpoints: low_stock/ and {id}/stock_history/ ----------------------------------


def test_products_low_stock_lists_available_at_or_below_threshold(api):
    low = make_product(stock=5, threshold=10, sku="P-LOW")
    edge = make_product(stock=12, threshold=10, sku="P-EDGE")
    make_product(stock=50, threshold=10, sku="P-OK")
    make_product(stock=1, threshold=10, sku="P-OFF", active=False)
    stock_reserve(lines=[(edge.pk, 2)], order_id=None, actor="t")  # available 10 == threshold

    response = api.get("products/low_stock/")

    assert response.status_code == 200, response.content  # not taken for a product id
    body = response.json()
    assert [p["sku"] for p in body["items"]] == ["P-LOW", "P-EDGE", "P-OFF"]
    assert body["items"][0]["id"] == low.pk
    assert body["items"][0]["stock"]["is_low"] is True
    active = api.get("products/low_stock/?is_active=true").json()
    assert [p["sku"] for p in active["items"]] == ["P-LOW", "P-EDGE"]
    assert api.get("products/low_stock/?limit=1").json()["count"] == 3


def test_products_stock_history_shows_events_with_context_newest_first(api):
    product = make_product(stock=10)
    api.post(
        f"inventory/{product.pk}/adjust/",
        {"quantity_change": 5, "reason": "x"},
        headers={"X-Request-ID": "hist-1"},
    )

    body = api.get(f"products/{product.pk}/stock_history/").json()

    assert body["count"] == 3  # insert, initial receive, adjustment
    newest = body["items"][0]
    assert newest["label"] == "update"
    assert (newest["on_hand"], newest["available"], newest["version"]) == (15, 15, 3)
    assert newest["context"]["request_id"] == "hist-1"
    assert newest["context"]["actor"].startswith("api_key:test-admin-")
    assert [e["label"] for e in body["items"]][-1] == "insert"
    assert_error(api.get("products/999999/stock_history/"), 404, "not_found")
