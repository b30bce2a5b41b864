"""Locust load test that looks like real traffic.

    make locust                       # web UI on http://127.0.0.1:8089 against `make run`
    make loadtest                     # headless, bounded, reports in loadtests/reports/, then gates

Users (weights): shoppers create orders of 1-3 lines and poll their status; bulk importers send
bulk_create of 100; browsers read products, orders and statistics; operators adjust stock and
cancel orders. Products are discovered through the API at start. A sold-out 409 is an expected
outcome (counted in its own request name); any 5xx, and any 429, is a failure: the load-test
keys carry a limit the test cannot reach, so a 429 means the run measured the throttle, not the
system.

The API key comes from ``LOCUST_API_KEY`` (one key for every user) or else from the load-test
keys `make locust` / `make loadtest` create (``loadtests/keys.py``, ``.devstack/loadtest-keys.json``).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, events, task

# Locust puts only this file's directory on the import path; the project root holds `loadtests`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtests.keys import read_keys  # noqa: E402

_products: list[int] = []
_recent_orders: list[str] = []
_lock = threading.Lock()
EXPECTED_CONFLICTS = {
    "insufficient_stock",
    "invalid_transition",
    "version_conflict",
    "invalid_stock_change",
}


def api_key(role: str) -> str | None:
    """Key for ``role`` (falls back to a more powerful one)."""
    if os.environ.get("LOCUST_API_KEY"):
        return os.environ["LOCUST_API_KEY"]
    keys = read_keys()
    for candidate in {
        "viewer": ("viewer", "operator", "admin"),
        "operator": ("operator", "admin"),
        "admin": ("admin",),
    }[role]:
        if keys.get(candidate):
            return str(keys[candidate])
    return None


def auth_headers(role: str) -> dict[str, str]:
    key = api_key(role)
    return {"Authorization": f"Bearer {key}"} if key else {}


@events.test_start.add_listener
def discover_products(environment: Any, **kwargs: Any) -> None:
    """Find active products with stock through the API (never hard-coded)."""
    import urllib.request

    host = (environment.host or "http://127.0.0.1:8000").rstrip("/")
    if not api_key("viewer"):  # any stored key, or LOCUST_API_KEY
        raise RuntimeError(
            "no API key: run `make locust` / `make loadtest` (they create the load-test keys) "
            "or set LOCUST_API_KEY"
        )
    offset = 0
    found: list[int] = []
    while True:
        req = urllib.request.Request(
            f"{host}/api/v1/products/?is_active=true&limit=500&offset={offset}",
            headers=auth_headers("viewer"),
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            page = json.load(resp)
        found += [p["id"] for p in page["items"]]
        offset += len(page["items"])
        if not page["items"] or offset >= page["count"]:
            break
    if not found:
        raise RuntimeError("no products found: load demo data first (make run does it)")
    _products[:] = found


def random_items(max_lines: int = 3) -> list[dict[str, int]]:
    chosen = random.sample(_products, k=min(len(_products), random.randint(1, max_lines)))
    return [{"product_id": pid, "quantity": random.randint(1, 3)} for pid in chosen]


def order_body(n: int = 0) -> dict[str, Any]:
    return {
        "customer_name": f"Load Tester {n}",
        "customer_email": f"load{random.randint(1, 10_000)}@example.com",
        "priority": random.choice(["low", "normal", "normal", "high"]),
        "items": random_items(),
    }


def _expected(response: Any, outcome: str) -> None:
    """An expected refusal: a success, counted under its own name (e.g. ``POST /orders/ (409
    insufficient_stock)``) so the statistics show how often it happened."""
    response.request_meta["name"] = f"{response.request_meta['name']} ({outcome})"
    response.success()


def check(response: Any, ok: tuple[int, ...]) -> Any:
    """Mark 5xx, 429 and unexpected statuses as failures; expected 409s as successes."""
    if response.status_code >= 500 or response.status_code == 0:
        response.failure(f"server error {response.status_code}")
        return None
    if response.status_code in ok:
        response.success()
        return response.json() if response.text else None
    if response.status_code == 409:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = ""
        if code in EXPECTED_CONFLICTS:
            _expected(response, f"409 {code}")
            return None
    if response.status_code == 429:
        # The load-test keys' limit is out of reach: a 429 means the throttle was measured.
        response.failure("throttled 429: the API key's limit was reached")
        return None
    response.failure(f"unexpected {response.status_code}: {response.text[:200]}")
    return None


class Shopper(FastHttpUser):
    weight = 6
    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.headers = auth_headers("operator")

    @task
    def order_and_poll(self) -> None:
        with self.client.post(
            "/api/v1/orders/",
            json=order_body(),
            headers=self.headers,
            name="POST /orders/",
            catch_response=True,
        ) as resp:
            body = check(resp, (201,))
        if not body:
            return
        order_id = body["order_id"]
        with _lock:
            _recent_orders.append(order_id)
            del _recent_orders[:-500]
        for _ in range(2):
            with self.client.get(
                f"/api/v1/orders/{order_id}/",
                headers=self.headers,
                name="GET /orders/{id}/",
                catch_response=True,
            ) as resp:
                check(resp, (200,))


class BulkImporter(FastHttpUser):
    weight = 1
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.headers = auth_headers("operator")

    @task
    def bulk(self) -> None:
        body = {"orders": [order_body(i) for i in range(100)], "atomic": False}
        with self.client.post(
            "/api/v1/orders/bulk_create/",
            json=body,
            headers=self.headers,
            name="POST /orders/bulk_create/ (100)",
            catch_response=True,
        ) as resp:
            check(resp, (200, 201, 207))


class Browser(FastHttpUser):
    weight = 3
    wait_time = between(0.2, 1)

    def on_start(self) -> None:
        self.headers = auth_headers("viewer")

    def _get(self, path: str, name: str) -> None:
        with self.client.get(path, headers=self.headers, name=name, catch_response=True) as resp:
            check(resp, (200,))

    @task(3)
    def products(self) -> None:
        self._get("/api/v1/products/?limit=20", "GET /products/")

    @task(3)
    def product_detail(self) -> None:
        self._get(f"/api/v1/products/{random.choice(_products)}/", "GET /products/{id}/")

    @task(2)
    def orders(self) -> None:
        self._get("/api/v1/orders/?limit=20", "GET /orders/")

    @task(1)
    def statistics(self) -> None:
        self._get("/api/v1/orders/statistics/", "GET /orders/statistics/")

    @task(1)
    def inventory_summary(self) -> None:
        self._get("/api/v1/inventory/summary/", "GET /inventory/summary/")


class Operator(FastHttpUser):
    weight = 1
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        self.headers = auth_headers("admin")
        self.restock()  # a shift starts with receiving goods: every operator adjusts stock

    @task(2)
    def restock(self) -> None:
        pid = random.choice(_products)
        body = {
            "quantity_change": random.randint(5, 50),
            "kind": "receive",
            "reason": "load test restock",
        }
        with self.client.post(
            f"/api/v1/inventory/{pid}/adjust/",
            json=body,
            headers=self.headers,
            name="POST /inventory/{id}/adjust/",
            catch_response=True,
        ) as resp:
            check(resp, (200, 201))

    @task(1)
    def cancel(self) -> None:
        with _lock:
            order_id = random.choice(_recent_orders) if _recent_orders else None
        if order_id is None:
            self.restock()  # nothing to cancel yet
            return
        with self.client.post(
            f"/api/v1/orders/{order_id}/cancel/",
            json={},
            headers=self.headers,
            name="POST /orders/{id}/cancel/",
            catch_response=True,
        ) as resp:
            check(resp, (200,))
