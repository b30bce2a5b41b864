"""Fault tests against a real gunicorn server on its own PostgreSQL and Redis (see servers.py).

- Redis stopped mid-test: orders and other writes are still accepted, reads are served from the database,
  /health/ is 503 naming Redis (ready stays 200); Redis back: the cache is used again.
- PostgreSQL restarted while requests run: requests during the outage get 503
  ``database_unavailable`` (never a 500), the server recovers by itself, no order or product is
  half written.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.security.servers import FaultSystem, wait_for

pytestmark = pytest.mark.slow  # real servers stopped and restarted
_sku = itertools.count(1)


@pytest.fixture(scope="module")
def system() -> Iterator[FaultSystem]:
    # Not under pytest's own temporary directory: its root is reset to mode 0700 whenever another
    # pytest session starts, which would lock the PostgreSQL system user out of its data mid-test.
    base = Path(tempfile.mkdtemp(prefix="fulfillment-fault-stack-"))
    fault = FaultSystem(base=base)
    try:
        fault.start()
        yield fault
    finally:
        fault.stop()
        shutil.rmtree(base, ignore_errors=True)


def _new_product(system: FaultSystem, prefix: str) -> tuple[str, requests.Response]:
    sku = f"{prefix}-{next(_sku)}"
    body = {"sku": sku, "name": f"Fault {sku}", "price": "3.00", "initial_stock": 7}
    return sku, system.call("POST", "/api/v1/products/", body)


def _new_order(system: FaultSystem, product_id: int, tag: str) -> tuple[str, requests.Response]:
    email = f"{tag.lower()}-{next(_sku)}@example.com"  # identifies the request in the database
    body = {
        "customer_name": tag,
        "customer_email": email,
        "items": [{"product_id": product_id, "quantity": 1}],
    }
    return email, system.call("POST", "/api/v1/orders/", body)


def _redis_keys(system: FaultSystem) -> list[bytes]:
    return redis.Redis.from_url(system.stack.redis_url).keys("*throttle:*")


def _health(system: FaultSystem) -> dict:
    return requests.get(system.url("/health/"), timeout=10).json()


def _summary(system: FaultSystem) -> dict:
    response = system.call("GET", "/api/v1/inventory/summary/")
    assert response.status_code == 200, response.text
    return response.json()


def _assert_complete(system: FaultSystem) -> None:
    """No half-written product: each has its stock row and a ledger that sums to it."""
    rows = system.sql(
        """
        SELECT p.sku, s.on_hand, s.reserved,
               COALESCE(SUM(m.on_hand_delta), 0), COALESCE(SUM(m.reserved_delta), 0)
        FROM fulfillment_product p
        LEFT JOIN fulfillment_stocklevel s ON s.product_id = p.id
        LEFT JOIN fulfillment_stockmovement m ON m.product_id = p.id
        GROUP BY p.sku, s.on_hand, s.reserved
        """
    )
    for sku, on_hand, reserved, on_hand_sum, reserved_sum in rows:
        assert on_hand is not None, f"{sku} has no stock level"
        assert (on_hand, reserved) == (on_hand_sum, reserved_sum), sku
    # each order has its lines, its reservation on the ledger and its first pipeline job
    orders = system.sql(
        """
        SELECT o.order_id,
               (SELECT COALESCE(SUM(l.quantity), 0) FROM fulfillment_orderline l
                WHERE l.order_id = o.id),
               (SELECT COALESCE(SUM(m.reserved_delta), 0) FROM fulfillment_stockmovement m
                WHERE m.order_id = o.id)
        FROM fulfillment_order o
        """
    )
    for order_id, quantity, reserved in orders:
        assert quantity > 0 and reserved == quantity, order_id
    jobs = system.sql("SELECT count(*) FROM procrastinate_jobs")[0][0]
    assert jobs == len(orders)


def test_redis_outage_keeps_the_api_working_and_health_names_redis(system):
    # given a working system whose Redis holds throttle counters
    sku, created = _new_product(system, "REDIS-UP")
    assert created.status_code == 201, created.text
    product_id = created.json()["id"]
    assert _redis_keys(system)
    assert _summary(system)["cached"] is False
    assert _summary(system)["cached"] is True  # the second read comes from Redis

    # when Redis stops
    system.stack.stop_redis()
    try:
        # then writes are still accepted and reads come from the database
        sku_down, created_down = _new_product(system, "REDIS-DOWN")
        assert created_down.status_code == 201, created_down.text + system.server_log()
        email, ordered = _new_order(system, product_id, "Redis-down")
        assert ordered.status_code == 201, ordered.text + system.server_log()
        order_id = ordered.json()["order_id"]
        assert system.call("GET", f"/api/v1/orders/{order_id}/").json()["status"] == "pending"
        detail = system.call("GET", f"/api/v1/products/{product_id}/")
        assert detail.status_code == 200 and detail.json()["sku"] == sku
        listed = system.call("GET", "/api/v1/products/?limit=100")
        assert {p["sku"] for p in listed.json()["items"]} >= {sku, sku_down}
        # the cached summary is computed from the database on every read, and is current
        products = system.sql("SELECT count(*) FROM fulfillment_product")[0][0]
        for _ in range(2):
            summary = _summary(system)
            assert summary["cached"] is False and summary["product_count"] == products
        # and health says which part is down, while readiness stays up
        health = requests.get(system.url("/health/"), timeout=10)
        assert health.status_code == 503
        assert "redis" in health.json()["failed"]
        assert health.json()["checks"]["database"]["ok"] is True
        assert requests.get(system.url("/health/ready/"), timeout=10).status_code == 200
    finally:
        # when Redis comes back (empty: the dev server keeps no data)
        system.stack.start_redis()

    # then the cache is used again without restarting anything
    assert system.call("GET", f"/api/v1/products/{product_id}/").status_code == 200
    wait_for(lambda: bool(_redis_keys(system)), 10)
    wait_for(lambda: _summary(system)["cached"] is True, 10)
    # (no worker runs on this system, so /health/ stays 503 for "workers", but Redis is back)
    wait_for(lambda: "redis" not in _health(system)["failed"], 10)
    _assert_complete(system)


def test_postgres_restart_gives_503_then_recovers_with_nothing_half_written(system):
    # given a stream of writes and reads against the server
    results: list[tuple[float, str, str, int, str]] = []  # (time, kind, sku, status, code)
    stop = threading.Event()

    stock = system.call(
        "POST",
        "/api/v1/products/",
        {"sku": "PG-STOCK", "name": "Orderable", "price": "2.00", "initial_stock": 100_000},
    )
    assert stock.status_code == 201, stock.text
    stock_id = stock.json()["id"]

    def traffic() -> None:
        deadline = time.monotonic() + 60  # bounded even if the test body fails
        while not stop.is_set() and time.monotonic() < deadline:
            for kind in ("write", "order", "read"):
                sku = ""
                try:
                    if kind == "write":
                        sku, response = _new_product(system, "PG")
                    elif kind == "order":
                        sku, response = _new_order(system, stock_id, "PG")
                    else:
                        response = system.call("GET", "/api/v1/products/?limit=5")
                except requests.RequestException as exc:
                    results.append((time.monotonic(), kind, sku, 0, exc.__class__.__name__))
                    continue
                code = ""
                if response.status_code >= 400:
                    code = response.json()["error"]["code"]
                results.append((time.monotonic(), kind, sku, response.status_code, code))
            time.sleep(0.02)

    worker = threading.Thread(target=traffic, daemon=True)
    worker.start()
    try:
        wait_for(lambda: sum(r[3] == 201 for r in results) >= 3, 20)

        # when PostgreSQL goes down for a while and comes back
        system.stop_postgres()
        down_at = time.monotonic()
        wait_for(lambda: sum(r[0] > down_at and r[3] == 503 for r in results) >= 6, 20)
        health = requests.get(system.url("/health/"), timeout=10)
        ready = requests.get(system.url("/health/ready/"), timeout=10)
        system.stack.start_postgres()
        up_at = time.monotonic()

        # then the server recovers by itself
        recovered_after = wait_for(
            lambda: {r[1] for r in results if r[0] > up_at and r[3] == 201} == {"write", "order"},
            30,
        )
        time.sleep(1.0)  # a little steady traffic after recovery
    finally:
        stop.set()
        worker.join(timeout=30)

    assert health.status_code == 503 and "database" in health.json()["failed"]
    assert ready.status_code == 503
    statuses = {r[3] for r in results}
    assert statuses <= {200, 201, 503}, [r for r in results if r[3] not in (200, 201, 503)]
    outage = [r for r in results if r[3] == 503]
    assert outage and all(r[4] == "database_unavailable" for r in outage)
    assert {r[1] for r in outage} == {"read", "write", "order"}
    first_ok = min(r[0] for r in results if r[0] > up_at and r[3] in (200, 201))
    after = [r for r in results if r[0] > first_ok + 0.5]
    assert after and all(r[3] in (200, 201) for r in after), after
    assert recovered_after < 30
    print(
        f"\npostgres restart: {len(results)} requests, {len(outage)} answered 503 "
        f"database_unavailable, first write accepted {recovered_after:.2f}s after the restart"
    )
    # every acknowledged write is there, and nothing is half written
    stored = {row[0] for row in system.sql("SELECT sku FROM fulfillment_product")}
    stored |= {row[0] for row in system.sql("SELECT customer_email FROM fulfillment_order")}
    acknowledged = {r[2] for r in results if r[3] == 201}
    assert acknowledged <= stored
    _assert_complete(system)
