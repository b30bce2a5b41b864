from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

from fulfillment.services import reports
from fulfillment.services.reports import retention_cleanup
from tests.factories import make_product

pytestmark = pytest.mark.django_db


def test_cleanup_deletes_old_events_in_batches_and_keeps_recent_ones(monkeypatch, settings):
    # given: 7 products (an insert event each), the oldest 5 made older than the retention
    settings.AUDIT_RETENTION_DAYS = 30
    monkeypatch.setattr(reports, "CLEANUP_BATCH", 2)
    product_event = apps.get_model("fulfillment", "ProductEvent")
    products = [make_product(sku=f"RET-{i}") for i in range(7)]
    old = [p.pk for p in products[:5]]
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE fulfillment_productevent SET pgh_created_at = now() - interval '40 days' "
            "WHERE pgh_obj_id = ANY(%s)",
            [old],
        )

    # when: batches of two
    result = retention_cleanup()

    # then: the five old ones went (three batches), the two recent ones stay
    assert result.audit_events_deleted >= 5
    left = set(product_event.objects.values_list("pgh_obj_id", flat=True))
    assert left.isdisjoint(old)
    assert {p.pk for p in products[5:]} <= left
