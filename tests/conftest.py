from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

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


_key_seq = itertools.count(1)
DB_FIXTURES = (
    "db",
    "transactional_db",
    "django_db_reset_sequences",
    "django_db_serialized_rollback",
)


def missing_tool(message: str, require_var: str) -> NoReturn:
    """A system tool a test needs is not installed: skip with ``message`` (which says how to
    install it), or fail when ``require_var`` is ``1`` (``.ci/run`` sets it, so CI never skips)."""
    if os.environ.get(require_var) == "1":
        pytest.fail(f"{require_var}=1 but {message}", pytrace=False)
    pytest.skip(message)


def stop_process(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM a server or worker the test started, SIGKILL it if it is still up after
    ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def subprocess_database_url() -> str:
    """The URL of the test database, for a server or worker process the test starts (data a
    transactional test commits is visible to it)."""
    from django.db import connection

    db = connection.settings_dict
    return "postgres://{}:{}@{}:{}/{}".format(
        db["USER"], db["PASSWORD"] or "", db["HOST"], db["PORT"], db["NAME"]
    )


def issue_key(role: str, name: str | None = None) -> str:
    """A new API key with ``role`` (through the service, like any client's); returns the raw key."""
    from fulfillment.services.api_keys import api_key_create

    return api_key_create(name=name or f"test-{role}-{next(_key_seq)}", role=role).raw_key


def without_auth_queries(queries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Captured queries minus the API key lookup (and its last-used stamp) that every
    authenticated request makes, i.e. the statements of the operation itself."""
    return [q for q in queries if "fulfillment_apikey" not in q["sql"]]


def _has_db(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("django_db") is not None or any(
        f in request.fixturenames for f in DB_FIXTURES
    )


@pytest.fixture
def client(request: pytest.FixtureRequest) -> Client:
    """Django's test client, sending an ``admin`` API key when the test may use the database.

    Every API operation needs a key; role-specific and anonymous clients are ``api_as(role)``
    and ``anon_api``. Public URLs (health, docs, schema) ignore the header.
    """
    if not _has_db(request):
        return Client()
    request.getfixturevalue(
        "db" if "transactional_db" not in request.fixturenames else "transactional_db"
    )
    return Client(headers={"Authorization": f"Bearer {issue_key('admin')}"})


@pytest.fixture
def api(client: Client) -> ApiClient:
    """JSON client for /api/v1/, authenticated as ``admin``."""
    return ApiClient(client)


@pytest.fixture
def api_as(request: pytest.FixtureRequest) -> Callable[[str], ApiClient]:
    """``api_as("viewer")``: a JSON client with a fresh key of that role."""
    request.getfixturevalue(
        "db" if "transactional_db" not in request.fixturenames else "transactional_db"
    )

    def make(role: str) -> ApiClient:
        return ApiClient(Client(), {"Authorization": f"Bearer {issue_key(role)}"})

    return make


@pytest.fixture
def anon_api() -> ApiClient:
    """A JSON client that sends no API key."""
    return ApiClient(Client())


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape: ``{"error": {"code", "message", "details"}}``."""
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


@pytest.fixture(autouse=True)
def _fast_password_hashing(request: pytest.FixtureRequest, settings: Any) -> None:
    """Passwords of test users are hashed with a fast hasher (PBKDF2 at production strength costs
    half a second per user); the browser tests keep the real one, since the gunicorn they log in
    through verifies with the production settings."""
    if request.node.get_closest_marker("browser") is None:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


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
