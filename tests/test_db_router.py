"""Primary/replica routing (config/db_router.py).

The test session defines a ``replica`` alias that mirrors the test database (``TEST: {"MIRROR":
"default"}``, set by config/devstack/pytest_plugin.py) with no router; these tests switch the router on.
The mirror is a second connection (its own PostgreSQL session) to the same database, so tests are
transactional (committed data) and each check looks at which connection really ran the queries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections, router, transaction
from django.test.utils import CaptureQueriesContext, override_settings

from config import db_router
from config.db_router import REPLICA_DB_ALIAS, PrimaryReplicaRouter
from fulfillment.models import Product, StockLevel
from tests.factories import make_product

ROOT = Path(__file__).resolve().parent.parent
ROUTER = "config.db_router.PrimaryReplicaRouter"

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", REPLICA_DB_ALIAS])


@pytest.fixture(autouse=True)
def _router_on() -> Iterator[None]:
    with override_settings(DATABASE_ROUTERS=[ROUTER]):
        token = db_router._pinned_to_primary.set(False)  # each test starts unpinned
        try:
            yield
        finally:
            db_router._pinned_to_primary.reset(token)


class _Queries:
    """Queries run on the primary and on the replica connection inside the block."""

    def __enter__(self) -> _Queries:
        self.primary = CaptureQueriesContext(connections["default"])
        self.replica = CaptureQueriesContext(connections[REPLICA_DB_ALIAS])
        self.primary.__enter__()
        self.replica.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.replica.__exit__(*exc)
        self.primary.__exit__(*exc)

    def sql(self, alias: str, table: str) -> list[str]:
        ctx = self.primary if alias == "default" else self.replica
        return [q["sql"] for q in ctx.captured_queries if f'"{table}"' in q["sql"]]


def test_replica_mirrors_the_test_database() -> None:
    assert connections[REPLICA_DB_ALIAS].settings_dict["TEST"]["MIRROR"] == "default"
    assert (
        connections[REPLICA_DB_ALIAS].settings_dict["NAME"]
        == connections["default"].settings_dict["NAME"]
    )
    assert [type(r) for r in router.routers] == [PrimaryReplicaRouter]


def test_plain_reads_go_to_the_replica_and_really_run_there() -> None:
    product = make_product(sku="READ-1")
    db_router._pinned_to_primary.set(False)  # the factory's write pinned this "request"
    assert Product.objects.all().db == REPLICA_DB_ALIAS

    with _Queries() as q:
        loaded = Product.objects.get(sku="READ-1")

    assert loaded.pk == product.pk
    assert loaded._state.db == REPLICA_DB_ALIAS
    assert q.sql(REPLICA_DB_ALIAS, "fulfillment_product")
    assert not q.sql("default", "fulfillment_product")


def test_writes_go_to_the_primary_and_pin_later_reads_to_it() -> None:
    assert router.db_for_write(Product) == "default"
    assert db_router.is_pinned_to_primary()
    assert Product.objects.all().db == "default"

    db_router._pinned_to_primary.set(False)
    with _Queries() as q:
        make_product(sku="WRITE-1")
        reread = Product.objects.get(sku="WRITE-1")

    assert reread._state.db == "default"
    assert q.sql("default", "fulfillment_product")
    assert not q.sql(REPLICA_DB_ALIAS, "fulfillment_product")


def test_reads_inside_a_transaction_on_the_primary_go_to_the_primary() -> None:
    product = make_product()
    db_router._pinned_to_primary.set(False)

    with _Queries() as q, transaction.atomic():
        assert Product.objects.all().db == "default"
        assert Product.objects.get(pk=product.pk)._state.db == "default"

    assert not q.sql(REPLICA_DB_ALIAS, "fulfillment_product")
    assert Product.objects.all().db == REPLICA_DB_ALIAS  # after the block: replica again


def test_select_for_update_always_runs_on_the_primary() -> None:
    product = make_product()
    db_router._pinned_to_primary.set(False)
    assert StockLevel.objects.select_for_update().db == "default"

    with _Queries() as q, transaction.atomic():
        locked = StockLevel.objects.select_for_update().get(product_id=product.pk)

    assert locked._state.db == "default"
    assert any("FOR UPDATE" in sql for sql in q.sql("default", "fulfillment_stocklevel"))
    assert not q.sql(REPLICA_DB_ALIAS, "fulfillment_stocklevel")


def test_migrations_only_on_the_primary_and_relations_allowed_across_aliases() -> None:
    assert router.allow_migrate("default", "fulfillment", model_name="product")
    assert not router.allow_migrate(REPLICA_DB_ALIAS, "fulfillment", model_name="product")
    a = Product(sku="A")
    b = Product(sku="B")
    a._state.db, b._state.db = "default", REPLICA_DB_ALIAS
    assert router.allow_relation(a, b)


def test_get_requests_read_products_from_the_replica(api) -> None:
    product = make_product(sku="API-READ-1", stock=7)

    with _Queries() as q:
        listing = api.get("products/?search=API-READ")
        detail = api.get(f"products/{product.pk}/")

    assert listing.status_code == 200, listing.content
    assert [p["sku"] for p in listing.json()["items"]] == ["API-READ-1"]
    assert detail.status_code == 200, detail.content
    assert detail.json()["stock"]["on_hand"] == 7
    assert q.sql(REPLICA_DB_ALIAS, "fulfillment_product")
    assert not q.sql("default", "fulfillment_product")


def test_unsafe_requests_use_only_the_primary(api) -> None:
    with _Queries() as q:
        created = api.post(
            "products/", {"sku": "API-W-1", "name": "Written", "price": "3.00", "initial_stock": 2}
        )

    assert created.status_code == 201, created.content
    assert created.json()["stock"]["on_hand"] == 2
    assert q.sql("default", "fulfillment_product")
    assert not q.sql(REPLICA_DB_ALIAS, "fulfillment_product")
    # The next GET request starts unpinned and reads from the replica again.
    with _Queries() as q:
        assert api.get(f"products/{created.json()['id']}/").status_code == 200
    assert q.sql(REPLICA_DB_ALIAS, "fulfillment_product")


def _settings_in_subprocess(**env: str) -> dict[str, object]:
    """Load config.settings in a fresh interpreter with the given environment."""
    clean = {
        k: v for k, v in os.environ.items() if k not in {"DATABASE_REPLICA_URL", "DATABASE_ROUTERS"}
    }
    code = (
        "import json; from config import settings as s; "
        "print(json.dumps({'aliases': sorted(s.DATABASES), 'routers': s.DATABASE_ROUTERS, "
        "'mirror': s.DATABASES.get('replica', {}).get('TEST', {}).get('MIRROR'), "
        "'replica_host': s.DATABASES.get('replica', {}).get('HOST')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.django_db(transaction=False)
def test_settings_add_the_replica_and_router_only_when_database_replica_url_is_set() -> None:
    without = _settings_in_subprocess()
    assert without["aliases"] == ["default"]
    assert without["routers"] == []

    with_replica = _settings_in_subprocess(
        DATABASE_REPLICA_URL="postgres://reader:secret@replica.internal:5432/fulfillment"
    )
    assert with_replica["aliases"] == ["default", "replica"]
    assert with_replica["routers"] == [ROUTER]
    assert with_replica["mirror"] == "default"
    assert with_replica["replica_host"] == "replica.internal"
