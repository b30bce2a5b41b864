"""Schedules and the maintenance jobs, run by a real worker."""

from __future__ import annotations

import datetime
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from procrastinate.contrib.django import app

from fulfillment import tasks
from fulfillment.models import DailyReport, Order, ReconciliationRun
from fulfillment.services import stages
from fulfillment.services.reports import daily_report_build
from tests.factories import make_order, make_product
from tests.pipeline_support import jobs, run_worker_until_idle

Status = Order.Status


def test_periodic_tasks_are_registered_with_their_schedules():
    schedules = {(pt.task.name, pt.cron) for pt in app.periodic_registry.periodic_tasks.values()}

    assert schedules == {
        ("fulfillment.heal_stale_orders", "* * * * *"),
        ("fulfillment.retry_stalled_jobs", "* * * * *"),
        ("fulfillment.daily_report", "0 0 * * *"),
        ("fulfillment.retention_cleanup", "30 3 * * 0"),
        ("fulfillment.inventory_reconciliation", "0 * * * *"),
        ("fulfillment.analytics_refresh", "* * * * *"),
        ("fulfillment.dispatch_events", "* * * * * *"),
        ("fulfillment.statistics_refresh", "* * * * *"),
    }
    for name in (
        "fulfillment.heal_stale_orders",
        "fulfillment.retry_stalled_jobs",
        "fulfillment.statistics_refresh",
    ):
        task = app.tasks[name]
        assert task.queueing_lock and task.lock is None  # a lock could stall the job itself


@pytest.mark.django_db
def test_daily_report_counts_orders_revenue_and_stage_durations():
    # given: today, one delivered order (10.00), one cancelled (20.00), one pending (5.00)
    p10, p20, p5 = (make_product(stock=9, price=p) for p in ("10.00", "20.00", "5.00"))
    delivered = make_order(lines=[(p10, 1)])
    for target in (Status.PROCESSING, Status.SHIPPED, Status.DELIVERED):
        stages.order_transition(order_pk=delivered.pk, target=target, actor="test")
    cancelled = make_order(lines=[(p20, 1)])
    stages.order_transition(order_pk=cancelled.pk, target=Status.CANCELLED, actor="test")
    make_order(lines=[(p5, 1)])

    # when
    report = daily_report_build(day=timezone.localdate())
    again = daily_report_build(day=timezone.localdate())

    # then
    assert report.orders_created == 3
    assert report.counts_by_status == {
        "pending": 1,
        "processing": 0,
        "shipped": 0,
        "delivered": 1,
        "cancelled": 1,
        "failed": 0,
    }
    assert str(report.revenue) == "15.00"
    assert 0 <= report.avg_seconds_to_processing <= report.avg_seconds_to_delivered
    assert again.pk == report.pk and DailyReport.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_queue")
def test_midnight_job_reports_on_the_day_that_ended():
    make_order(lines=[(make_product(stock=5), 1)])
    today = timezone.localdate()
    midnight = datetime.datetime.combine(today + timedelta(days=1), datetime.time.min)

    tasks.daily_report.defer(timestamp=int(midnight.replace(tzinfo=datetime.UTC).timestamp()))
    run_worker_until_idle(queues=("maintenance",))

    report = DailyReport.objects.get()
    assert report.date == today and report.orders_created == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_queue")
def test_weekly_cleanup_deletes_old_audit_events_and_finished_jobs_only(settings):
    # given: a delivered order (3 finished jobs, audit events), then everything made old
    settings.AUDIT_RETENTION_DAYS = 30
    settings.JOB_RETENTION_HOURS = 24
    order = make_order(lines=[(make_product(stock=5), 1)])
    run_worker_until_idle()
    with connection.cursor() as cur:
        cur.execute("UPDATE fulfillment_orderevent SET pgh_created_at = now() - interval '40 days'")
        cur.execute("UPDATE procrastinate_events SET at = now() - interval '2 days'")
    fresh = make_order(lines=[(make_product(stock=5), 1)])  # recent events, a todo job

    # when
    tasks.retention_cleanup.defer(timestamp=0)
    run_worker_until_idle(queues=("maintenance",))

    # then
    from fulfillment.models import OrderEvent  # type: ignore[attr-defined]

    assert not OrderEvent.objects.filter(pgh_obj_id=order.pk).exists()
    assert OrderEvent.objects.filter(pgh_obj_id=fresh.pk).exists()
    remaining = jobs()
    assert [(j["status"], j["args"]["order_pk"]) for j in remaining] == [("todo", fresh.pk)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_queue")
def test_jobs_of_a_worker_that_stopped_heartbeating_are_retried(settings):
    # given: a dead worker (old heartbeat) that had taken an order's stage job
    settings.STALLED_WORKER_SECONDS = 30
    order = make_order(lines=[(make_product(stock=5), 1)])
    with connection.cursor() as cur:
        cur.execute("SELECT worker_id FROM procrastinate_register_worker_v1()")
        dead = cur.fetchone()[0]
        cur.execute("SELECT id FROM procrastinate_fetch_job_v2(%s, %s)", [["pipeline"], dead])
        taken = cur.fetchone()[0]
        cur.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '5 minutes'"
        )
    assert [j["status"] for j in jobs()] == ["doing"]

    # when
    tasks.retry_stalled_jobs.defer(timestamp=0)
    run_worker_until_idle(queues=("maintenance",))
    run_worker_until_idle()

    # then
    assert jobs()[0]["id"] == taken and jobs()[0]["status"] == "succeeded"
    order.refresh_from_db()
    assert order.status == Status.DELIVERED
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM procrastinate_workers WHERE id = %s", [dead])
        assert cur.fetchone()[0] == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_queue")
def test_hourly_reconciliation_records_its_result_and_drift_for_health(client, live_worker):
    # given: consistent stock, then a change that bypassed the ledger
    product = make_product(stock=5)
    make_order(lines=[(product, 2)])
    tasks.inventory_reconciliation.defer(timestamp=0)
    run_worker_until_idle(queues=("maintenance",))
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE fulfillment_stocklevel SET on_hand = on_hand + 1 WHERE product_id = %s",
            [product.pk],
        )

    # when
    tasks.inventory_reconciliation.defer(timestamp=1)
    run_worker_until_idle(queues=("maintenance",))

    # then
    first, second = ReconciliationRun.objects.order_by("id")
    assert (first.ok, first.products_checked, first.drift_count) == (True, 1, 0)
    assert (second.ok, second.drift_count) == (False, 1)
    assert second.drifts[0]["product_id"] == product.pk
    last = client.get("/health/").json()["checks"]["reconciliation"]["last_run"]
    assert (last["consistent"], last["drifts"]) == (False, 1)
