from __future__ import annotations

import pytest

from fulfillment.models import Product, StockLevel, StockMovement
from tests.conftest import assert_error
from tests.factories import make_product

pytestmark = pytest.mark.django_db

VALID = {"sku": "SKU-1", "name": "Blue widget", "price": "12.50", "initial_stock": 40}


def test_product_create_returns_product_with_stock_and_ledger_row(api):
    response = api.post("products/", VALID)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["sku"] == "SKU-1"
    assert body["price"] == "12.50"
    assert body["stock"]["on_hand"] == 40
    assert body["stock"]["available"] == 40
    movement = StockMovement.objects.get(product_id=body["id"])
    assert (movement.kind, movement.on_hand_delta, movement.on_hand_after) == ("receive", 40, 40)


def test_product_list_paginates_and_searches(api):
    for i in range(5):
        make_product(sku=f"FIND-{i}")
    make_product(sku="OTHER-1")

    page = api.get("products/?limit=2&offset=0").json()
    assert page["count"] == 6 and len(page["items"]) == 2

    found = api.get("products/?search=find").json()
    assert found["count"] == 5
    assert all(p["sku"].startswith("FIND-") for p in found["items"])


def test_product_detail_and_update(api):
    product = make_product(price="5.00")

    detail = api.get(f"products/{product.pk}/")
    assert detail.status_code == 200
    assert detail.json()["version"] == 1

    updated = api.patch(f"products/{product.pk}/", {"price": "7.25", "name": "Renamed"})
    assert updated.status_code == 200, updated.content
    assert updated.json()["price"] == "7.25"
    assert updated.json()["name"] == "Renamed"
    assert updated.json()["version"] == 2


def test_product_update_with_stale_version_is_409_and_changes_nothing(api):
    product = make_product(price="5.00")

    response = api.patch(f"products/{product.pk}/", {"price": "9.00"}, headers={"If-Match": "7"})

    assert_error(response, 409, "version_conflict")
    product.refresh_from_db()
    assert product.price == 5 and product.version == 1


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "price": "1.00"},  # missing sku
        {"sku": "A", "price": "1.00"},  # missing name
        {**VALID, "price": "-1.00"},
        {**VALID, "initial_stock": -5},
        {**VALID, "price": "abc"},
        {**VALID, "sku": ""},
        {**VALID, "unknown_field": 1},
        [],
    ],
)
def test_product_create_rejects_bad_input_and_writes_nothing(api, body):
    response = api.post("products/", body)

    assert_error(response, 422, "validation_error")
    assert not Product.objects.exists()
    assert not StockMovement.objects.exists()


def test_product_create_rejects_malformed_json(api):
    response = api.post("products/", raw="{not json")

    assert_error(response, 400, "bad_request")
    assert not Product.objects.exists()


def test_product_create_duplicate_sku_is_409(api):
    make_product(sku="DUP")

    response = api.post("products/", {**VALID, "sku": "DUP"})

    assert_error(response, 409, "conflict")
    assert Product.objects.count() == 1
    assert StockLevel.objects.count() == 1


def test_unknown_product_is_404_in_error_shape(api):
    assert_error(api.get("products/999999/"), 404, "not_found")
    assert_error(api.patch("products/999999/", {"price": "1.00"}), 404, "not_found")


def test_update_rejects_negative_price_and_writes_nothing(api):
    product = make_product(price="5.00")

    assert_error(api.patch(f"products/{product.pk}/", {"price": "-3"}), 422, "validation_error")
    product.refresh_from_db()
    assert product.price == 5 and product.version == 1


def test_request_id_is_echoed_or_generated(api):
    assert api.get("products/", headers={"X-Request-ID": "abc-123"})["X-Request-ID"] == "abc-123"
    assert len(api.get("products/")["X-Request-ID"]) == 32


def test_docs_and_swagger_redirect(client):
    assert client.get("/api/v1/docs").status_code == 200
    schema = client.get("/api/v1/openapi.json")
    assert schema.status_code == 200 and "/api/v1/products/" in schema.json()["paths"]
    redirect = client.get("/swagger/")
    assert redirect.status_code == 302 and redirect["Location"] == "/api/v1/docs"


def test_nul_character_in_search_is_4xx_not_500(api):
    response = api.get("products/?search=a%00b")

    assert 400 <= response.status_code < 500


def test_page_size_is_capped(api):
    response = api.get("products/?limit=100000")

    assert_error(response, 422, "validation_error")


def test_unknown_api_path_is_404_in_error_shape(api):
    assert_error(api.get("orders/not-a-uuid/"), 404, "not_found")
    assert_error(api.get("/api/v2/anything"), 404, "not_found")
