"""GET /metrics: access, the series the code records, and the gauges read at scrape time."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from fulfillment import metrics, queue
from fulfillment.api.metrics import QUEUES
from fulfillment.models import ReconciliationRun
from fulfillment.selectors import gauges
from tests.conftest import assert_error, issue_key
from tests.factories import make_order, make_product

pytestmark = pytest.mark.django_db

TOKEN = "test-metrics-token-0123456789"


@pytest.fixture(autouse=True)
def _token(settings):
    settings.METRICS_TOKEN = TOKEN


def scrape(client: Client | None = None, **headers: str) -> dict[tuple[str, tuple], float]:
    response = (client or Client()).get(
        "/metrics", headers=headers or {"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return samples(response.content.decode())


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scraped, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def order_body(pid: int, qty: int = 1) -> dict:
    return {
        "customer_name": "Ada",
        "customer_email": "ada@example.com",
        "items": [{"product_id": pid, "quantity": qty}],
    }


# ----- access ------------------------------------------------------------------------------------


def test_metrics_refuses_anonymous_with_401_in_the_error_shape():
    response = Client().get("/metrics")
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_metrics_refuses_a_wrong_token_and_a_key_below_admin():
    assert_error(Client().get("/metrics", headers={"Authorization": "Bearer nope"}), 401)
    operator = issue_key("operator")
    assert_error(Client().get("/metrics", headers={"Authorization": f"Bearer {operator}"}), 401)
    assert_error(Client().get("/metrics", headers={"X-API-Key": operator}), 401)


def test_metrics_accepts_the_token_and_an_admin_key(settings):
    assert value(scrape(), "fulfillment_workers_alive") == 0
    admin = issue_key("admin")
    scrape(Authorization=f"Bearer {admin}")
    scrape(**{"X-API-Key": admin})
    # Without a token configured, an empty bearer is no way in.
    settings.METRICS_TOKEN = ""
    assert_error(Client().get("/metrics", headers={"Authorization": "Bearer "}), 401)
    scrape(Authorization=f"Bearer {admin}")


def test_metrics_turned_off_answers_404_and_records_nothing(settings):
    before = value(scrape(), "fulfillment_orders_accepted_total", source="single")
    settings.METRICS_ENABLED = False
    metrics.order_accepted("single")
    assert_error(
        Client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}), 404, "not_found"
    )
    settings.METRICS_ENABLED = True
    assert value(scrape(), "fulfillment_orders_accepted_total", source="single") == before


def test_metrics_is_not_throttled(settings):
    settings.THROTTLE_RATES = {"key": "2/min", "anon": "2/min"}
    for _ in range(5):
        scrape()


# ----- recorded series ---------------------------------------------------------------------------


def test_intake_counts_accepted_and_rejected_orders_by_source_and_reason(api):
    # given
    product = make_product(stock=3)
    before = scrape()
    # when
    assert api.post("orders/", order_body(product.id)).status_code == 201
    assert api.post("orders/", order_body(product.id, qty=50)).status_code == 409
    assert api.post("orders/", {"items": []}).status_code == 422
    bulk = {"orders": [order_body(product.id), order_body(product.id, qty=99)], "atomic": False}
    assert api.post("orders/bulk_create/", bulk).status_code == 200
    # then
    after = scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("fulfillment_orders_accepted_total", source="single") == 1
    assert delta("fulfillment_orders_accepted_total", source="bulk") == 1
    assert delta("fulfillment_orders_rejected_total", reason="insufficient_stock") == 2
    assert delta("fulfillment_orders_rejected_total", reason="validation") == 1


def test_reads_that_fail_are_not_rejected_orders(api):
    before = scrape()
    assert api.get("orders/00000000-0000-0000-0000-000000000000/").status_code == 404
    after = scrape()
    rejected = {k: v for k, v in after.items() if k[0] == "fulfillment_orders_rejected_total"}
    assert rejected == {
        k: v for k, v in before.items() if k[0] == "fulfillment_orders_rejected_total"
    }


def test_http_requests_are_counted_by_route_template_never_the_raw_path(api):
    # given
    product = make_product()
    order_id = api.post("orders/", order_body(product.id)).json()["order_id"]
    before = scrape()
    # when
    for _ in range(2):
        assert api.get(f"orders/{order_id}/").status_code == 200
    # then
    after = scrape()
    route = "api/v1/orders/<uuidstr:order_id>/"
    labels = {"route": route, "method": "GET", "status": "200"}
    assert (
        value(after, "fulfillment_http_requests_total", **labels)
        - value(before, "fulfillment_http_requests_total", **labels)
        == 2
    )
    assert (
        value(after, "fulfillment_http_request_duration_seconds_count", route=route, method="GET")
        >= 2
    )
    assert not [k for k in after if any(order_id in v for _, v in k[1])]


@pytest.mark.django_db(transaction=True)
def test_stage_transitions_are_counted_when_committed(empty_queue):
    from fulfillment.services.stages import order_advance, order_cancel

    # given
    product = make_product()
    first, second = (make_order(lines=[(product, 1)]) for _ in range(2))
    before = scrape()
    # when
    order_advance(order_pk=first.pk, expected_status="pending", actor="test")
    order_cancel(order_id=second.order_id, actor="test")
    # then
    after = scrape()
    for to in ("processing", "cancelled"):
        labels = {"to": to}
        assert (
            value(after, "fulfillment_stage_transitions_total", **labels)
            - value(before, "fulfillment_stage_transitions_total", **labels)
            == 1
        )


def test_stage_lag_is_the_start_minus_the_scheduled_time():
    before = value(scrape(), "fulfillment_stage_lag_seconds_count")
    metrics.stage_lag_since(timezone.now() - timedelta(seconds=3))
    metrics.stage_lag_since(None)  # deferred without a time: no lag to observe
    after = scrape()
    assert value(after, "fulfillment_stage_lag_seconds_count") == before + 1
    assert value(after, "fulfillment_stage_lag_seconds_bucket", le="2.5") < value(
        after, "fulfillment_stage_lag_seconds_bucket", le="5.0"
    )


def test_webhook_series_exist_and_record_deliveries():
    scraped = scrape()
    assert ("fulfillment_webhook_deliveries_total", (("outcome", "succeeded"),)) in scraped
    assert ("fulfillment_webhook_delivery_lag_seconds_count", ()) in scraped
    metrics.webhook_delivery("retry", None)
    metrics.webhook_delivery("succeeded", 1.5)
    after = scrape()
    for outcome in ("retry", "succeeded"):
        assert (
            value(after, "fulfillment_webhook_deliveries_total", outcome=outcome)
            == value(scraped, "fulfillment_webhook_deliveries_total", outcome=outcome) + 1
        )
    assert (
        value(after, "fulfillment_webhook_delivery_lag_seconds_count")
        == value(scraped, "fulfillment_webhook_delivery_lag_seconds_count") + 1
    )


# ----- gauges read at scrape time ----------------------------------------------------------------


def test_gauges_report_orders_jobs_workers_stock_and_drift(live_worker):
    # given
    low = make_product(stock=5, threshold=10)
    make_product(stock=100, threshold=10)
    for _ in range(3):
        make_order(lines=[(low, 1)])
    ReconciliationRun.objects.create(ok=False, drift_count=2, products_checked=2)
    # when
    scraped = scrape()
    # then
    assert value(scraped, "fulfillment_orders_in_status", status="pending") == 3
    assert value(scraped, "fulfillment_orders_in_status", status="delivered") == 0
    assert value(scraped, "fulfillment_jobs_waiting", queue="pipeline") >= 3
    assert value(scraped, "fulfillment_oldest_waiting_job_seconds", queue="pipeline") >= 0
    assert ("fulfillment_jobs_waiting", (("queue", "maintenance"),)) in scraped
    assert value(scraped, "fulfillment_workers_alive") == 1
    assert value(scraped, "fulfillment_low_stock_products") == 1
    assert value(scraped, "fulfillment_reconciliation_drift_products") == 2
    assert value(scraped, "fulfillment_metrics_state_up") == 1


def test_counts_beyond_the_cap_are_the_planners_estimate():
    product = make_product(stock=50)
    for _ in range(4):
        make_order(lines=[(product, 1)])
    with connection.cursor() as cur:
        cur.execute("ANALYZE fulfillment_order")
    exact = gauges.orders_in_status(cap=10)
    assert exact["pending"] == gauges.Count(4, True)
    capped = gauges.orders_in_status(cap=2)["pending"]
    assert not capped.exact and capped.value >= 2


def test_head_of_queue_wait_counts_from_the_scheduled_time(empty_queue):
    due = timezone.now() - timedelta(seconds=30)
    queue.defer_stage_jobs([queue.StageJob(1, "pending", due), queue.StageJob(2, "pending")])
    later = timezone.now() + timedelta(hours=1)
    queue.defer_stage_jobs([queue.StageJob(3, "pending", later)])
    waiting = {q.queue: q for q in queue.waiting_by_queue(QUEUES, cap=100)}
    assert waiting["pipeline"].waiting == 2 and waiting["pipeline"].exact
    assert 29 <= waiting["pipeline"].head_wait_s < 120
    assert waiting["maintenance"].waiting == 0 and waiting["maintenance"].head_wait_s == 0
    capped = queue.waiting_by_queue(QUEUES, cap=1)[0]
    assert not capped.exact and capped.waiting >= 1


# ----- the worker's own port ---------------------------------------------------------------------


def test_worker_metrics_port_serves_the_series_with_the_token():
    metrics.stage_transition("shipped")
    server = metrics.serve_worker_metrics(0, host="127.0.0.1")
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            scraped = samples(response.read().decode())
        assert value(scraped, "fulfillment_stage_transitions_total", to="shipped") >= 1
        assert "fulfillment_orders_in_status" not in {k[0] for k in scraped}
    finally:
        server.shutdown()
        server.server_close()
