"""The staff operations page /ops/ and its JSON endpoint, through Django's test client on the real
PostgreSQL (the page in a real browser: tests/browser/test_ops_page.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from fulfillment.models import Order, ReconciliationRun
from fulfillment.selectors import ops
from fulfillment.services.stages import order_transition
from tests.factories import make_order, make_product

Status = Order.Status


@pytest.fixture
def staff_client(db: Any) -> Client:
    user = get_user_model().objects.create_user("ops", "ops@example.com", "pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def test_anonymous_users_are_sent_to_the_admin_login(db):
    response = Client().get("/ops/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=/ops/")


def test_users_who_are_not_staff_are_sent_to_the_login_and_refused_the_data(db):
    user = get_user_model().objects.create_user("shopper", "s@example.com", "pw")
    client = Client()
    client.force_login(user)

    assert client.get("/ops/").status_code == 302
    data = client.get("/ops/data/")
    assert data.status_code == 403 and data.json()["error"]["code"] == "forbidden"
    assert Client().get("/ops/data/").status_code == 403


def test_page_loads_its_chart_library_from_this_app_and_the_admin_links_to_it(staff_client):
    page = staff_client.get("/ops/")
    index = staff_client.get("/admin/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/ops/vendor/uplot-1.6.32/uPlot.iife.min.js" in html
    assert "/static/ops/ops.js" in html
    assert 'data-url="/ops/data/"' in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org', "") and "https://" not in html
    assert 'href="/ops/"' in index.content.decode()


def test_data_shows_throughput_in_flight_stock_failures_and_reconciliation(staff_client):
    # given: three orders, one delivered, one failed, one still pending; a product low on stock
    product = make_product(stock=10, threshold=5)
    delivered, failed, _pending = (make_order(lines=[(product, 2)]) for _ in range(3))
    for target in (Status.PROCESSING, Status.SHIPPED, Status.DELIVERED):
        order_transition(target=target, actor="test", order_pk=delivered.pk)
    order_transition(
        target=Status.FAILED, actor="test", order_pk=failed.pk, reason="carrier lost it"
    )
    ReconciliationRun.objects.create(ok=True, products_checked=1)

    # when
    data = staff_client.get("/ops/data/").json()

    # then
    series = data["throughput"]["series"]
    assert len(data["throughput"]["minutes"]) == ops.THROUGHPUT_MINUTES
    assert sum(series["pending"]) == 3  # accepted
    assert sum(series["processing"]) == 1 and sum(series["delivered"]) == 1
    assert sum(series["failed"]) == 1
    assert data["in_flight"] == {"pending": 1, "processing": 0, "shipped": 0}
    # 10 received, 2 shipped, 2 reserved: 6 available, above the threshold of 5... not low
    assert data["low_stock"] == []
    [failure] = data["failures"]
    assert failure["order_id"] == str(failed.order_id) and failure["reason"] == "carrier lost it"
    assert failure["admin_url"] == f"/admin/fulfillment/order/{failed.pk}/change/"
    assert data["reconciliation"]["ok"] is True
    assert {"queues", "workers", "stage_lag"} <= set(data)


def test_data_lists_low_and_out_of_stock_products_with_admin_links(staff_client):
    low = make_product(stock=3, threshold=5)
    out = make_product(stock=1, threshold=5)
    make_order(lines=[(out, 1)])
    make_product(stock=50, threshold=5)

    rows = staff_client.get("/ops/data/").json()["low_stock"]

    assert [(r["product_id"], r["available"], r["out_of_stock"]) for r in rows] == [
        (out.pk, 0, True),
        (low.pk, 3, False),
    ]
    assert rows[0]["admin_url"].startswith("/admin/fulfillment/stocklevel/")


def test_data_lists_webhook_endpoints_failing_and_disabled_first_with_admin_links(staff_client):
    from django.utils import timezone

    from fulfillment.models import WebhookEndpoint

    def endpoint(url: str, **state: Any) -> WebhookEndpoint:
        return WebhookEndpoint.objects.create(
            url=url, event_types=["*"], secret="whsec_dGVzdA==", **state
        )

    healthy = endpoint("https://ok.example/hook")
    failing = endpoint("https://failing.example/hook", failing_since=timezone.now())
    disabled = endpoint(
        "https://gone.example/hook", is_active=False, disabled_reason="the receiver answered 410"
    )

    rows = staff_client.get("/ops/data/").json()["webhooks"]

    assert [(r["id"], r["state"]) for r in rows] == [
        (disabled.pk, "disabled: the receiver answered 410"),
        (failing.pk, "failing"),
        (healthy.pk, "ok"),
    ]
    assert rows[1]["failing_since"] and not rows[2]["failing_since"]
    assert rows[0]["admin_url"] == f"/admin/fulfillment/webhookendpoint/{disabled.pk}/change/"


@pytest.mark.usefixtures("empty_queue")
def test_data_shows_jobs_waiting_per_queue_and_live_workers(staff_client, live_worker):
    product = make_product(stock=10)
    make_order(lines=[(product, 1)])  # defers its first stage job on the pipeline queue

    data = staff_client.get("/ops/data/").json()

    [pipeline] = [q for q in data["queues"] if q["queue"] == "pipeline"]
    assert pipeline["waiting"] >= 1 and pipeline["oldest_waiting_s"] >= 0
    assert [w["id"] for w in data["workers"]] == [live_worker]


@pytest.mark.usefixtures("empty_queue")
def test_stage_lag_p99_comes_from_the_started_events_of_stage_jobs(staff_client):
    # given: a stage job due 2 s before it started
    product = make_product(stock=10)
    make_order(lines=[(product, 1)])
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE procrastinate_jobs SET scheduled_at = now() - interval '2 seconds'"
            " WHERE task_name = 'fulfillment.advance_order' RETURNING id"
        )
        [(job_id,)] = cur.fetchall()
        cur.execute(
            "INSERT INTO procrastinate_events (job_id, type, at) VALUES (%s, 'started', now())",
            [job_id],
        )

    lag = staff_client.get("/ops/data/").json()["stage_lag"]

    assert lag["sample"] == 1 and lag["p99_seconds"] == pytest.approx(2.0, abs=0.01)
