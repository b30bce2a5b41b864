"""Webhook endpoints through the API: admin only, strict input, the secret shown once."""

from __future__ import annotations

import pytest

from fulfillment.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

GOOD = {"url": "https://hooks.example.com/in", "event_types": ["order.shipped"], "description": "x"}


def test_create_returns_201_with_a_whsec_secret_shown_only_once(api):
    response = api.post("webhooks/", GOOD)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["event_types"] == ["order.shipped"] and body["is_active"] is True
    shown = api.get(f"webhooks/{body['id']}/").json()
    assert "secret" not in shown
    assert all("secret" not in item for item in api.get("webhooks/").json()["items"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"url": "ftp://hooks.example.com/in"}, "url"),
        ({"url": "not a url at all"}, "url"),
        ({"url": "http://127.0.0.1:8000/in"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "url"),
        ({"url": "http://user:pw@hooks.example.com/"}, "url"),
        ({"event_types": []}, "event_types"),
        ({"event_types": ["order.exploded"]}, "event_types"),
        ({"event_types": ["*", "order.shipped"]}, "event_types"),
        ({"event_types": ["order.shipped", "order.shipped"]}, "event_types"),
        ({"secret": "mine"}, "secret"),
        ({"description": "x" * 501}, "description"),
        ({"url": "https://hooks.example.com/in\x00"}, "url"),
        ({"description": "nul\x00byte"}, "description"),
    ],
)
def test_bad_input_is_422_and_writes_nothing(api, change, field):
    response = api.post("webhooks/", {**GOOD, **change})

    assert_error(response, 422)
    assert not WebhookEndpoint.objects.exists()


def test_patch_changes_fields_and_refuses_non_boolean_is_active(api):
    endpoint = api.post("webhooks/", GOOD).json()

    assert_error(api.patch(f"webhooks/{endpoint['id']}/", {"is_active": "false"}), 422)
    assert_error(api.patch(f"webhooks/{endpoint['id']}/", {"event_types": ["nope"]}), 422)
    body = api.patch(
        f"webhooks/{endpoint['id']}/", {"is_active": False, "event_types": ["*"]}
    ).json()

    assert body["is_active"] is False and body["event_types"] == ["*"]
    assert body["disabled_reason"] == "disabled by an administrator"
    body = api.patch(f"webhooks/{endpoint['id']}/", {"is_active": True}).json()
    assert body["is_active"] is True and body["disabled_reason"] == ""


def test_rotate_secret_returns_a_new_secret(api):
    endpoint = api.post("webhooks/", GOOD).json()

    rotated = api.post(f"webhooks/{endpoint['id']}/rotate_secret/").json()

    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
    assert WebhookEndpoint.objects.get().secret == rotated["secret"]


def test_delete_removes_the_endpoint_and_its_deliveries(api):
    endpoint = api.post("webhooks/", GOOD).json()

    assert api._call("delete", f"webhooks/{endpoint['id']}/").status_code == 204

    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()
    assert_error(api.get(f"webhooks/{endpoint['id']}/"), 404, "not_found")


def test_webhooks_are_admin_only_reads_included(api_as):
    for role in ("viewer", "operator"):
        client = api_as(role)
        assert_error(client.get("webhooks/"), 403)
        assert_error(client.post("webhooks/", GOOD), 403)
    assert not WebhookEndpoint.objects.exists()


def test_unknown_endpoint_is_404_everywhere(api):
    assert_error(api.get("webhooks/999/"), 404)
    assert_error(api.get("webhooks/999/deliveries/"), 404)
    assert_error(api.post("webhooks/999/ping/"), 404)
    assert_error(api.post("webhooks/999/rotate_secret/"), 404)
    assert_error(api.post("webhooks/999/deliveries/5/retry/"), 404)


def test_ping_refuses_a_name_that_resolves_to_loopback(api):
    endpoint = api.post("webhooks/", {**GOOD, "url": "http://localhost:9/in"}).json()

    body = api.post(f"webhooks/{endpoint['id']}/ping/").json()

    assert body["ok"] is False and body["status_code"] is None
    assert body["error"].startswith("refused: localhost resolves to a loopback")
