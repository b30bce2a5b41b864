"""The analytics endpoints against a small data set whose figures are computed by hand, read from
rollups refreshed on the real PostgreSQL (and by a real worker running the periodic job)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from fulfillment import tasks
from fulfillment.models import Order, OrderHourRollup, RollupState
from fulfillment.selectors.analytics import percentile_from_buckets
from fulfillment.services.analytics import analytics_rollups_refresh
from fulfillment.services.stages import order_transition
from tests.conftest import assert_error
from tests.factories import make_order, make_product
from tests.pipeline_support import run_worker_until_idle

Status = Order.Status
BASE = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HOURS = {"from": "2026-03-02T10:00:00Z", "to": "2026-03-02T12:00:00Z"}
DAY = {"from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z"}


def _order(product: Any, qty: int, email: str, created: datetime, **stamps: datetime) -> Order:
    order = make_order(lines=[(product, qty)])
    Order.objects.filter(pk=order.pk).update(customer_email=email, created_at=created, **stamps)
    return order


def _move(order: Order, *targets: str) -> None:
    for target in targets:
        order_transition(target=target, actor="test", order_pk=order.pk)


@pytest.fixture
def dataset(db: Any) -> dict[str, Any]:
    """Four orders of product P (price 10) on 2026-03-02, plus product Q that only received stock:

    o1 a@  2 units 10:05  processing +1 s, shipped +4 s, delivered +20 s   delivered
    o2 a@  1 unit  10:30  processing +3 s                                  processing
    o3 b@  3 units 11:10  cancelled from pending
    o4 c@  1 unit  11:20  processing +1.5 s, then failed
    """
    p = make_product(stock=100, price="10.00")
    q = make_product(stock=5, price="1.00")
    t1 = BASE + timedelta(minutes=5)
    o1 = _order(p, 2, "a@example.com", t1)
    o2 = _order(p, 1, "a@example.com", BASE + timedelta(minutes=30))
    o3 = _order(p, 3, "b@example.com", BASE + timedelta(minutes=70))
    o4 = _order(p, 1, "c@example.com", BASE + timedelta(minutes=80))
    _move(o1, Status.PROCESSING, Status.SHIPPED, Status.DELIVERED)
    _move(o2, Status.PROCESSING)
    _move(o3, Status.CANCELLED)
    _move(o4, Status.PROCESSING, Status.FAILED)
    second = timedelta(seconds=1)
    Order.objects.filter(pk=o1.pk).update(
        processing_at=t1 + second, shipped_at=t1 + 5 * second, delivered_at=t1 + 25 * second
    )
    Order.objects.filter(pk=o2.pk).update(processing_at=_created(o2) + 3 * second)
    Order.objects.filter(pk=o4.pk).update(processing_at=_created(o4) + 1.5 * second)
    return {"p": p, "q": q, "orders": (o1, o2, o3, o4)}


def _created(order: Order) -> datetime:
    return Order.objects.values_list("created_at", flat=True).get(pk=order.pk)


def _get(api_as: Any, path: str, params: dict[str, Any]) -> Any:
    return api_as("viewer").get(f"{path}?{urlencode(params)}")


def _figures(accepted: int, revenue: str, aov: str | None, **by_status: int) -> dict[str, Any]:
    counts = dict.fromkeys(Status.values, 0) | by_status
    return {"accepted": accepted, "by_status": counts, "revenue": revenue,
            "average_order_value": aov}  # fmt: skip


def test_orders_series_by_hour_counts_statuses_revenue_and_average(dataset, api_as):
    analytics_rollups_refresh()

    body = _get(api_as, "/api/v1/analytics/orders/", HOURS).json()

    assert body["bucket"] == "hour"
    assert body["start"].startswith("2026-03-02T10:00:00") and body["end"].startswith(
        "2026-03-02T12:00:00"
    )
    assert [p["start"][:19] for p in body["points"]] == [
        "2026-03-02T10:00:00",
        "2026-03-02T11:00:00",
    ]
    first, second = ({k: v for k, v in p.items() if k != "start"} for p in body["points"])
    assert first == _figures(2, "30.00", "15.00", delivered=1, processing=1)
    assert second == _figures(2, "0.00", None, cancelled=1, failed=1)
    assert body["totals"] == _figures(
        4, "30.00", "15.00", delivered=1, processing=1, cancelled=1, failed=1
    )
    assert body["data_as_of"] is not None and body["age_seconds"] >= 0


def test_orders_series_by_day_aligns_the_window_to_whole_days(dataset, api_as):
    analytics_rollups_refresh()

    body = _get(
        api_as,
        "/api/v1/analytics/orders/",
        {"from": "2026-03-02T09:30:00Z", "to": "2026-03-02T18:00:00Z", "bucket": "day"},
    ).json()

    assert body["start"][:19] == "2026-03-02T00:00:00" and body["end"][:19] == "2026-03-03T00:00:00"
    assert len(body["points"]) == 1
    assert body["points"][0]["accepted"] == 4 and body["points"][0]["revenue"] == "30.00"


def test_stages_report_percentiles_from_buckets_and_failure_rates(dataset, api_as):
    analytics_rollups_refresh()

    body = _get(api_as, "/api/v1/analytics/stages/", HOURS).json()

    stages = {s["stage"]: s for s in body["stages"]}
    assert list(stages) == ["processing", "shipped", "delivered"]
    # processing: 1 s and 1.5 s in [1, 2), 3 s in [2, 5); o3 was cancelled while pending
    assert stages["processing"] == {
        "stage": "processing", "entered": 4, "completed": 3, "failed": 0, "failure_rate": 0.0,
        "mean_seconds": 1.833, "p50_seconds": 1.75, "p95_seconds": 4.55,
    }  # fmt: skip
    # shipped: o1 took 4 s; o4 failed in it
    assert stages["shipped"] == {
        "stage": "shipped", "entered": 3, "completed": 1, "failed": 1, "failure_rate": 0.3333,
        "mean_seconds": 4.0, "p50_seconds": 3.5, "p95_seconds": 4.85,
    }  # fmt: skip
    # delivered: o1 took 20 s, in [10, 30)
    assert stages["delivered"] == {
        "stage": "delivered", "entered": 1, "completed": 1, "failed": 0, "failure_rate": 0.0,
        "mean_seconds": 20.0, "p50_seconds": 20.0, "p95_seconds": 29.0,
    }  # fmt: skip


def test_customers_count_repeat_customers_and_rank_by_revenue(dataset, api_as):
    analytics_rollups_refresh()

    body = _get(api_as, "/api/v1/analytics/customers/", {**DAY, "limit": 1}).json()

    assert {k: v for k, v in body.items() if k not in ("start", "end", "data_as_of", "age_seconds")} == {
        "customers": 3,
        "orders": 4,
        "orders_per_customer": 1.3333,
        "repeat_customers": 1,
        "repeat_customer_rate": 0.3333,
        "revenue": "30.00",
        "average_order_value": "15.00",
        "top_customers": [
            {"customer_email": "a@example.com", "orders": 2, "revenue": "30.00",
             "average_order_value": "15.00"},
        ],
    }  # fmt: skip


def test_inventory_reports_shipped_units_turnover_and_cover_top_movers_first(dataset, api_as):
    # given: the ledger rows were written today (receipts, reservations, o1's shipment)
    analytics_rollups_refresh()
    today = timezone.now().astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    window = {"from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()}

    body = _get(api_as, "/api/v1/analytics/inventory/", window).json()

    assert body["products_moved"] == 2 and body["units_shipped"] == 2
    p, q = body["products"]
    # P: +100 received, 2 shipped: on hand 0 -> 98 (average 49); 1 unit still reserved (o2)
    assert {k: p[k] for k in p if k not in ("sku", "name")} == {
        "product_id": dataset["p"].pk, "units_shipped": 2, "on_hand": 98, "available": 97,
        "average_on_hand": 49.0, "turnover": 0.0408, "days_of_cover": 48.5,
    }  # fmt: skip
    assert {k: q[k] for k in q if k not in ("sku", "name")} == {
        "product_id": dataset["q"].pk, "units_shipped": 0, "on_hand": 5, "available": 5,
        "average_on_hand": 2.5, "turnover": 0.0, "days_of_cover": None,
    }  # fmt: skip


def test_refresh_is_incremental_and_rerunnable(dataset, api_as):
    # given
    first = analytics_rollups_refresh()
    assert first.hours == 2
    rows = list(OrderHourRollup.objects.order_by("hour", "status").values())

    # when: nothing changed, then o2 ships
    analytics_rollups_refresh()
    assert list(OrderHourRollup.objects.order_by("hour", "status").values_list(
        "hour", "status", "orders", "amount")) == [
        (r["hour"], r["status"], r["orders"], r["amount"]) for r in rows
    ]  # fmt: skip
    _move(dataset["orders"][1], Status.SHIPPED)
    analytics_rollups_refresh()

    # then
    hour = OrderHourRollup.objects.filter(hour=BASE)
    assert dict(hour.values_list("status", "orders")) == {"delivered": 1, "shipped": 1}
    assert hour.get(status="shipped").amount == Decimal("10.00")


def test_answers_before_any_refresh_say_the_data_is_missing(db, api_as):
    body = _get(api_as, "/api/v1/analytics/orders/", HOURS).json()

    assert body["data_as_of"] is None and body["totals"]["accepted"] == 0


def test_window_defaults_to_the_last_seven_days(db, api_as):
    body = _get(api_as, "/api/v1/analytics/stages/", {}).json()

    start = datetime.fromisoformat(body["start"])
    end = datetime.fromisoformat(body["end"])
    assert end - start in (timedelta(days=7), timedelta(days=7, hours=1))
    assert abs((end - timezone.now()).total_seconds()) <= 3600


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-03-02T12:00:00Z", "to": "2026-03-02T10:00:00Z"},  # from after to
        {"from": "2026-03-02T10:00:00Z", "to": "2026-03-02T10:00:00Z"},  # empty
        {"from": "2025-01-01T00:00:00Z", "to": "2026-03-02T00:00:00Z"},  # wider than the maximum
        {"from": "yesterday"},
        {"bucket": "week"},
        {"limit": 0},
        {"limit": 101},
        {"unknown": "1"},
    ],
)
def test_bad_windows_and_parameters_are_422_in_the_error_shape(db, api_as, params):
    path = "/api/v1/analytics/orders/" if "bucket" in params else "/api/v1/analytics/customers/"

    response = _get(api_as, path, params)

    assert_error(response, 422, "validation_error")


def test_maximum_span_comes_from_settings(db, api_as, settings):
    settings.ANALYTICS_MAX_SPAN_DAYS = 1

    response = _get(api_as, "/api/v1/analytics/orders/", DAY)
    too_wide = _get(
        api_as,
        "/api/v1/analytics/orders/",
        {"from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:01Z"},
    )

    assert response.status_code == 200
    assert assert_error(too_wide, 422)["details"] == {"max_span_days": 1}


def test_analytics_need_a_key(db, anon_api, settings):
    settings.ALLOW_ANONYMOUS_READS = False

    assert_error(anon_api.get("/api/v1/analytics/orders/"), 401)


def test_percentile_of_an_empty_histogram_is_none_and_open_bucket_is_its_bound():
    assert percentile_from_buckets([0] * 16, 0.5) is None
    assert percentile_from_buckets([0] * 15 + [3], 0.5) == 86400.0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_queue")
def test_periodic_refresh_job_run_by_a_worker_fills_the_rollups():
    # given
    product = make_product(stock=10)
    make_order(lines=[(product, 2)])

    # when
    tasks.analytics_refresh.defer(timestamp=0)
    run_worker_until_idle(queues=("maintenance",))

    # then
    assert RollupState.objects.get(name="analytics").refreshed_at is not None
    assert sum(OrderHourRollup.objects.values_list("orders", flat=True)) == 1
