from __future__ import annotations

import json
import re
from io import StringIO
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client, RequestFactory

from fulfillment.audit import request_actor
from fulfillment.models import StockMovement
from tests.conftest import ApiClient
from tests.factories import make_product

pytestmark = pytest.mark.django_db


def stock_events(product_id: int) -> list:
    model = apps.get_model("fulfillment", "StockLevelEvent")
    return list(
        model.objects.filter(product_id=product_id).select_related("pgh_context").order_by("pgh_id")
    )


def test_request_id_from_header_is_echoed_and_stored_with_the_stock_event(api):
    product = make_product(stock=10)

    response = api.post(
        f"inventory/{product.pk}/adjust/",
        {"quantity_change": 2, "reason": "audit"},
        headers={"X-Request-ID": "req-abc.123"},
    )

    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-abc.123"
    event = stock_events(product.pk)[-1]
    assert event.pgh_label == "update" and event.on_hand == 12
    assert event.pgh_context.metadata["request_id"] == "req-abc.123"
    assert event.pgh_context.metadata["actor"].startswith("api_key:test-admin-")


def test_request_id_is_generated_when_absent_or_invalid(api):
    product = make_product(stock=10)

    generated = api.get(f"inventory/{product.pk}/")["X-Request-ID"]
    replaced = api.get(f"inventory/{product.pk}/", headers={"X-Request-ID": "bad id with spaces"})[
        "X-Request-ID"
    ]

    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert generated != replaced


def test_logged_in_user_is_the_actor_of_ledger_row_and_event():
    # a staff user logged into the admin site, calling the API without a key
    user = get_user_model().objects.create_user("opsuser", password="pw-123456", is_staff=True)
    client = Client()
    client.force_login(user)
    api = ApiClient(client)
    product = make_product(stock=10)

    response = api.post(f"inventory/{product.pk}/adjust/", {"quantity_change": -1, "reason": "x"})

    assert response.status_code == 200, response.content
    assert StockMovement.objects.filter(product=product).order_by("-id")[0].actor == "user:opsuser"
    assert stock_events(product.pk)[-1].pgh_context.metadata["actor"] == "user:opsuser"


def test_request_actor_is_read_when_written_so_it_sees_the_api_key_set_by_auth():
    request = RequestFactory().post("/api/v1/inventory/1/adjust/")
    actor = request_actor(request)
    assert str(actor) == "anonymous"

    request.api_key = SimpleNamespace(name="warehouse-1")  # what authentication will set

    assert str(actor) == "api_key:warehouse-1"
    assert json.loads(json.dumps({"actor": actor}, default=str)) == {"actor": "api_key:warehouse-1"}


def test_management_command_tags_its_events_and_ledger_rows_with_its_name():
    call_command("seed_demo_data", products=2, stdout=StringIO())

    movements = list(StockMovement.objects.filter(product__sku__startswith="DEMO-"))
    assert len(movements) == 2
    assert {m.actor for m in movements} == {"command:seed_demo_data"}
    for m in movements:
        for event in stock_events(m.product_id):
            assert event.pgh_context.metadata["command"] == "seed_demo_data"
            assert event.pgh_context.metadata["actor"] == "command:seed_demo_data"


def test_command_alias_is_tagged_with_its_own_name():
    call_command("setup_demo_data", products=1, stdout=StringIO())

    movement = StockMovement.objects.get(product__sku="DEMO-00001")
    event = stock_events(movement.product_id)[-1]
    assert event.pgh_context.metadata["command"] == "setup_demo_data"
