from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    cache.clear()
    yield


class ApiClient:
    """Thin JSON client over Django's test client for /api/v1/."""

    def __init__(self, client: Client, headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.headers = headers or {}

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        raw: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        url = path if path.startswith("/") else "/api/v1/" + path
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        kwargs: dict[str, Any] = {"headers": {**self.headers, **(headers or {})}}
        if data is not None:
            kwargs.update(data=data, content_type="application/json")
        return getattr(self.client, method)(url, **kwargs)

    def get(self, path: str, **kw: Any) -> Any:
        return self._call("get", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self._call("post", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self._call("patch", path, body, **kw)


@pytest.fixture
def api(client: Client) -> ApiClient:
    return ApiClient(client)


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape of DESIGN.md."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


@pytest.fixture(autouse=True)
def _pipeline_test_settings(settings: Any) -> None:
    """Tests run the pipeline with zero delays, no simulated failures and no retry backoff."""
    settings.PIPELINE_DELAYS = {s: (0.0, 0.0) for s in ("processing", "shipped", "delivered")}
    settings.PIPELINE_FAILURE_RATES = {s: 0.0 for s in ("processing", "shipped", "delivered")}
    settings.PIPELINE_RETRY_BACKOFF_SECONDS = 0


@pytest.fixture
def empty_queue(django_db_blocker: Any) -> Iterator[None]:
    """Procrastinate's tables are unmanaged, so transactional tests' flush leaves them: empty
    them around tests that run workers."""
    from django.db import connection

    def truncate() -> None:
        with django_db_blocker.unblock(), connection.cursor() as cur:
            cur.execute(
                "TRUNCATE procrastinate_events, procrastinate_periodic_defers, "
                "procrastinate_jobs, procrastinate_workers CASCADE"
            )

    truncate()
    yield
    truncate()


@pytest.fixture
def live_worker(db: Any) -> int:
    """A registered Procrastinate worker with a fresh heartbeat (what a running worker writes)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT worker_id FROM procrastinate_register_worker_v1()")
        return int(cur.fetchone()[0])
