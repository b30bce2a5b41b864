"""API keys, roles and the policy table: 401 / 403 per role, anonymous reads, actor on the audit."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from django.test import Client, RequestFactory, override_settings
from pghistory.models import Context

from fulfillment.auth import ADMIN, OPERATOR, VIEWER, required_role
from fulfillment.models import ApiKey, Product, StockMovement
from fulfillment.services.api_keys import api_key_create, api_key_revoke
from tests.conftest import ApiClient, assert_error, issue_key
from tests.factories import make_product

pytestmark = pytest.mark.django_db

NEW_PRODUCT = {"sku": "AUTH-1", "name": "Widget", "price": "1.00", "initial_stock": 5}


def _bearer(raw: str) -> ApiClient:
    return ApiClient(Client(), {"Authorization": f"Bearer {raw}"})


# --- 401 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,path", [("get", "products/"), ("post", "products/")])
def test_request_without_key_is_401_with_bearer_challenge(anon_api, method, path):
    response = getattr(anon_api, method)(
        path, **({"body": NEW_PRODUCT} if method == "post" else {})
    )

    error = assert_error(response, 401, "unauthorized")
    assert "API key is required" in error["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert not Product.objects.exists()


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-key",
        "Bearer ",
        "Bearer of_000000000000_wrongsecret",
        "bearer of__",
    ],
)
def test_malformed_or_unknown_key_is_401(header):
    response = ApiClient(Client(), {"Authorization": header}).get("products/")

    assert_error(response, 401, "unauthorized")


def test_key_with_right_prefix_but_wrong_secret_is_401():
    raw = issue_key("admin")
    prefix = raw.split("_")[1]

    assert_error(_bearer(f"of_{prefix}_{'x' * 43}").get("products/"), 401, "unauthorized")
    assert _bearer(raw).get("products/").status_code == 200


def test_revoked_key_is_401_from_the_next_request_on():
    issued = api_key_create(name="soon-gone", role="admin")
    client = _bearer(issued.raw_key)
    assert client.get("products/").status_code == 200

    api_key_revoke(name="soon-gone")

    assert_error(client.get("products/"), 401, "unauthorized")
    assert_error(client.post("products/", NEW_PRODUCT), 401, "unauthorized")
    assert not Product.objects.exists()


def test_bad_key_is_401_even_when_anonymous_reads_are_allowed():
    with override_settings(ALLOW_ANONYMOUS_READS=True):
        response = _bearer("of_nope_nope").get("products/")

    assert_error(response, 401, "unauthorized")


# --- roles (403) ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "role,read,create,update",
    [
        ("viewer", 200, 403, 403),
        ("operator", 200, 403, 403),
        ("admin", 200, 201, 200),
    ],
)
def test_product_endpoints_per_role(api_as, role, read, create, update):
    product = make_product(sku="ROLE-1", price="2.00")
    client = api_as(role)

    assert client.get("products/").status_code == read
    assert client.get(f"products/{product.pk}/").status_code == read
    created = client.post("products/", NEW_PRODUCT)
    updated = client.patch(f"products/{product.pk}/", {"price": "3.00"})

    assert created.status_code == create, created.content
    assert updated.status_code == update, updated.content
    if create == 403:
        error = assert_error(created, 403, "forbidden")
        assert role in error["message"] and "admin" in error["message"]
        assert_error(updated, 403, "forbidden")
        # nothing written
        assert not Product.objects.filter(sku="AUTH-1").exists()
        product.refresh_from_db()
        assert product.price == 2 and product.version == 1
        assert StockMovement.objects.count() == 1  # the factory's receive only


def test_x_api_key_header_authenticates_too():
    raw = issue_key("viewer")

    response = ApiClient(Client(), {"X-API-Key": raw}).get("products/")

    assert response.status_code == 200
    assert_error(ApiClient(Client(), {"X-API-Key": "of_bad_bad"}).get("products/"), 401)


@pytest.mark.parametrize(
    "method,path,role",
    [
        ("GET", "products/", VIEWER),
        ("GET", "products/7/", VIEWER),
        ("GET", "orders/", VIEWER),
        ("GET", "orders/statistics/", VIEWER),
        ("GET", "reports/daily/", VIEWER),
        ("GET", "inventory/summary/", VIEWER),
        ("POST", "orders/", OPERATOR),
        ("POST", "orders/bulk_create/", OPERATOR),
        ("POST", "orders/2b1d1c1e-0000-4000-8000-000000000000/cancel/", OPERATOR),
        ("POST", "orders/check_stale/", ADMIN),
        ("POST", "products/", ADMIN),
        ("PATCH", "products/7/", ADMIN),
        ("PUT", "products/7/", ADMIN),
        ("POST", "inventory/7/adjust/", ADMIN),
        ("POST", "some/new/write/", ADMIN),  # unlisted writes default to admin
        ("DELETE", "orders/2b1d1c1e-0000-4000-8000-000000000000/", ADMIN),
    ],
)
def test_policy_table(method, path, role):
    assert required_role(method, path) == role


# --- anonymous reads ------------------------------------------------------------------------
def test_anonymous_reads_when_allowed_but_never_writes(anon_api):
    make_product(sku="OPEN-1")

    with override_settings(ALLOW_ANONYMOUS_READS=True):
        listed = anon_api.get("products/")
        created = anon_api.post("products/", NEW_PRODUCT)

    assert listed.status_code == 200 and listed.json()["count"] == 1
    assert_error(created, 401, "unauthorized")
    assert not Product.objects.filter(sku="AUTH-1").exists()


def test_anonymous_reads_are_off_by_default(anon_api, settings):
    assert settings.ALLOW_ANONYMOUS_READS is False
    assert_error(anon_api.get("products/"), 401, "unauthorized")


@pytest.mark.parametrize(
    "path", ["/health/", "/health/live/", "/health/ready/", "/api/v1/docs", "/api/v1/openapi.json"]
)
def test_health_docs_and_schema_stay_public(path):
    response = Client().get(path)

    # /health/ is 503 here (no worker runs in this test), but it answers without a key
    assert response.status_code == (503 if path == "/health/" else 200), response.content
    if path.startswith("/health/"):
        assert response.json()["status"]


def test_openapi_declares_both_key_schemes_on_every_operation():
    schema = Client().get("/api/v1/openapi.json").json()

    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKeyBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["ApiKeyBearer"]["description"],
    }
    assert schemes["ApiKeyHeader"]["type"] == "apiKey"
    assert schemes["ApiKeyHeader"]["in"] == "header"
    assert schemes["ApiKeyHeader"]["name"] == "X-API-Key"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation["security"] == [{"ApiKeyBearer": []}, {"ApiKeyHeader": []}], (
                method,
                path,
            )
            for status in ("401", "403", "429"):
                assert status in {str(s) for s in operation["responses"]}, (method, path)


# --- audit actor ----------------------------------------------------------------------------
def test_api_key_is_the_actor_on_ledger_rows_and_history_events():
    issued = api_key_create(name="warehouse-bot", role="admin")

    response = _bearer(issued.raw_key).post(
        "products/", NEW_PRODUCT, headers={"X-Request-ID": "req-actor-1"}
    )

    assert response.status_code == 201, response.content
    movement = StockMovement.objects.get(product_id=response.json()["id"])
    assert movement.actor == "api_key:warehouse-bot"
    product_event = Product.pgh_event_model.objects.get(pgh_obj_id=response.json()["id"])
    context = Context.objects.get(pk=product_event.pgh_context_id)
    assert context.metadata["actor"] == "api_key:warehouse-bot"
    assert context.metadata["api_key"] == "warehouse-bot"
    assert context.metadata["request_id"] == "req-actor-1"


def test_last_used_is_recorded():
    issued = api_key_create(name="tracked", role="viewer")
    assert issued.api_key.last_used_at is None

    _bearer(issued.raw_key).get("products/")

    assert ApiKey.objects.get(name="tracked").last_used_at is not None


def test_only_a_hash_of_the_key_is_stored():
    issued = api_key_create(name="hashed", role="viewer")
    row = ApiKey.objects.filter(name="hashed").values().get()

    assert issued.raw_key not in json.dumps(row, default=str)
    assert row["hashed_secret"] != issued.raw_key and len(row["hashed_secret"]) == 64


# --- management command and admin -----------------------------------------------------------
def test_create_api_key_command_prints_a_working_key_once(capsys):
    call_command("create_api_key", "--name", "cli-key", "--role", "operator")
    raw = capsys.readouterr().out.strip()

    assert raw.startswith("of_")
    assert ApiKey.objects.get(name="cli-key").role == "operator"
    assert _bearer(raw).get("products/").status_code == 200
    assert_error(_bearer(raw).post("products/", NEW_PRODUCT), 403, "forbidden")

    with pytest.raises(CommandError, match="already exists"):
        call_command("create_api_key", "--name", "cli-key", "--role", "admin")

    call_command("create_api_key", "--name", "cli-key", "--revoke")
    assert_error(_bearer(raw).get("products/"), 401, "unauthorized")

    # the key's lifecycle is audited, with the command as the actor, and never its secret
    events = list(ApiKey.pgh_event_model.objects.filter(name="cli-key").order_by("pgh_id"))
    assert [e.pgh_label for e in events] == ["insert", "update"]
    assert events[1].revoked_at is not None
    assert all(e.pgh_context.metadata["actor"] == "command:create_api_key" for e in events)
    assert not hasattr(events[0], "hashed_secret")


def test_create_api_key_command_rejects_unknown_role():
    with pytest.raises(CommandError):
        call_command("create_api_key", "--name", "x", "--role", "root")
    assert not ApiKey.objects.exists()


def test_admin_requires_login_and_shows_a_new_key_once(admin_client):
    anonymous = Client().get("/admin/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]

    response = admin_client.post(
        "/admin/fulfillment/apikey/add/", {"name": "from-admin", "role": "viewer"}, follow=True
    )

    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"] if "of_" in str(m)]
    assert len(shown) == 1
    raw = shown[0].split(": ", 1)[1].split()[0]
    assert _bearer(raw).get("products/").status_code == 200
    assert ApiKey.objects.get(name="from-admin").role == "viewer"


def test_demo_credentials_creates_one_key_per_role_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEVSTACK_DIR", str(tmp_path))

    call_command("demo_credentials")
    first = capsys.readouterr().out
    call_command("demo_credentials")
    second = capsys.readouterr().out

    stored = json.loads((tmp_path / "demo-keys.json").read_text())
    assert set(stored) == {"viewer", "operator", "admin"}
    assert (tmp_path / "demo-keys.json").stat().st_mode & 0o777 == 0o600
    for role, raw in stored.items():
        assert raw in first and raw in second  # printed both times, same keys
        assert ApiKey.objects.get(name=f"demo-{role}").role == role
    assert_error(_bearer(stored["viewer"]).post("products/", NEW_PRODUCT), 403)
    assert _bearer(stored["admin"]).post("products/", NEW_PRODUCT).status_code == 201


# --- cost and sessions ----------------------------------------------------------------------
def test_authentication_costs_one_indexed_select_once_the_key_is_warm():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = _bearer(issue_key("viewer"))
    client.get("products/")  # first use stamps last_used_at (at most once a minute)

    with CaptureQueriesContext(connection) as ctx:
        assert client.get("products/").status_code == 200

    auth = [q["sql"] for q in ctx.captured_queries if "fulfillment_apikey" in q["sql"]]
    assert len(auth) == 1 and auth[0].lstrip().startswith("SELECT")
    assert "WHERE prefix = " in auth[0]


def test_staff_session_acts_as_admin_and_non_staff_session_does_not(django_user_model):
    staff = django_user_model.objects.create_user("staffer", password="pw-123456", is_staff=True)
    plain = django_user_model.objects.create_user("plain", password="pw-123456")
    staff_client, plain_client = Client(), Client()
    staff_client.force_login(staff)
    plain_client.force_login(plain)

    created = ApiClient(staff_client).post("products/", NEW_PRODUCT)

    assert created.status_code == 201, created.content
    assert StockMovement.objects.get(product_id=created.json()["id"]).actor == "user:staffer"
    assert_error(ApiClient(plain_client).get("products/"), 401, "unauthorized")


def test_staff_session_writes_need_a_csrf_token(django_user_model):
    staff = django_user_model.objects.create_user("csrfer", password="pw-123456", is_staff=True)
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)

    assert ApiClient(client).get("products/").status_code == 200
    assert_error(ApiClient(client).post("products/", NEW_PRODUCT), 403, "forbidden")
    assert not Product.objects.exists()


def _real_operations() -> list[tuple[str, str]]:
    import re

    schema = Client().get("/api/v1/openapi.json").json()
    found = []
    for path, operations in schema["paths"].items():
        concrete = path.replace("{order_id}", "2b1d1c1e-0000-4000-8000-000000000000")
        concrete = re.sub(r"\{day\}", "2026-01-01", concrete)
        concrete = re.sub(r"\{[^}]+\}", "1", concrete)
        found += [(method.upper(), concrete) for method in operations]
    return found


def test_every_real_route_enforces_the_policy_table(api_as):
    """Walks the live OpenAPI schema: each role is refused (403) exactly where POLICY says, and
    never refused where it may call (the request then fails later, on its empty body or id)."""
    from fulfillment.auth import ROLE_RANK, api_path

    clients = {role: api_as(role) for role in ("viewer", "operator", "admin")}
    operations = _real_operations()
    assert len(operations) >= 20
    for method, path in operations:
        needed = required_role(method, api_path(RequestFactory().generic(method, path)))
        for role, client in clients.items():
            if method == "GET":
                response = client.get(path)
            else:
                response = client.client.generic(
                    method,
                    path,
                    data="{}",
                    content_type="application/json",
                    headers=client.headers,
                )
            allowed = ROLE_RANK[role] >= ROLE_RANK[needed]
            if allowed:
                assert response.status_code not in (401, 403), (role, method, path)
            else:
                assert response.status_code == 403, (role, method, path, response.content)
