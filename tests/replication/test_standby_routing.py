"""The primary/replica router against a real hot standby that lags (tests/replication/conftest.py).

Every check looks at which server really answered: the standby is in recovery, the primary is
not, and a row committed less than the replication delay ago exists only on the primary.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from config.db_router import POSITION_HEADER, REPLICA_DB_ALIAS, parse_lsn, replica_state
from config.devstack.replication import PgServer
from fulfillment.models import Order
from tests.factories import make_product
from tests.replication.conftest import standby_position, wait_replayed

pytestmark = [
    pytest.mark.slow,  # a standby of its own, and waits of the replication delay
    pytest.mark.django_db(transaction=True, databases=["default", REPLICA_DB_ALIAS]),
]


def _order_body(product_id: int) -> dict[str, Any]:
    return {
        "customer_name": "Ann",
        "customer_email": "ann@example.com",
        "items": [{"product_id": product_id, "quantity": 1}],
    }


class _Served:
    """The queries each server ran inside the block."""

    def __enter__(self) -> _Served:
        self.primary = CaptureQueriesContext(connections["default"])
        self.replica = CaptureQueriesContext(connections[REPLICA_DB_ALIAS])
        self.primary.__enter__()
        self.replica.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.replica.__exit__(*exc)
        self.primary.__exit__(*exc)

    def on(self, alias: str, table: str) -> bool:
        ctx = self.primary if alias == "default" else self.replica
        return any(table in q["sql"] for q in ctx.captured_queries)


def test_the_replica_alias_is_a_streaming_standby(replica_on: PgServer) -> None:
    with connections[REPLICA_DB_ALIAS].cursor() as cur:
        cur.execute("SELECT pg_is_in_recovery(), current_database()")
        in_recovery, name = cur.fetchone()
    assert in_recovery is True
    assert name == connections["default"].settings_dict["NAME"]
    with connections["default"].cursor() as cur:
        cur.execute("SELECT pg_is_in_recovery()")
        assert cur.fetchone()[0] is False


def test_reads_go_to_the_standby_and_writes_to_the_primary(replica_on: PgServer, api) -> None:
    product = make_product(sku="STANDBY-READ", stock=5)
    wait_replayed(replica_on)

    with _Served() as served:
        listing = api.get("products/?search=STANDBY-READ")
    assert listing.status_code == 200, listing.content
    assert [p["id"] for p in listing.json()["items"]] == [product.pk]
    assert served.on(REPLICA_DB_ALIAS, "fulfillment_product")
    assert not served.on("default", "fulfillment_product")

    with _Served() as served:
        created = api.post("orders/", _order_body(product.pk))
    assert created.status_code == 201, created.content
    # The write, its stock lock and every read of the request ran on the primary.
    assert served.on("default", "fulfillment_order")
    assert served.on("default", "fulfillment_product") or served.on(
        "default", "fulfillment_stocklevel"
    )
    assert not served.replica.captured_queries


def test_a_write_request_reads_its_own_writes_despite_the_lag(replica_on: PgServer, api) -> None:
    product = make_product(sku="STANDBY-RYW", stock=5)
    wait_replayed(replica_on)

    created = api.post("orders/", _order_body(product.pk))

    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "pending"
    assert [line["product_id"] for line in body["lines"]] == [product.pk]
    # The lag is real: the standby does not have the order yet.
    assert not Order.objects.using(REPLICA_DB_ALIAS).filter(order_id=body["order_id"]).exists()
    assert Order.objects.using("default").filter(order_id=body["order_id"]).exists()


def test_the_commit_position_gives_read_your_writes_across_requests(
    replica_on: PgServer, api
) -> None:
    product = make_product(sku="STANDBY-POS", stock=5)
    wait_replayed(replica_on)

    created = api.post("orders/", _order_body(product.pk))
    assert created.status_code == 201, created.content
    order_id = created.json()["order_id"]
    position = created.headers[POSITION_HEADER]
    assert parse_lsn(position) is not None

    # Without the position the next request reads the lagging standby: the order is missing.
    stale = api.get(f"orders/{order_id}/")
    assert stale.status_code == 404, stale.content
    # With it, the standby is behind, so the primary answers.
    with _Served() as served:
        fresh = api.get(f"orders/{order_id}/", headers={POSITION_HEADER: position})
    assert fresh.status_code == 200, fresh.content
    assert fresh.json()["order_id"] == order_id
    assert served.on("default", "fulfillment_order")
    assert not served.on(REPLICA_DB_ALIAS, "fulfillment_order")

    # Once the standby has replayed that far, the same request is served by the standby.
    wait_replayed(replica_on)
    assert standby_position(replica_on) >= (parse_lsn(position) or 0)
    replica_state.reset()  # forget the cached position taken while the standby was behind
    with _Served() as served:
        caught_up = api.get(f"orders/{order_id}/", headers={POSITION_HEADER: position})
    assert caught_up.status_code == 200, caught_up.content
    assert served.on(REPLICA_DB_ALIAS, "fulfillment_order")
    assert not served.on("default", "fulfillment_order")


def test_an_unreadable_position_reads_from_the_primary(replica_on: PgServer, api) -> None:
    product = make_product(sku="STANDBY-BADPOS", stock=5)
    wait_replayed(replica_on)

    with _Served() as served:
        response = api.get(f"products/{product.pk}/", headers={POSITION_HEADER: "not-an-lsn"})

    assert response.status_code == 200, response.content
    assert served.on("default", "fulfillment_product")
    assert not served.on(REPLICA_DB_ALIAS, "fulfillment_product")


def test_reads_fall_back_to_the_primary_when_the_standby_is_down(replica_on: PgServer, api) -> None:
    product = make_product(sku="STANDBY-DOWN", stock=5)
    wait_replayed(replica_on)
    # The replica connection is open and in use when the standby goes away.
    assert api.get(f"products/{product.pk}/").status_code == 200
    assert connections[REPLICA_DB_ALIAS].connection is not None

    replica_on.stop("immediate")

    for _ in range(3):
        response = api.get(f"products/{product.pk}/")
        assert response.status_code == 200, response.content
        assert response.json()["id"] == product.pk
    listing = api.get("products/?search=STANDBY-DOWN")
    assert listing.status_code == 200, listing.content
    assert replica_state.is_down()

    # Back up: after the cool-down, reads return to the standby.
    replica_on.start()
    replica_state.reset()
    wait_replayed(replica_on)
    with _Served() as served:
        again = api.get(f"products/{product.pk}/")
    assert again.status_code == 200, again.content
    assert served.on(REPLICA_DB_ALIAS, "fulfillment_product")
