"""The admin: job-written records are visible read-only, and tracked objects link to their
pghistory events."""

from __future__ import annotations

import html
import re
from datetime import date

import pytest
from django.contrib import admin
from django.test import RequestFactory

from fulfillment.models import DailyReport, IdempotencyRecord, Order, ReconciliationRun
from tests.factories import make_product

pytestmark = pytest.mark.django_db


def _daily_report() -> DailyReport:
    return DailyReport.objects.create(
        date=date(2026, 1, 2), orders_created=3, counts_by_status={"delivered": 3}, revenue=42
    )


def _reconciliation_run() -> ReconciliationRun:
    return ReconciliationRun.objects.create(ok=True, products_checked=7, duration_ms=1.5)


def _idempotency_record() -> IdempotencyRecord:
    return IdempotencyRecord.objects.create(
        key="retry-123", scope="orders.create", request_hash="0" * 64, status_code=201, body={}
    )


READ_ONLY = [
    pytest.param(DailyReport, _daily_report, "dailyreport", id="daily-report"),
    pytest.param(ReconciliationRun, _reconciliation_run, "reconciliationrun", id="reconciliation"),
    pytest.param(IdempotencyRecord, _idempotency_record, "idempotencyrecord", id="idempotency"),
]


@pytest.mark.parametrize(("model", "make", "name"), READ_ONLY)
def test_job_records_are_visible_to_a_superuser(admin_client, model, make, name):
    row = make()

    index = admin_client.get("/admin/")
    changelist = admin_client.get(f"/admin/fulfillment/{name}/")
    detail = admin_client.get(f"/admin/fulfillment/{name}/{row.pk}/change/")

    assert f'href="/admin/fulfillment/{name}/"'.encode() in index.content
    assert changelist.status_code == 200
    assert f"/admin/fulfillment/{name}/{row.pk}/change/".encode() in changelist.content
    assert detail.status_code == 200
    assert html.escape(str(row)).encode() in detail.content


@pytest.mark.parametrize(("model", "make", "name"), READ_ONLY)
def test_job_records_cannot_be_added_changed_or_deleted(
    admin_client, admin_user, model, make, name
):
    # given
    row = make()
    before = list(model.objects.values())
    url = f"/admin/fulfillment/{name}/{row.pk}/"

    # when
    add = admin_client.get(f"/admin/fulfillment/{name}/add/")
    change = admin_client.post(f"{url}change/", {"status_code": "500", "ok": "", "revenue": "1"})
    delete = admin_client.post(f"{url}delete/", {"post": "yes"})
    bulk_delete = admin_client.post(
        f"/admin/fulfillment/{name}/",
        {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"},
    )

    # then: every write is refused, the row is unchanged, every field is read-only
    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    assert bulk_delete.status_code == 200  # the action is not offered: the list is shown again
    assert list(model.objects.values()) == before
    request = RequestFactory().get("/")
    request.user = admin_user
    model_admin = admin.site._registry[model]
    concrete = {f.name for f in model._meta.get_fields() if f.concrete}
    assert set(model_admin.get_readonly_fields(request, row)) == concrete
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, row)
    assert not model_admin.has_delete_permission(request, row)
    assert model_admin.has_view_permission(request, row)


def test_order_change_page_links_to_its_events(admin_client, api):
    # given: an order taken through the API (its insert is recorded by pghistory)
    product = make_product(stock=5)
    created = api.post(
        "orders/",
        {
            "customer_name": "Ada",
            "customer_email": "ada@example.com",
            "items": [{"product_id": product.pk, "quantity": 2}],
        },
    )
    assert created.status_code == 201, created.content
    order = Order.objects.get(order_id=created.json()["order_id"])

    # when
    page = admin_client.get(f"/admin/fulfillment/order/{order.pk}/change/")

    # then: the "Events" button points at this order's events, and that page lists them
    assert page.status_code == 200
    links = re.findall(r'<a href="([^"]+)" class="events-admin">\s*Events\s*</a>', page.text)
    assert len(links) == 1, page.text
    link = html.unescape(links[0])
    assert link.startswith("/admin/pghistory/events/?")
    assert f"obj=fulfillment.Order:{order.pk}" in link
    events = admin_client.get(link)
    assert events.status_code == 200
    rows = list(events.context["cl"].result_list)
    assert [(r.pgh_obj_model, r.pgh_obj_id, r.pgh_label) for r in rows] == [
        ("fulfillment.Order", str(order.pk), "insert")
    ]


def test_order_changelist_links_to_the_events_of_every_order(admin_client):
    page = admin_client.get("/admin/fulfillment/order/")

    assert page.status_code == 200
    assert re.search(
        r'<a href="/admin/pghistory/events/\?model=fulfillment.Order[^"]*" class="events-admin">',
        page.text,
    ), page.text
