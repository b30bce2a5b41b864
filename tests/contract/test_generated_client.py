"""A typed client generated from the served schema by openapi-python-client, as an SDK user would
generate it, drives one full flow against a real gunicorn: create a product, order it, read the
order's tracking.

The client is generated at test time into a temporary directory (not committed): the test then
always proves that the schema the server serves now is usable by a generator, and there is no
generated copy to keep in step.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import issue_key
from tests.contract.live import live_server

BIN = Path(sys.executable).parent


@pytest.fixture
def generated_client(tmp_path: Path) -> Iterator[Any]:
    """The generated package ``fulfillment_client``, importable for the test's duration."""
    yield from _import_generated(tmp_path)


def _import_generated(tmp_path: Path) -> Iterator[Any]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield lambda name: importlib.import_module(f"fulfillment_client.{name}")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] == "fulfillment_client"]:
            del sys.modules[name]


def _generate(schema_url: str, into: Path) -> None:
    done = subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--url", schema_url]
        + ["--output-path", str(into / "fulfillment_client"), "--meta", "none"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{BIN}:/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_generated_client_creates_a_product_orders_it_and_reads_its_tracking(
    tmp_path: Path, generated_client: Any
) -> None:
    key = issue_key("admin", name="sdk")
    with live_server(anonymous_reads=False, log=tmp_path / "gunicorn.log") as base_url:
        # given a client generated from the served schema
        _generate(f"{base_url}/api/v1/openapi.json", tmp_path)
        client_module = generated_client("client")
        models = generated_client("models")
        create_product = generated_client("api.products.fulfillment_api_products_create_product")
        create_order = generated_client("api.orders.fulfillment_api_orders_create_order")
        tracking = generated_client("api.orders.fulfillment_api_orders_order_tracking")
        client = client_module.AuthenticatedClient(base_url=base_url, token=key)

        # when: a product, an order of it, the order's tracking
        product = create_product.sync_detailed(
            client=client,
            body=models.ProductIn(sku="SDK-1", name="Generated", price="12.50", initial_stock=5),
        )
        assert product.status_code == 201, product.content
        assert isinstance(product.parsed, models.ProductOut)
        order = create_order.sync_detailed(
            client=client,
            body=models.OrderIn(
                customer_name="Sdk",
                customer_email="sdk@example.com",
                items=[models.OrderItemIn(product_id=product.parsed.id, quantity=2)],
            ),
        )
        assert order.status_code == 201, order.content
        assert isinstance(order.parsed, models.OrderOut)
        track = tracking.sync_detailed(order_id=order.parsed.order_id, client=client)

        # then: typed objects all the way, with the values the server holds
        assert product.parsed.stock.on_hand == 5
        assert order.parsed.total_amount == "25.00"
        assert [(line.product_id, line.quantity) for line in order.parsed.lines] == [
            (product.parsed.id, 2)
        ]
        assert track.status_code == 200, track.content
        assert isinstance(track.parsed, models.TrackingOut)
        assert track.parsed.order_id == order.parsed.order_id
        assert track.parsed.status == "pending"
        # and an error answer parses as the one error shape
        missing = tracking.sync_detailed(
            order_id="00000000-0000-4000-8000-000000000000", client=client
        )
        assert missing.status_code == 404
        assert isinstance(missing.parsed, models.ErrorOut)
        assert missing.parsed.error.code == "not_found"
