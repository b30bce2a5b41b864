"""Connection settings for failover and pooling: a multi-host DATABASE_URL with
target_session_attrs reaches psycopg unchanged, and DATABASE_POOLER=pgbouncer turns off what a
transaction pooler cannot keep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json
from django.db import connections
conn = connections["default"]
params = conn.get_connection_params()
print(json.dumps({
    "host": params.get("host"), "port": params.get("port"),
    "target_session_attrs": params.get("target_session_attrs"),
    "server_side_binding": conn.settings_dict["OPTIONS"].get("server_side_binding"),
    "disable_cursors": conn.settings_dict["DISABLE_SERVER_SIDE_CURSORS"],
}))
"""


def _probe(**env: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", PROBE],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_multi_host_url_with_target_session_attrs_reaches_psycopg() -> None:
    url = "postgres://app@pg-a:5432,pg-b:5433/fulfillment?target_session_attrs=read-write"

    params = _probe(DATABASE_URL=url)

    assert params["host"] == "pg-a,pg-b"
    assert params["port"] == "5432,5433"
    assert params["target_session_attrs"] == "read-write"
    assert params["disable_cursors"] is False


def test_pgbouncer_pooler_turns_off_server_side_cursors_and_binding() -> None:
    params = _probe(
        DATABASE_URL="postgres://app@pgbouncer:6432/fulfillment", DATABASE_POOLER="pgbouncer"
    )

    assert params["disable_cursors"] is True
    assert params["server_side_binding"] is False
