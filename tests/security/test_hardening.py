"""Strict JSON, body size limit, no internals in error bodies, security headers, CORS."""

from __future__ import annotations

import pytest
from django.db import ProgrammingError
from django.test import Client, override_settings

from fulfillment.models import Product, StockMovement
from fulfillment.selectors import products as product_selectors
from tests.conftest import assert_error

pytestmark = pytest.mark.django_db

VALID = '{"sku": "J-1", "name": "Widget", "price": "1.00", "initial_stock": 3}'


@pytest.mark.parametrize(
    "raw,fragment",
    [
        ('{"sku": "J-1", "sku": "J-2", "name": "W", "price": "1.00"}', "duplicate key 'sku'"),
        ('{"sku": "J-1", "name": "W", "price": NaN}', "NaN"),
        ('{"sku": "J-1", "name": "W", "price": Infinity}', "Infinity"),
        ('{"sku": "J-1", "name": "W", "price": -Infinity}', "Infinity"),
        ('{"sku": "J-1", "name": "W", "price": 1e999}', "out of range"),
        ('"just a string"', "JSON object"),
        ("42", "JSON object"),
        ("null", "JSON object"),
        ("{not json", "not valid JSON"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_non_strict_json_is_400_and_writes_nothing(api, raw, fragment):
    response = api.post("products/", raw=raw)

    error = assert_error(response, 400, "bad_request")
    assert fragment in error["message"]
    assert not Product.objects.exists()
    assert not StockMovement.objects.exists()


def test_invalid_utf8_is_400(api):
    response = api.client.post(
        "/api/v1/products/", data=b'{"sku": "\xff\xfe"}', content_type="application/json"
    )

    assert_error(response, 400, "bad_request")
    assert not Product.objects.exists()


@pytest.mark.parametrize("raw", ["[]", '[{"sku": "J-1"}]', "[1, 2]"])
def test_array_where_an_object_is_expected_is_422(api, raw):
    assert_error(api.post("products/", raw=raw), 422, "validation_error")
    assert not Product.objects.exists()


def test_strict_json_still_accepts_valid_bodies(api):
    assert api.post("products/", raw=VALID).status_code == 201


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1_000)
def test_body_over_the_limit_is_413_before_it_is_read(api):
    big = '{"sku": "J-1", "name": "W", "price": "1.00", "description": "%s"}' % ("x" * 2_000)

    response = api.post("products/", raw=big)

    assert_error(response, 413, "payload_too_large")
    assert not Product.objects.exists()


def test_unknown_api_url_is_404_in_the_error_shape(api):
    assert_error(api.get("products/not-a-number/"), 404, "not_found")
    assert_error(api.get("no-such-thing/"), 404, "not_found")


def test_unexpected_error_has_no_stack_trace_or_sql(api, monkeypatch, settings):
    assert settings.DEBUG is False  # as in production

    def explode(**kwargs):
        raise ProgrammingError('relation "secret_table" does not exist\nLINE 1: SELECT * FROM')

    monkeypatch.setattr(product_selectors, "product_get", explode)

    response = api.get("products/1/")

    error = assert_error(response, 500, "internal_error")
    text = response.content.decode()
    assert error["message"] == "internal error" and error["details"] == {}
    for leak in ("Traceback", "SELECT", "secret_table", "File ", ".py"):
        assert leak not in text


def test_unexpected_python_error_has_no_stack_trace(api, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("internal detail /srv/app/settings.py")

    monkeypatch.setattr(product_selectors, "product_list", explode)

    response = api.get("products/")

    assert_error(response, 500, "internal_error")
    assert "internal detail" not in response.content.decode()


def test_security_headers(api):
    response = api.get("products/")

    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_cors_is_closed_by_default(api):
    response = api.get("products/", headers={"Origin": "https://evil.example"})
    preflight = Client().options(
        "/api/v1/products/",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )

    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Origin" not in preflight


@override_settings(CORS_ALLOWED_ORIGINS=["https://app.example"])
def test_cors_allows_configured_origins_with_the_api_headers(api):
    response = api.get("products/", headers={"Origin": "https://app.example"})
    preflight = Client().options(
        "/api/v1/products/",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, idempotency-key",
        },
    )
    other = api.get("products/", headers={"Origin": "https://evil.example"})

    assert response["Access-Control-Allow-Origin"] == "https://app.example"
    assert "x-request-id" in response["Access-Control-Expose-Headers"].lower()
    assert preflight.status_code == 200
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example"
    allowed = preflight["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "idempotency-key" in allowed
    assert "Access-Control-Allow-Origin" not in other
