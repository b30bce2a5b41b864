from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from fulfillment.models import StockLevel, StockMovement
from fulfillment.services.inventory import stock_reserve
from tests.factories import make_product

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-123456")
    client.force_login(user)
    return client


def test_stock_level_list_shows_available_and_filters_low_stock(admin_client):
    low = make_product(stock=5, threshold=10, sku="ADM-LOW")
    make_product(stock=50, threshold=10, sku="ADM-OK")
    stock_reserve(lines=[(low.pk, 2)], order_id=None, actor="t")

    page = admin_client.get("/admin/fulfillment/stocklevel/")
    assert page.status_code == 200
    assert b"available" in page.content
    low_only = admin_client.get("/admin/fulfillment/stocklevel/?low_stock=yes").content
    assert b"ADM-LOW" in low_only and b"ADM-OK" not in low_only
    ordered = admin_client.get("/admin/fulfillment/stocklevel/?o=4")  # sort by available
    assert ordered.status_code == 200


def test_stock_level_change_form_saves_only_the_threshold(admin_client):
    product = make_product(stock=20, threshold=10)
    level = StockLevel.objects.get(product=product)
    url = f"/admin/fulfillment/stocklevel/{level.pk}/change/"
    assert admin_client.get(url).status_code == 200
    # a concurrent stock write after the form was loaded must survive the save
    stock_reserve(lines=[(product.pk, 5)], order_id=None, actor="t")

    response = admin_client.post(url, {"low_stock_threshold": "3", "on_hand": "999"})

    assert response.status_code == 302, response.content
    level.refresh_from_db()
    assert (level.low_stock_threshold, level.on_hand, level.reserved) == (3, 20, 5)


def test_ledger_is_read_only_in_the_admin(admin_client):
    make_product(stock=3)
    movement = StockMovement.objects.get()
    url = f"/admin/fulfillment/stockmovement/{movement.pk}/change/"

    assert admin_client.get("/admin/fulfillment/stockmovement/").status_code == 200
    assert admin_client.get(url).status_code == 200  # view permission only
    assert admin_client.post(url, {"reason": "rewritten"}).status_code == 403
    assert admin_client.get("/admin/fulfillment/stockmovement/add/").status_code == 403
    assert (
        admin_client.post(f"/admin/fulfillment/stockmovement/{movement.pk}/delete/").status_code
        == 403
    )
    movement.refresh_from_db()
    assert movement.reason == "initial stock"
