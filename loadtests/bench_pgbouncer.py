"""Order intake through PgBouncer, a scenario of the benchmark driver (``loadtests/bench.py``).

``http_single_pgbouncer``: the ``http_single`` load (single orders, ``clients`` clients) against
a second gunicorn, started like the first, whose database connections go through PgBouncer in
transaction pooling mode (``DATABASE_POOLER=pgbouncer``, the documented web configuration), in
front of the same bench PostgreSQL. Its orders/s next to ``http_single``'s of the same round give
the pooler's cost. Without PgBouncer installed the scenario reports that and measures nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from loadtests.bench_intake import _http_run
from loadtests.benchlib import Bench, start_web, stop_web


def http_single_pgbouncer(bench: Bench) -> dict[str, Any]:
    """POST /api/v1/orders/ through PgBouncer (transaction pooling), as ``http_single``."""
    from config.devstack.replication import PGBOUNCER_INSTALL_HINT, PgBouncer, pgbouncer_path

    if pgbouncer_path() is None:
        return {"skipped": PGBOUNCER_INSTALL_HINT}
    db = bench.db
    with tempfile.TemporaryDirectory(prefix="bench-pgbouncer-") as tmp:
        Path(tmp).chmod(0o755)  # PgBouncer runs as the database's user when we are root
        bouncer = PgBouncer(
            Path(tmp) / "pgbouncer",
            int(db["port"]),
            pool_mode="transaction",
            pool_size=bench.web_concurrency,
        )
        bouncer.start()
        web = None
        direct_url = bench.base_url
        try:
            env = {
                **bench.env,
                "DATABASE_URL": bouncer.url(db["name"]),
                "DATABASE_POOLER": "pgbouncer",
            }
            web, bench.base_url = start_web(env, bench.web_concurrency)
            figures = _http_run(bench, "single", bench.clients)
        finally:
            bench.base_url = direct_url
            stop_web(web)
            bouncer.stop()
    direct = bench.results.get("http_single", {}).get("orders/s")
    if direct:
        figures["ratio to direct"] = round(figures["orders/s"] / direct, 2)
    figures["pool"] = f"transaction, {bench.web_concurrency} server connections"
    return figures
