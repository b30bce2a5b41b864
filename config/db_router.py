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

Read-your-writes across requests (:class:`ReplicaRoutingMiddleware`): the response to an unsafe
request carries ``X-DB-Position``, the primary's WAL position after the request committed
(``pg_current_wal_insert_lsn()``). A client that sends it back in the ``X-DB-Position`` header of
a later read is served by the replica only if the replica has replayed at least that far
(``pg_last_wal_replay_lsn()``), else by the primary. The replica's position is cached per process
for ``DATABASE_REPLICA_POSITION_CACHE_MS``: replay only moves forward, so a cached position is a
lower bound and a decision taken from it is never stale.

Replica down: a failed position probe, or a read request that used the replica and ended in 503,
marks the replica down for ``DATABASE_REPLICA_COOLDOWN_SECONDS``; the middleware then runs that
read request again on the primary, and reads go to the primary until the cool-down ends.

The "pinned to primary" flag is a context variable, reset at the start of each request from the
request's method. Outside requests (the Procrastinate worker) it stays set after the first write.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.signals import request_started
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, router

if TYPE_CHECKING:
    from django.db.models import Model
    from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

REPLICA_DB_ALIAS = "replica"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
POSITION_HEADER = "X-DB-Position"
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")

_pinned_to_primary: ContextVar[bool] = ContextVar("db_pinned_to_primary", default=False)
# The WAL position (as an integer) this request's reads must see, from X-DB-Position.
_min_position: ContextVar[int | None] = ContextVar("db_min_position", default=None)
# Whether a read of this request went to the replica.
_used_replica: ContextVar[bool] = ContextVar("db_used_replica", default=False)


def pin_to_primary() -> None:
    """Route every further read of this request (or job) to the primary."""
    _pinned_to_primary.set(True)


def is_pinned_to_primary() -> bool:
    return _pinned_to_primary.get()


def parse_lsn(text: str) -> int | None:
    """``"0/1A2B3C"`` -> its integer position; None when ``text`` is not an LSN."""
    match = _LSN.match(text.strip())
    if match is None:
        return None
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


class _ReplicaState:
    """Per process: the replica's last known replay position and the end of a cool-down."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.position: int = 0
        self.position_at: float = float("-inf")
        self.down_until: float = float("-inf")

    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    def mark_down(self, reason: object) -> None:
        cooldown = float(getattr(settings, "DATABASE_REPLICA_COOLDOWN_SECONDS", 5.0))
        with self.lock:
            self.down_until = time.monotonic() + cooldown
        logger.warning(
            "replica unavailable, reads go to the primary for %.1fs: %s", cooldown, reason
        )
        with contextlib.suppress(Exception):
            connections[REPLICA_DB_ALIAS].close()

    def reset(self) -> None:
        with self.lock:
            self.position, self.position_at, self.down_until = 0, float("-inf"), float("-inf")

    def has_replayed(self, required: int) -> bool:
        """Whether the replica has replayed up to ``required``: from the cached position when it
        is far enough, else from a probe (at most one per cache period)."""
        if self.position >= required:
            return True
        ttl = float(getattr(settings, "DATABASE_REPLICA_POSITION_CACHE_MS", 20)) / 1000
        if time.monotonic() - self.position_at < ttl:
            return False
        try:
            with connections[REPLICA_DB_ALIAS].cursor() as cur:
                cur.execute("SELECT pg_last_wal_replay_lsn()::text")
                row = cur.fetchone()
        except DatabaseError as exc:
            self.mark_down(exc)
            return False
        position = parse_lsn(row[0]) if row and row[0] else None
        with self.lock:
            self.position_at = time.monotonic()
            if position is not None and position > self.position:
                self.position = position
        return self.position >= required


replica_state = _ReplicaState()


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
    _min_position.set(None)
    _used_replica.set(False)


request_started.connect(_on_request_started, dispatch_uid="config.db_router.request_started")


class PrimaryReplicaRouter:
    """Reads to the replica when safe; writes, locks, transactions and migrations to the primary."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str:
        if _pinned_to_primary.get() or connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return DEFAULT_DB_ALIAS
        if replica_state.is_down():
            return DEFAULT_DB_ALIAS
        if not _used_replica.get():
            # First replica read of this request: is the replica far enough for the client?
            required = _min_position.get()
            if required is not None and not replica_state.has_replayed(required):
                pin_to_primary()
                return DEFAULT_DB_ALIAS
            _used_replica.set(True)
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


def router_active() -> bool:
    return any(isinstance(r, PrimaryReplicaRouter) for r in router.routers)


class ReplicaRoutingMiddleware:
    """Carries the commit position between requests (``X-DB-Position``) and falls back to the
    primary when the replica fails during a read request. A no-op unless the router is on."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not router_active():
            return self.get_response(request)
        safe = request.method in SAFE_METHODS
        if safe:
            sent = request.headers.get(POSITION_HEADER, "")
            if sent:
                position = parse_lsn(sent)
                if position is None:
                    pin_to_primary()  # unreadable: the primary is always recent enough
                else:
                    _min_position.set(position)
        response = self.get_response(request)
        if safe and response.status_code == 503 and _used_replica.get():
            # The replica failed mid-request (a read changes nothing): again on the primary.
            replica_state.mark_down(f"{request.method} {request.path} answered 503")
            _used_replica.set(False)
            pin_to_primary()
            response = self.get_response(request)
        if not safe and response.status_code < 400:
            commit_position = _primary_position()
            if commit_position is not None:
                response[POSITION_HEADER] = commit_position
        return response


def _primary_position() -> str | None:
    """The primary's WAL insert position now, past the commit of everything this request did."""
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cur:
            cur.execute("SELECT pg_current_wal_insert_lsn()::text")
            row = cur.fetchone()
    except DatabaseError:
        return None
    return str(row[0]) if row else None
