"""Backpressure: /health/ reports the queue lag and whether the pipeline is behind; opt-in, intake
refuses orders with 503 + Retry-After meanwhile. The queue state is real: due jobs made old by
deferring them with an old ``scheduled_at`` while no worker runs, then a real worker drains them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from fulfillment import backpressure
from fulfillment.models import Order
from fulfillment.tasks import noop
from tests.conftest import assert_error
from tests.factories import make_order, make_product
from tests.pipeline_support import run_worker_until_idle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_queue")]


@pytest.fixture(autouse=True)
def _fresh_lag() -> Iterator[None]:
    backpressure.forget()
    yield
    backpressure.forget()


def order_body(product_id: int) -> dict[str, object]:
    return {
        "customer_name": "Ada Lovelace",
        "customer_email": "ada@example.com",
        "items": [{"product_id": product_id, "quantity": 1}],
    }


def make_stage_job_overdue(seconds: float) -> int:
    """A pending order whose first stage job was due ``seconds`` ago (negative: is due in
    ``-seconds``) and never ran."""
    order = make_order(lines=[(make_product(stock=5), 1)])
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now() - make_interval(secs => %s) "
            "WHERE status = 'todo' AND (args->>'order_pk')::bigint = %s",
            [seconds, order.pk],
        )
        assert cur.rowcount == 1
    return order.pk


def test_health_reports_no_lag_when_no_due_job_waits(client, live_worker, settings):
    settings.BACKPRESSURE_LAG_SECONDS = 30
    # a job scheduled in the future is not late
    make_stage_job_overdue(-300)

    response = client.get("/health/")

    assert response.status_code == 200, response.content
    check = response.json()["checks"]["backpressure"]
    assert check == {
        "ok": True,
        "queue_lag_s": 0.0,
        "behind": False,
        "threshold_s": 30,
        "rejecting_intake": False,
    }


def test_health_says_behind_when_the_oldest_due_job_waited_past_the_threshold(
    client, live_worker, settings
):
    settings.BACKPRESSURE_LAG_SECONDS = 30
    make_stage_job_overdue(120)

    response = client.get("/health/")

    # behind is reported, not fatal: the web node stays in service
    assert response.status_code == 200, response.content
    check = response.json()["checks"]["backpressure"]
    assert check["behind"] is True
    assert 119 <= check["queue_lag_s"] < 180
    assert check["rejecting_intake"] is False


def test_lag_of_a_job_without_scheduled_time_counts_from_when_it_was_deferred(settings):
    settings.BACKPRESSURE_LAG_SECONDS = 30
    noop.defer()
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE procrastinate_events SET at = now() - interval '90 seconds' "
            "WHERE type = 'deferred'"
        )

    lag = backpressure.queue_lag(fresh=True)

    assert 89 <= lag.lag_s < 150 and lag.behind


def test_intake_answers_503_with_retry_after_while_behind_when_rejection_is_on(api, settings):
    settings.BACKPRESSURE_REJECT_INTAKE = True
    settings.BACKPRESSURE_LAG_SECONDS = 30
    overdue = make_stage_job_overdue(45)
    product = make_product(stock=10)

    single = api.post("orders/", order_body(product.pk))
    bulk = api.post("orders/bulk_create/", {"orders": [order_body(product.pk)]})

    for response in (single, bulk):
        error = assert_error(response, 503, "pipeline_behind")
        assert 1 <= int(response["Retry-After"]) <= 60
        assert error["details"]["retry_after"] == int(response["Retry-After"])
        assert error["details"]["threshold_s"] == 30
        assert error["details"]["lag_s"] >= 44
    # nothing written: only the overdue order exists, the product's stock is untouched
    assert list(Order.objects.values_list("pk", flat=True)) == [overdue]
    product.stock.refresh_from_db()
    assert product.stock.reserved == 0


def test_intake_accepts_while_behind_when_rejection_is_off(api, settings):
    settings.BACKPRESSURE_LAG_SECONDS = 30
    assert settings.BACKPRESSURE_REJECT_INTAKE is False  # the default
    make_stage_job_overdue(120)
    product = make_product(stock=10)

    with CaptureQueriesContext(connection) as queries:
        response = api.post("orders/", order_body(product.pk))

    assert response.status_code == 201, response.content
    # rejection off: intake never reads the lag
    assert not any("procrastinate_events e" in q["sql"] for q in queries.captured_queries)


def test_intake_accepts_again_once_a_worker_has_caught_up(api, settings):
    # given: behind, intake refusing
    settings.BACKPRESSURE_REJECT_INTAKE = True
    settings.BACKPRESSURE_LAG_SECONDS = 30
    make_stage_job_overdue(120)
    product = make_product(stock=10)
    assert api.post("orders/", order_body(product.pk)).status_code == 503

    # when: a real worker runs the overdue job
    run_worker_until_idle()

    # then: within the cache window intake still refuses; after it, it accepts
    assert api.post("orders/", order_body(product.pk)).status_code == 503
    backpressure.forget()  # as BACKPRESSURE_CACHE_SECONDS passing does
    response = api.post("orders/", order_body(product.pk))
    assert response.status_code == 201, response.content
    assert backpressure.queue_lag().behind is False


def test_the_lag_is_read_at_most_once_per_cache_window(api, settings):
    settings.BACKPRESSURE_REJECT_INTAKE = True
    settings.BACKPRESSURE_CACHE_SECONDS = 60
    product = make_product(stock=10)

    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            assert api.post("orders/", order_body(product.pk)).status_code == 201

    reads = [q for q in queries.captured_queries if "procrastinate_events e" in q["sql"]]
    assert len(reads) == 1
