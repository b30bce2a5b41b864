"""The API through PgBouncer in transaction pooling mode: the API test files run unchanged in a
pytest subprocess whose every database connection goes through a PgBouncer this test starts.

Why a pytest subprocess rather than a gunicorn smoke test: the API tests are the full
description of the API's behaviour (every endpoint, error, lock and transaction), so running
them through the pooler checks all of it against the documented web configuration
(``DATABASE_POOLER=pgbouncer``), not a sample. The subprocess cannot share this session's
database: PgBouncer keeps server connections open, so its test database is separate, kept
between the runs of the child (``--reuse-db``) and dropped here, PgBouncer stopped first.

Workers connect to PostgreSQL directly (their stage statement is prepared once per session,
which a transaction pooler does not keep), as every worker of the other tests does; the API
tests run no stage job, so nothing here prepares a statement.
PgBouncer missing: skipped locally with the install command, a failure when
``REQUIRE_PGBOUNCER=1`` (CI).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
from django.db import connections

from config.devstack.replication import PGBOUNCER_INSTALL_HINT, PgBouncer, PgServer, pgbouncer_path
from config.devstack.servers import DevStack
from tests.conftest import missing_tool

ROOT = Path(__file__).resolve().parents[2]
CHILD_DB = "test_fulfillment_pgbouncer"


def _require_pgbouncer() -> None:
    if pgbouncer_path() is None:
        missing_tool(f"pgbouncer not found: {PGBOUNCER_INSTALL_HINT}", "REQUIRE_PGBOUNCER")


@pytest.mark.slow
def test_the_api_tests_pass_through_pgbouncer_in_transaction_pooling(db, tmp_path) -> None:
    _require_pgbouncer()
    settings = connections["default"].settings_dict
    server = PgServer(Path(), int(settings["PORT"]))
    drop = f'DROP DATABASE IF EXISTS "{CHILD_DB}" WITH (FORCE)'
    server.execute(drop)
    bouncer = PgBouncer(
        DevStack().base / f"pgbouncer-{os.getpid()}", server.port, pool_mode="transaction"
    )
    bouncer.start()
    try:
        url = bouncer.url("fulfillment")
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DATABASE_REPLICA_URL": url,
            "DATABASE_POOLER": "pgbouncer",
            "TEST_DATABASE_NAME": CHILD_DB,
        }
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/api",
                "-q",
                "-p",
                "no:cacheprovider",
                "--reuse-db",
                "-x",
                f"--junitxml={tmp_path / 'api.xml'}",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        stats = {row["database"]: row for row in bouncer.show("STATS")}
        pools = bouncer.show("POOLS")
    finally:
        bouncer.remove()
        server.execute(drop)

    assert child.returncode == 0, child.stdout[-6000:] + child.stderr[-3000:]
    suite = ElementTree.parse(tmp_path / "api.xml").getroot().find("testsuite")
    assert suite is not None
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] >= 80 and counts["failures"] == counts["errors"] == 0, counts
    assert counts["skipped"] == 0, counts
    # The child's queries really went through PgBouncer, in transaction pooling mode.
    assert int(stats[CHILD_DB]["total_xact_count"]) > 1000, stats
    assert {p["pool_mode"] for p in pools if p["database"] == CHILD_DB} == {"transaction"}
