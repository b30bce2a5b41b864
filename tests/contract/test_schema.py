"""The served OpenAPI schema declares what the server enforces: security per mode, the common
error responses with examples, and strict, bounded input (checked here case by case; the fuzz
test checks it wholesale)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings

from fulfillment.models import Order, StockLevel
from tests.conftest import assert_error
from tests.factories import make_product

READ = ("get", "/api/v1/orders/{order_id}/tracking/")
WRITE = ("post", "/api/v1/orders/")


def _schema() -> dict[str, Any]:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, ops in schema["paths"].items() for m, op in ops.items()]


@pytest.mark.parametrize("anonymous_reads", [True, False])
def test_security_declares_optional_keys_for_reads_only_when_anonymous_reads_are_on(
    anonymous_reads: bool,
) -> None:
    with override_settings(ALLOW_ANONYMOUS_READS=anonymous_reads):
        schema = _schema()
    keys = [{"ApiKeyBearer": []}, {"ApiKeyHeader": []}]
    for method, path, op in _operations(schema):
        reads_open = anonymous_reads and op["x-required-role"] == "viewer"
        assert op["security"] == ([{}, *keys] if reads_open else keys), (method, path)
    paths = schema["paths"]
    assert ({} in paths[READ[1]][READ[0]]["security"]) is anonymous_reads
    assert {} not in paths[WRITE[1]][WRITE[0]]["security"]


def test_every_operation_documents_the_common_errors_with_examples_and_retry_after() -> None:
    for method, path, op in _operations(_schema()):
        responses = op["responses"]
        for status in ("401", "403", "429", "503"):
            assert status in responses, (method, path, status)
        if "requestBody" in op:
            assert {"400", "413", "422"} <= set(responses), (method, path)
        for status, response in responses.items():
            if int(status) >= 400:
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/ErrorOut"}
                assert content["examples"], (method, path, status)
        retry_after = responses["429"]["headers"]["Retry-After"]
        assert retry_after["required"] is True
        assert retry_after["schema"] == {"type": "integer", "minimum": 1}


def test_conflict_examples_name_every_409_code() -> None:
    response = _schema()["paths"][WRITE[1]][WRITE[0]]["responses"]["409"]
    assert set(response["content"]["application/json"]["examples"]) == {
        "insufficient_stock",
        "product_unavailable",
        "version_conflict",
        "invalid_transition",
        "invalid_stock_change",
        "idempotency_mismatch",
    }


def test_created_resources_link_to_the_operations_on_them() -> None:
    paths = _schema()["paths"]
    product_links = paths["/api/v1/products/"]["post"]["responses"]["201"]["links"]
    order_links = paths["/api/v1/orders/"]["post"]["responses"]["201"]["links"]
    assert product_links["GetProduct"]["parameters"] == {"product_id": "$response.body#/id"}
    assert order_links["OrderTracking"]["parameters"] == {"order_id": "$response.body#/order_id"}
    operation_ids = {op["operationId"] for _, _, op in _operations(_schema())}
    for link in [*product_links.values(), *order_links.values()]:
        assert link["operationId"] in operation_ids


def test_constraints_are_in_the_schema() -> None:
    components = _schema()["components"]["schemas"]
    product_in = components["ProductIn"]["properties"]
    assert product_in["price"]["type"] == "string" and "pattern" in product_in["price"]
    assert components["OrderItemIn"]["properties"]["product_id"]["maximum"] == 2**63 - 1
    assert "oneOf" in components["AdjustIn"]
    assert components["BulkOrderIn"]["properties"]["atomic"]["type"] == "boolean"


def _order(product_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "customer_name": "Ann",
        "customer_email": "ann@example.com",
        "items": [{"product_id": product_id, "quantity": 1}],
        **extra,
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method, path, body",
    [
        ("post", "orders/bulk_create/", lambda p: {"atomic": 0, "orders": [_order(p)]}),
        ("post", "orders/bulk_create/", lambda p: {"atomic": "true", "orders": [_order(p)]}),
        ("post", "orders/", lambda p: _order(p, items=[{"product_id": str(p), "quantity": 1}])),
        ("post", "orders/", lambda p: _order(p, items=[{"product_id": 2**63, "quantity": 1}])),
        ("post", "orders/", lambda p: _order(p, customer_name="   ")),
        ("post", "products/", lambda p: {"sku": "X-1", "name": "x", "price": 12.5}),
        ("post", "products/", lambda p: {"sku": "X-1", "name": "x", "price": ""}),
        ("post", "products/", lambda p: {"sku": "X-1", "name": "x", "price": "1.234"}),
        ("patch", "products/{p}/", lambda p: {"expected_version": 2**31}),
        ("post", "inventory/{p}/adjust/", lambda p: {"quantity_change": 1, "set_to": 2}),
        ("post", "inventory/{p}/adjust/", lambda p: {"set_to": None, "reason": "x"}),
        ("get", "products/?is_active=1", None),
        ("get", "products/?offset=60000000000000000000", None),
        ("get", "orders/?cursor=not-a-cursor", None),
        ("get", "orders/?created_before=0.5", None),
        ("get", "orders/?created_after=2026-01-01T00:00:00", None),
        ("get", "reports/daily/?date_to=0", None),
        ("get", "products/9223372036854775808/", None),
    ],
)
def test_input_outside_the_schema_is_422_and_writes_nothing(api, method, path, body) -> None:  # type: ignore[no-untyped-def]
    product = make_product(stock=10)
    before_version = StockLevel.objects.get(product=product).version
    url = path.replace("{p}", str(product.pk))
    call = getattr(api, method)
    response = call(url, body(product.pk)) if body else call(url)
    assert_error(response, 422, "validation_error")
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved, level.version) == (10, 0, before_version)
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_an_integer_written_with_a_zero_fraction_is_an_integer(api) -> None:  # type: ignore[no-untyped-def]
    product = make_product(stock=10)
    body = _order(product.pk, items=[{"product_id": float(product.pk), "quantity": 2.0}])
    response = api.post("orders/", body)
    assert response.status_code == 201, response.content
    assert response.json()["lines"][0]["quantity"] == 2


@pytest.mark.django_db
def test_the_order_list_cursor_round_trips(api) -> None:  # type: ignore[no-untyped-def]
    product = make_product(stock=10)
    for _ in range(3):
        assert api.post("orders/", _order(product.pk)).status_code == 201
    first = api.get("orders/?limit=2").json()
    second = api.get(f"orders/?limit=2&cursor={first['next_cursor']}").json()
    assert len(first["items"]) == 2 and len(second["items"]) == 1
    assert {o["order_id"] for o in first["items"]}.isdisjoint(
        o["order_id"] for o in second["items"]
    )
