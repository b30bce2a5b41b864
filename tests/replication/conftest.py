"""A real hot standby of the test database's server, streaming with a replication delay, and
the router pointed at it (``replica_on``).

The standby is a ``pg_basebackup -R`` copy of the server the session runs on, made after the
test database exists, started with ``recovery_min_apply_delay`` so every commit reaches it
``APPLY_DELAY_MS`` late: real lag, not a second connection to the same database.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.test.utils import override_settings

from config import db_router
from config.db_router import REPLICA_DB_ALIAS, parse_lsn, replica_state
from config.devstack.replication import PgServer, create_standby, wait_streaming
from config.devstack.servers import DevStack

ROUTER = "config.db_router.PrimaryReplicaRouter"
# Long enough that a request right after a write still finds the standby behind on a busy machine.
APPLY_DELAY_MS = 2500


@pytest.fixture(scope="session")
def standby(django_db_setup: Any, django_db_blocker: Any) -> Iterator[PgServer]:
    primary = connections["default"].settings_dict
    if primary["HOST"] not in ("127.0.0.1", "localhost"):
        pytest.fail("the replication tests copy the local test server with pg_basebackup")
    port = int(primary["PORT"])
    # Under the dev stack's directory: the server user must reach it when tests run as root.
    pgdata = DevStack().base / f"standby-{os.getpid()}"
    server = create_standby(
        port, pgdata, apply_delay_ms=APPLY_DELAY_MS, application_name="test_standby"
    )
    try:
        wait_streaming(PgServer(Path(), port), "test_standby")
        yield server
    finally:
        server.remove()


def primary_position() -> int:
    with connections["default"].cursor() as cur:
        cur.execute("SELECT pg_current_wal_insert_lsn()::text")
        position = parse_lsn(cur.fetchone()[0])
    assert position is not None
    return position


def standby_position(server: PgServer) -> int:
    rows = server.execute("SELECT pg_last_wal_replay_lsn()::text")
    position = parse_lsn(str(rows[0][0]))
    assert position is not None
    return position


def wait_replayed(server: PgServer, timeout: float = 15) -> None:
    """Wait until the standby has replayed everything the primary has committed so far."""
    target = primary_position()
    deadline = time.monotonic() + timeout
    while standby_position(server) < target:
        assert time.monotonic() < deadline, "the standby did not catch up"
        time.sleep(0.05)


@pytest.fixture
def replica_on(standby: PgServer, transactional_db: Any) -> Iterator[PgServer]:
    """The ``replica`` alias on the standby and the router on, for one test."""
    conn = connections[REPLICA_DB_ALIAS]
    original = conn.settings_dict
    conn.close()
    # A mirror shares the primary's settings dict: replace it, never change it in place.
    conn.settings_dict = {**original, "PORT": str(standby.port)}
    replica_state.reset()
    token = db_router._pinned_to_primary.set(False)
    try:
        with override_settings(DATABASE_ROUTERS=[ROUTER], DATABASE_REPLICA_COOLDOWN_SECONDS=2.0):
            yield standby
    finally:
        db_router._pinned_to_primary.reset(token)
        conn.close()
        conn.settings_dict = original
        replica_state.reset()
        if not standby.running():
            standby.start()
