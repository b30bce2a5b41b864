from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings

from tests.factories import make_product

pytestmark = pytest.mark.django_db

DEAD_REDIS = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        "OPTIONS": {
            "SOCKET_CONNECT_TIMEOUT": 0.2,
            "SOCKET_TIMEOUT": 0.2,
            "IGNORE_EXCEPTIONS": True,
        },
    }
}


def test_health_is_200_when_everything_is_up(client, live_worker):
    response = client.get("/health/")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"]
    assert 0 < body["checks"]["database"]["latency_ms"] < 5_000  # one round trip, measured
    assert body["checks"]["redis"]["ok"]
    assert body["checks"]["migrations"] == {"ok": True, "unapplied": 0}


def test_health_names_redis_when_it_is_unreachable_and_api_still_answers(client, live_worker):
    make_product(sku="STILL-SERVED")
    with override_settings(CACHES=DEAD_REDIS):
        cache.close()
        health = client.get("/health/")
        products = client.get("/api/v1/products/")
        ready = client.get("/health/ready/")

    assert health.status_code == 503
    assert health.json()["failed"] == ["redis"]
    assert products.status_code == 200
    assert products.json()["items"][0]["sku"] == "STILL-SERVED"
    assert ready.status_code == 200


def test_live_is_always_200(client):
    assert client.get("/health/live/").status_code == 200
