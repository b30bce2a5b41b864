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
