"""The admin: events read-only, endpoints with their state (enable, disable, rotate), deliveries
with their attempts and a retry action."""

from __future__ import annotations

import pytest
from django.utils import timezone

from fulfillment.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from fulfillment.services import webhooks
from tests.factories import make_order, make_product

pytestmark = pytest.mark.django_db


def _endpoint() -> WebhookEndpoint:
    endpoint, _ = webhooks.webhook_endpoint_create(
        url="https://hooks.example.com/in", event_types=["*"]
    )
    return endpoint


def test_event_endpoint_and_delivery_pages_show_without_the_secret(admin_client):
    endpoint = _endpoint()
    make_order(lines=[(make_product(stock=5), 1)])
    event = Event.objects.first()
    assert event is not None
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id=event.pk,
        event_type=event.type,
        status="failed",
        attempts=1,
        created_at=timezone.now(),
    )
    WebhookAttempt.objects.create(delivery=delivery, number=1, status_code=500, error="")

    for path in (
        "/admin/fulfillment/event/",
        f"/admin/fulfillment/event/{event.pk}/change/",
        "/admin/fulfillment/webhookendpoint/",
        f"/admin/fulfillment/webhookendpoint/{endpoint.pk}/change/",
        "/admin/fulfillment/webhookdelivery/",
        f"/admin/fulfillment/webhookdelivery/{delivery.pk}/change/",
    ):
        response = admin_client.get(path)
        assert response.status_code == 200, path
        assert endpoint.secret.encode() not in response.content
    assert admin_client.get("/admin/fulfillment/event/add/").status_code == 403


def test_retry_and_disable_actions(admin_client):
    endpoint = _endpoint()
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event_id=1,
        event_type="order.created",
        status="failed",
        attempts=11,
        created_at=timezone.now(),
    )

    admin_client.post(
        "/admin/fulfillment/webhookdelivery/",
        {"action": "retry", "_selected_action": [delivery.pk]},
    )
    admin_client.post(
        "/admin/fulfillment/webhookendpoint/",
        {"action": "disable", "_selected_action": [endpoint.pk]},
    )

    delivery.refresh_from_db()
    endpoint.refresh_from_db()
    assert delivery.status == "pending"
    assert not endpoint.is_active and endpoint.disabled_reason == "disabled by an administrator"
