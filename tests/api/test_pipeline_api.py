"""Pipeline endpoints and the pipeline's part of /health/."""

from __future__ import annotations

import datetime
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from fulfillment.models import DailyReport, Order, ReconciliationRun
from tests.conftest import assert_error
from tests.factories import make_order, make_product

pytestmark = pytest.mark.django_db


def test_check_stale_redefers_a_stuck_order_and_says_what_it_did(api):
    # given: an order whose job vanished 10 minutes ago, and a healthy one
    stuck = make_order(lines=[(make_product(stock=5), 1)])
    make_order(lines=[(make_product(stock=5), 1)])
    with connection.cursor() as cur:
        cur.execute(
            "DELETE FROM procrastinate_jobs WHERE (args->>'order_pk')::bigint = %s", [stuck.pk]
        )
    Order.objects.filter(pk=stuck.pk).update(
        status_changed_at=timezone.now() - timedelta(minutes=10)
    )

    # when
    response = api.post("orders/check_stale/")

    # then
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["checked"] == 1
    assert body["redeferred"] == [str(stuck.order_id)]
    assert body["failed"] == [] and body["skipped_live_job"] == []
    stuck.refresh_from_db()
    assert stuck.recovery_count == 1


def test_check_stale_rejects_a_bad_limit_and_changes_nothing(api):
    order = make_order(lines=[(make_product(stock=5), 1)])
    Order.objects.filter(pk=order.pk).update(
        status_changed_at=timezone.now() - timedelta(minutes=10)
    )
    with connection.cursor() as cur:
        cur.execute("DELETE FROM procrastinate_jobs")

    assert_error(api.post("orders/check_stale/?limit=0"), 422, "validation_error")
    assert_error(api.post("orders/check_stale/?limit=abc"), 422, "validation_error")

    order.refresh_from_db()
    assert order.recovery_count == 0
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM procrastinate_jobs")
        assert cur.fetchone()[0] == 0


def test_daily_reports_are_listed_newest_first_and_readable_by_date(api):
    for day in (1, 2, 3):
        DailyReport.objects.create(
            date=datetime.date(2026, 1, day),
            orders_created=day,
            counts_by_status={"delivered": day},
            revenue="12.50",
        )

    listing = api.get("reports/daily/?date_from=2026-01-02")
    one = api.get("reports/daily/2026-01-03/")

    assert listing.status_code == 200
    assert [r["date"] for r in listing.json()["items"]] == ["2026-01-03", "2026-01-02"]
    assert one.status_code == 200
    assert one.json()["orders_created"] == 3 and one.json()["revenue"] == "12.50"


def test_daily_report_errors_are_in_the_error_shape(api):
    assert_error(api.get("reports/daily/2026-02-01/"), 404, "not_found")
    assert_error(api.get("reports/daily/yesterday/"), 422, "validation_error")
    assert_error(api.get("reports/daily/?date_to=soon"), 422, "validation_error")


def test_health_is_503_naming_workers_when_no_heartbeat_is_fresh(client, settings, live_worker):
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '5 minutes'"
        )

    health = client.get("/health/")
    ready = client.get("/health/ready/")

    assert health.status_code == 503
    body = health.json()
    assert body["failed"] == ["workers"]
    assert body["checks"]["workers"]["live"] == 0
    assert body["checks"]["workers"]["workers"][0]["heartbeat_age_s"] >= 299
    assert ready.status_code == 200


def test_health_shows_queue_figures_and_last_reconciliation(client, live_worker):
    make_order(lines=[(make_product(stock=5), 1)])  # one stage job, due now (zero delays)
    ReconciliationRun.objects.create(ok=False, products_checked=7, drift_count=1, duration_ms=3)

    body = client.get("/health/").json()

    assert body["status"] == "ok"
    assert body["checks"]["workers"]["live"] == 1
    queue = body["checks"]["queue"]
    assert queue["jobs_waiting"] == 1 and 0 <= queue["oldest_waiting_s"] < 60  # deferred just now
    assert queue["failed_last_hour"] == 0
    last = body["checks"]["reconciliation"]["last_run"]
    assert (last["consistent"], last["products_checked"], last["drifts"]) == (False, 7, 1)


def test_procrastinate_admin_is_reachable_from_the_django_admin(admin_client):
    index = admin_client.get("/admin/")
    jobs = admin_client.get("/admin/procrastinate/procrastinatejob/")

    assert index.status_code == 200
    assert b"/admin/procrastinate/procrastinatejob/" in index.content
    assert jobs.status_code == 200
