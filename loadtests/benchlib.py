"""What the benchmark driver (``loadtests/bench.py``) and its scenario modules share: the bench
database's constants, :class:`Bench` (servers, the running gunicorn, bench products, sizes), starting
and stopping gunicorn as `make run` does, and a percentile. Imports nothing else from ``loadtests``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
BENCH_SKU_PREFIX = "BENCH-"
HOT_SKU_PREFIX = "HOT-"
BENCH_STOCK = 1_000_000_000
# Throttling stays on its code path (a Redis INCR per request) but never refuses a bench request.
UNLIMITED_RATE = "100000000/min"

# A scenario takes the shared Bench and returns its figures.
Scenario = Callable[["Bench"], dict[str, Any]]


# ----- servers ---------------------------------------------------------------------------------


def start_web(
    env: dict[str, str], workers: int, log: Path | None = None, timeout: float = 30
) -> tuple[subprocess.Popen[bytes], str]:
    """gunicorn as `make run` starts it (``WEB_COMMAND``) on a free loopback port, in its own
    process group, its output in ``log`` (every refused order logs a warning); returns it and
    its base URL once ``/health/live/`` answers."""
    import http.client

    from config.devstack.launcher import WEB_COMMAND, _venv_bin

    port = _free_port()
    with open(log or os.devnull, "ab") as out:
        proc = subprocess.Popen(
            _venv_bin(WEB_COMMAND),
            cwd=ROOT,
            env={
                **env,
                "BIND": f"127.0.0.1:{port}",
                "WEB_CONCURRENCY": str(workers),
                "PYTHONUNBUFFERED": "1",
            },
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health/live/")
            if conn.getresponse().status == 200:
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    stop_web(proc)
    raise RuntimeError("gunicorn did not come up")


def stop_web(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class Bench:
    env: dict[str, str]
    duration: float
    warmup: float
    clients: int = 16
    bulk_clients: int = 2
    bulk_size: int = 1000
    web_concurrency: int = 4
    hot_clients: int = 32
    hot_units: int = 1000
    # pipeline (loadtests/bench_pipeline.py)
    pipeline_orders: int = 1000
    noop_jobs: int = 3000
    worker_concurrencies: tuple[int, ...] = (4, 8, 16)
    pipeline_timeout: float = 60
    delay_rates: tuple[float, ...] = (25, 50, 100)
    delay_seconds: float = 40
    delay_warmup: float = 15
    analytics_orders: int = 1_000_000
    metrics_volume: int = 0  # orders and waiting jobs inserted before the /metrics scrape
    # steady state (loadtests/bench_steady.py)
    steady_rates: tuple[float, ...] = (100, 150, 200)
    steady_seconds: float = 120
    steady_warmup: float = 20
    steady_reference_rate: float = 150
    steady_reference_seconds: float = 20
    steady_drain_timeout: float = 120
    steady_worker_processes: int | None = None  # None: the pool's default (WORKER_PROCESSES)
    steady_worker_args: tuple[str, ...] = ()  # appended to every worker process's command
    product_ids: list[int] = field(default_factory=list)
    hot_product_ids: list[int] = field(default_factory=list)  # one fresh product per round
    headers: dict[str, str] = field(default_factory=dict)  # Authorization with the bench's key
    base_url: str = ""
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    _gunicorn: subprocess.Popen[bytes] | None = None

    # ----- setup -------------------------------------------------------------------------------

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{out.stderr[-3000:]}")
        return out.stdout

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def prepare_database(self, hot_products: int) -> None:
        """Migrate the (fresh) database; 50 bench products with ample stock (contiguous ids,
        for pgbench), ``hot_products`` products with ``hot_units`` each, and an operator API key
        that every bench request sends."""
        self.manage("migrate", "--noinput", "-v", "0")
        code = f"""
import json
from decimal import Decimal
from fulfillment.services.api_keys import api_key_create
from fulfillment.services.products import product_create
def make(sku, stock):
    return product_create(sku=sku, name=f"Bench product {{sku}}", price=Decimal("9.99"),
                          initial_stock=stock, low_stock_threshold=0, is_active=True,
                          actor="bench").pk
products = [make(f"{BENCH_SKU_PREFIX}{{i:03d}}", {BENCH_STOCK}) for i in range(50)]
hot = [make(f"{HOT_SKU_PREFIX}{{i:03d}}", {self.hot_units}) for i in range({hot_products})]
key = api_key_create(name="bench", role="operator").raw_key
print(json.dumps({{"products": products, "hot": hot, "key": key}}))
"""
        out = json.loads(self.manage("shell", "-c", code).strip().splitlines()[-1])
        self.product_ids = out["products"]
        self.hot_product_ids = out["hot"]
        self.headers = {"Authorization": f"Bearer {out['key']}"}

    def start_gunicorn(self, log: Path) -> None:
        self._gunicorn, self.base_url = start_web(self.env, self.web_concurrency, log)

    def stop_gunicorn(self) -> None:
        stop_web(self._gunicorn)

    @property
    def db(self) -> dict[str, str]:
        u = urlparse(self.env["DATABASE_URL"])
        return {
            "host": u.hostname or "127.0.0.1",
            "port": str(u.port or 5432),
            "user": u.username or "postgres",
            "password": u.password or "",
            "name": (u.path or "/").lstrip("/"),
        }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]
