"""Primary/replica database router, active when ``DATABASE_REPLICA_URL`` is set.

Reads go to the ``replica`` alias (a streaming replica of the primary); everything else goes to
the primary (``default``):

* writes (``db_for_write``: saves, ``update()``, ``delete()``, ``get_or_create()`` ...);
* ``select_for_update()`` querysets: Django routes them through ``db_for_write``, so a row lock
  is always taken on the primary;
* any read made while the primary connection is inside ``transaction.atomic``: the transaction
  must see its own writes and hold its locks, and a replica cannot serve either;
* every read after the first write of the current request or job ("read your own writes": a
  replica lags behind), and every read of an unsafe HTTP request (POST, PUT, PATCH, DELETE).

Raw SQL through ``django.db.connection`` never passes a router and always runs on the primary.
Migrations run on the primary only; the replica receives them through replication.

The "pinned to primary" flag is a context variable, reset at the start of each request from the
request's method. Outside requests (the Procrastinate worker) it stays set after the first write.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.core.signals import request_started
from django.db import DEFAULT_DB_ALIAS, connections

if TYPE_CHECKING:
    from django.db.models import Model

REPLICA_DB_ALIAS = "replica"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_pinned_to_primary: ContextVar[bool] = ContextVar("db_pinned_to_primary", default=False)


def pin_to_primary() -> None:
    """Route every further read of this request (or job) to the primary."""
    _pinned_to_primary.set(True)


def is_pinned_to_primary() -> bool:
    return _pinned_to_primary.get()


def _request_method(environ: dict[str, Any] | None, scope: dict[str, Any] | None) -> str:
    if environ is not None:
        return str(environ.get("REQUEST_METHOD", "GET")).upper()
    if scope is not None:
        return str(scope.get("method", "GET")).upper()
    return "GET"


def _on_request_started(
    sender: object,
    environ: dict[str, Any] | None = None,
    scope: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    """A new request starts unpinned, unless its method is unsafe (it will write)."""
    _pinned_to_primary.set(_request_method(environ, scope) not in SAFE_METHODS)


request_started.connect(_on_request_started, dispatch_uid="config.db_router.request_started")


class PrimaryReplicaRouter:
    """Reads to the replica when safe; writes, locks, transactions and migrations to the primary."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        if _pinned_to_primary.get() or connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return DEFAULT_DB_ALIAS
        return REPLICA_DB_ALIAS

    def db_for_write(self, model: type[Model], **hints: Any) -> str:
        pin_to_primary()
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        # Both aliases hold the same data (the replica is a copy of the primary).
        dbs = {DEFAULT_DB_ALIAS, REPLICA_DB_ALIAS}
        if obj1._state.db in dbs and obj2._state.db in dbs:
            return True
        return None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool:
        return db == DEFAULT_DB_ALIAS
