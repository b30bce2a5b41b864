"""Throttling per API key and per client IP on the Redis cache; 429 + Retry-After; fails open."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client, RequestFactory, override_settings
from ninja.throttling import AuthRateThrottle

from fulfillment.models import Product
from fulfillment.throttling import KeyThrottle
from tests.conftest import ApiClient, assert_error, issue_key

pytestmark = pytest.mark.django_db

DEAD_REDIS = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        "KEY_PREFIX": "of",
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 0.2,
            "SOCKET_TIMEOUT": 0.2,
            "IGNORE_EXCEPTIONS": True,
        },
    }
}
NEW_PRODUCT = {"sku": "THR-1", "name": "Widget", "price": "1.00"}


def _client(role: str = "admin", **extra: str) -> ApiClient:
    return ApiClient(Client(**extra), {"Authorization": f"Bearer {issue_key(role)}"})


@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
@override_settings(THROTTLE_RATES={"key": "3/min", "anon": "100/min"})
def test_key_over_its_rate_gets_429_with_retry_after_and_other_keys_do_not(role):
    client, other = _client(role), _client(role)

    statuses = [client.get("products/").status_code for _ in range(3)]
    throttled = client.get("products/")

    assert statuses == [200, 200, 200]
    error = assert_error(throttled, 429, "throttled")
    retry_after = int(throttled["Retry-After"])
    assert 1 <= retry_after <= 60
    assert error["details"]["retry_after"] == retry_after
    assert error["details"]["limit"] == "3/60s"
    assert other.get("products/").status_code == 200


@override_settings(THROTTLE_RATES={"key": "1/min", "anon": "100/min"})
def test_throttled_write_writes_nothing():
    client = _client()
    assert client.get("products/").status_code == 200

    assert_error(client.post("products/", NEW_PRODUCT), 429, "throttled")
    assert not Product.objects.exists()


@override_settings(THROTTLE_RATES={"key": "100/min", "anon": "2/min"}, ALLOW_ANONYMOUS_READS=True)
def test_anonymous_reads_are_throttled_per_ip_and_x_forwarded_for_is_not_trusted():
    first_ip = ApiClient(Client(REMOTE_ADDR="10.0.0.1"))
    second_ip = ApiClient(Client(REMOTE_ADDR="10.0.0.2"))

    assert first_ip.get("products/").status_code == 200
    assert first_ip.get("products/", headers={"X-Forwarded-For": "1.2.3.4"}).status_code == 200
    # A spoofed X-Forwarded-For does not give a fresh budget (NUM_PROXIES=0).
    spoofed = first_ip.get("products/", headers={"X-Forwarded-For": "5.6.7.8"})
    assert_error(spoofed, 429, "throttled")
    assert int(spoofed["Retry-After"]) >= 1
    assert second_ip.get("products/").status_code == 200
    # A key is throttled by its own budget, not by the IP's.
    keyed = _client(REMOTE_ADDR="10.0.0.1")
    assert keyed.get("products/").status_code == 200


@override_settings(THROTTLE_RATES={"key": "", "anon": ""})
def test_an_empty_rate_turns_throttling_off():
    client = _client()
    assert all(client.get("products/").status_code == 200 for _ in range(5))


@override_settings(THROTTLE_RATES={"key": "1/min", "anon": "1/min"}, CACHES=DEAD_REDIS)
def test_throttling_fails_open_when_redis_is_down():
    cache.close()
    client = _client()

    statuses = [client.get("products/").status_code for _ in range(4)]
    created = client.post("products/", NEW_PRODUCT)

    assert statuses == [200, 200, 200, 200]
    assert created.status_code == 201, created.content
    cache.close()


@override_settings(CACHES=DEAD_REDIS)
def test_ninja_stock_throttle_also_fails_open_with_ignore_exceptions():
    """What ninja's own throttles do on a dead Redis: django-redis' ``get`` returns the default
    (``[]``) and ``set`` returns None, so they allow everything instead of raising. Ours keeps
    that behaviour (``incr``/``add`` return None there) with an atomic counter."""
    cache.close()
    request = RequestFactory().get("/api/v1/products/", REMOTE_ADDR="10.9.9.9")
    stock = AuthRateThrottle("1/min")
    ours = KeyThrottle()
    request.api_key = type("K", (), {"pk": 1})()

    assert all(stock.allow_request(request) for _ in range(3))
    with override_settings(THROTTLE_RATES={"key": "1/min"}):
        assert all(ours.allow_request(request) for _ in range(3))
    cache.close()


@override_settings(THROTTLE_RATES={"key": "2/min", "anon": "100/min"})
def test_counter_lives_in_redis_with_the_window_as_ttl():
    raw = issue_key("viewer")
    client = ApiClient(Client(), {"Authorization": f"Bearer {raw}"})
    client.get("products/")
    client.get("products/")

    keys = [k for k in cache.keys("throttle:key:*")]
    assert len(keys) == 1
    assert cache.get(keys[0]) == 2
    assert 0 < cache.ttl(keys[0]) <= 61
