"""Benchmark driver: `make bench` (full run, under ten minutes) or `make bench ARGS=--quick`
(every scenario briefly, under two minutes); ``python -m loadtests.bench --help`` for the knobs.

It starts a THROWAWAY embedded PostgreSQL and Redis (``config.devstack.DevStack`` in a temporary
directory, stopped and deleted at the end), so the dev database is never touched and every run
starts from the same empty state. Each figure is measured next to its reference in the same run,
and the report shows their ratio, the target from the issues and pass/miss. It prints one
Markdown report and writes it to ``loadtests/reports/bench.md`` (every figure also to
``bench.json`` beside it).

A benchmark is a set of scenario functions; each takes the shared :class:`Bench` (servers,
running gunicorn, bench products, sizes) and returns a dict of figures. ``main`` runs the
selected scenarios in order for ``--rounds`` rounds (scenarios registered with ``once=True`` run
in the first round only) and reports medians. Other modules add scenarios with the
``@scenario("name")`` decorator (``loadtests/bench_pipeline.py`` adds the pipeline ones).

Order intake scenarios (issue 4), against gunicorn started as `make run` starts it
(``config.launcher.WEB_COMMAND``: sync workers, persistent connections, ``DEBUG=0``):

- ``statements``: SQL statements per single order and per 1,000-order bulk (Django's capture).
- ``pgbench_single``: the single-order transaction as raw SQL (``loadtests/order_txn.sql``)
  driven by pgbench (simple protocol, 16 clients): the database ceiling, the intake reference.
- ``http_single``: POST /api/v1/orders/, 16 clients, orders of 1-3 lines over 50 products.
- ``http_hot_product``: one product with 1,000 units, 32 clients ordering 1-3 units of it until
  it is sold out; accepted orders/s and oversell (units sold beyond the 1,000; must be 0).
- ``http_bulk``: POST /api/v1/orders/bulk_create/ with 1,000 orders per request.

Pipeline scenarios (issue 5, ``loadtests/bench_pipeline.py``): zero delays with one and two
worker processes next to a no-op Procrastinate job's rate, and the default delays (orders
completed per minute, orders in flight, stage-start lag).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "loadtests" / "reports" / "bench.md"
BENCH_SKU_PREFIX = "BENCH-"
HOT_SKU_PREFIX = "HOT-"
BENCH_STOCK = 1_000_000_000
# Throttling stays on its code path (a Redis INCR per request) but never refuses a bench request.
UNLIMITED_RATE = "100000000/min"

Scenario = Callable[["Bench"], dict[str, Any]]
SCENARIOS: dict[str, Scenario] = {}
ONCE: set[str] = set()  # scenarios that run in the first round only


def scenario(name: str, once: bool = False) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[name] = fn
        if once:
            ONCE.add(name)
        return fn

    return register


def _median(values: list[Any]) -> Any:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return round((ordered[mid - 1] + ordered[mid]) / 2, 2)


# Counts of things that must not happen: the report shows the worst round, not the median.
WORST_OF = {"oversell", "5xx", "other non-2xx", "failed"}


def aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric figure over the rounds (a shared machine is noisy); the maximum
    of the error counts."""
    out: dict[str, Any] = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds if key in r]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric and key in WORST_OF:
            out[key] = max(values)
        else:
            out[key] = _median(values) if numeric else values[-1]
    if len(rounds) > 1:
        out["rounds"] = len(rounds)
        if "orders/s" in rounds[0]:
            out["orders/s per round"] = " / ".join(str(r["orders/s"]) for r in rounds)
    return out


# ----- servers ---------------------------------------------------------------------------------


@contextmanager
def throwaway_stack() -> Iterator[dict[str, str]]:
    """A fresh embedded PostgreSQL and Redis in a temporary directory, removed afterwards."""
    from config.devstack import DevStack

    base = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    stack = DevStack(base=base)
    try:
        yield stack.start()
    finally:
        stack.stop()
        shutil.rmtree(base, ignore_errors=True)


def start_web(
    env: dict[str, str], workers: int, log: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """gunicorn as `make run` starts it (``WEB_COMMAND``) on a free loopback port, in its own
    process group, its output in ``log`` (every refused order logs a warning); returns it and
    its base URL once ``/health/live/`` answers."""
    import http.client

    from config.launcher import WEB_COMMAND, _venv_bin

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
    deadline = time.monotonic() + 30
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


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


# ----- HTTP load generator (processes of client threads, raw sockets) --------------------------


def _random_order(rng: random.Random, products: list[int], n: int) -> dict[str, Any]:
    return {
        "customer_name": f"Bench {n}",
        "customer_email": f"bench{n}@example.com",
        "priority": rng.choice(["low", "normal", "high"]),
        "items": [
            {"product_id": pid, "quantity": rng.randint(1, 3)}
            for pid in rng.sample(products, rng.randint(1, min(3, len(products))))
        ],
    }


def _post(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a fresh connection; sync gunicorn workers close it after the
    response (no keep-alive), so the response is everything up to EOF. A raw socket keeps the
    load generator's own CPU use small: it shares the cores with the server and the database."""
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


class ClientJob(NamedTuple):
    """What one load-generator process does: ``threads`` clients from ``start`` to ``until``,
    measuring from ``warmup_until``. ``kind``: single, hot (single orders that stop once the
    stock is gone) or bulk."""

    base_url: str
    kind: str
    products: list[int]
    seed: int
    threads: int
    start: float
    warmup_until: float
    until: float
    bulk_size: int
    headers: dict[str, str]


def _client_thread(
    host: str, port: int, requests: list[tuple[bytes, int]], job: ClientJob
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted = units = 0
    last_accept = 0.0
    i = 0
    time.sleep(max(0.0, job.start - time.time()))
    while (now := time.time()) < job.until:
        request, request_units = requests[i % len(requests)]
        i += 1
        started = time.perf_counter()
        try:
            status, body = _post(host, port, request)
        except OSError:
            status, body = 0, b""
        elapsed = time.perf_counter() - started
        if now < job.warmup_until:
            continue
        latencies.append(elapsed)
        statuses[status] = statuses.get(status, 0) + 1
        if status == 201:
            accepted += json.loads(body)["created"] if job.kind == "bulk" else 1
            units += request_units
            last_accept = time.time()
        elif job.kind == "hot" and status == 409 and request_units == 1:
            break  # not even one unit left; stock only goes down here, so it is sold out
    return {
        "latencies": latencies,
        "statuses": statuses,
        "accepted": accepted,
        "units": units,
        "last_accept": last_accept,
    }


def _client_loop(job: ClientJob) -> dict[str, Any]:
    """One load-generator process running ``job.threads`` clients; request bodies are built
    first."""
    from concurrent.futures import ThreadPoolExecutor

    u = urlparse(job.base_url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = "/api/v1/orders/bulk_create/" if job.kind == "bulk" else "/api/v1/orders/"
    extra = "".join(f"{k}: {v}\r\n" for k, v in job.headers.items())
    per_thread = []
    for t in range(job.threads):
        rng = random.Random(job.seed * 1000 + t)
        requests = []
        for r in range({"single": 2000, "hot": 200}.get(job.kind, 8)):
            n = (job.seed * 1000 + t) * 100_000 + r * job.bulk_size
            if job.kind == "bulk":
                data: dict[str, Any] = {
                    "orders": [
                        _random_order(rng, job.products, n + i) for i in range(job.bulk_size)
                    ]
                }
                request_units = 0
            else:
                data = _random_order(rng, job.products, n)
                request_units = sum(item["quantity"] for item in data["items"])
            body = json.dumps(data).encode()
            requests.append(
                (
                    f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                    + body,
                    request_units,
                )
            )
        per_thread.append(requests)
    with ThreadPoolExecutor(max_workers=job.threads) as pool:
        parts = list(
            pool.map(lambda reqs: _client_thread(host, port, reqs, job), per_thread),
        )
    return {
        "latencies": [x for p in parts for x in p["latencies"]],
        "statuses": {
            k: sum(p["statuses"].get(k, 0) for p in parts)
            for k in {k for p in parts for k in p["statuses"]}
        },
        "accepted": sum(p["accepted"] for p in parts),
        "units": sum(p["units"] for p in parts),
        "last_accept": max(p["last_accept"] for p in parts),
    }


def _http_run(
    bench: Bench,
    kind: str,
    clients: int,
    products: list[int] | None = None,
    warmup: float | None = None,
) -> dict[str, Any]:
    # Clients are threads spread over a few processes (all blocking I/O, little CPU each).
    processes = min(clients, 4)
    threads = [
        clients // processes + (1 if i < clients % processes else 0) for i in range(processes)
    ]
    start = time.time() + (5.0 if kind == "bulk" else 2.0)  # bodies are built before this
    warmup_until = start + (bench.warmup if warmup is None else warmup)
    until = warmup_until + bench.duration
    jobs = [
        ClientJob(
            bench.base_url,
            kind,
            products or bench.product_ids,
            i + 1,
            n,
            start,
            warmup_until,
            until,
            bench.bulk_size,
            bench.headers,
        )
        for i, n in enumerate(threads)
    ]
    with multiprocessing.get_context("fork").Pool(processes, initializer=_default_sigterm) as pool:
        parts = pool.map(_client_loop, jobs)
    latencies = [x for p in parts for x in p["latencies"]]
    statuses: dict[int, int] = {}
    for p in parts:
        for k, v in p["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    accepted = sum(p["accepted"] for p in parts)
    seconds = bench.duration
    if kind == "hot":  # the window that sold the stock: from the start to the last sale
        last_accept = max(p["last_accept"] for p in parts)
        seconds = round(max(last_accept - warmup_until, 0.001), 3)
    figures = {
        "clients": clients,
        "seconds": seconds,
        "requests": len(latencies),
        "orders/s": round(accepted / seconds, 1),
        "p50 ms": round(_percentile(latencies, 50) * 1000, 1),
        "p95 ms": round(_percentile(latencies, 95) * 1000, 1),
        "p99 ms": round(_percentile(latencies, 99) * 1000, 1),
        "5xx": sum(v for k, v in statuses.items() if k >= 500 or k == 0),
        "other non-2xx": sum(v for k, v in statuses.items() if 0 < k < 200 or 300 <= k < 500),
    }
    if kind == "hot":
        figures["units accepted"] = sum(p["units"] for p in parts)
        figures["409"] = statuses.get(409, 0)
        figures["other non-2xx"] -= figures["409"]
    return figures


def _ratio_to_ceiling(bench: Bench, figures: dict[str, Any]) -> None:
    ceiling = bench.results.get("pgbench_single", {}).get("orders/s")
    if ceiling:
        figures["ratio to SQL ceiling"] = round(figures["orders/s"] / ceiling, 2)


@scenario("pgbench_single")
def pgbench_single(bench: Bench) -> dict[str, Any]:
    """The raw-SQL ceiling: loadtests/order_txn.sql, simple protocol, 16 clients."""
    from config.devstack import DevStack

    db = bench.db
    pids = bench.product_ids
    assert pids == list(range(pids[0], pids[0] + len(pids))), "bench products must be contiguous"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            DevStack.pg_bin("pgbench"),
            "-n",
            "-M",
            "simple",
            "-c",
            str(bench.clients),
            "-j",
            "2",
            "-T",
            str(max(1, round(bench.duration))),
            "-f",
            str(ROOT / "loadtests" / "order_txn.sql"),
            "-D",
            f"pmin={pids[0]}",
            "-D",
            f"pmax={pids[-1]}",
            "-l",
            "--log-prefix",
            f"{tmp}/pgbench",
            "-h",
            db["host"],
            "-p",
            db["port"],
            "-U",
            db["user"],
            db["name"],
        ]
        env = {**os.environ, "PGPASSWORD": db["password"]}
        out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
        latencies = []
        for path in Path(tmp).glob("pgbench*"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    latencies.append(int(parts[2]) / 1_000_000)
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    failed = re.search(r"number of failed transactions: (\d+)", out)
    return {
        "clients": bench.clients,
        "seconds": max(1, round(bench.duration)),
        "requests": len(latencies),
        "orders/s": round(tps, 1),
        "p50 ms": round(_percentile(latencies, 50) * 1000, 1),
        "p95 ms": round(_percentile(latencies, 95) * 1000, 1),
        "p99 ms": round(_percentile(latencies, 99) * 1000, 1),
        "failed": int(failed.group(1)) if failed else 0,
    }


@scenario("http_single")
def http_single(bench: Bench) -> dict[str, Any]:
    """POST /api/v1/orders/, 16 clients, orders of 1-3 lines over 50 products."""
    figures = _http_run(bench, "single", bench.clients)
    _ratio_to_ceiling(bench, figures)
    figures["gunicorn workers"] = bench.web_concurrency
    return figures


HOT_SOLD_SQL = """
SELECT s.on_hand, s.reserved,
       (SELECT COALESCE(SUM(l.quantity), 0) FROM fulfillment_orderline l
        JOIN fulfillment_order o ON o.id = l.order_id
        WHERE l.product_id = s.product_id AND o.status NOT IN ('cancelled', 'failed'))
FROM fulfillment_stocklevel s WHERE s.product_id = %s
"""


@scenario("http_hot_product")
def http_hot_product(bench: Bench) -> dict[str, Any]:
    """One product with ``hot_units`` units, ``hot_clients`` clients each ordering 1-3 units of
    it until it is sold out (a fresh product every round). Oversell: units in accepted orders
    (as the clients saw them, and as the database holds them) beyond the stock."""
    product_id = bench.hot_product_ids.pop(0)
    figures = _http_run(bench, "hot", bench.hot_clients, products=[product_id], warmup=0.0)
    on_hand, reserved, sold = bench.sql(HOT_SOLD_SQL, [product_id])[0]
    figures["units"] = bench.hot_units
    figures["units sold (db)"] = int(sold)
    figures["units left"] = int(on_hand - reserved)
    figures["oversell"] = max(0, max(int(sold), figures["units accepted"]) - bench.hot_units)
    _ratio_to_ceiling(bench, figures)
    return figures


@scenario("http_bulk")
def http_bulk(bench: Bench) -> dict[str, Any]:
    """POST /api/v1/orders/bulk_create/ with bulk_size orders per request."""
    figures = _http_run(bench, "bulk", bench.bulk_clients)
    figures["orders/request"] = bench.bulk_size
    _ratio_to_ceiling(bench, figures)
    return figures


@scenario("statements", once=True)
def statements(bench: Bench) -> dict[str, Any]:
    """SQL statements per single order and per 1,000-order bulk, counted by Django."""
    code = f"""
import json
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
pids = {bench.product_ids[:3]!r}
client = Client(headers={bench.headers!r})
def order(n):
    return {{"customer_name": "Stmt", "customer_email": "stmt@example.com",
            "items": [{{"product_id": p, "quantity": 1}} for p in pids[: 1 + n % 3]]}}
client.post("/api/v1/orders/", json.dumps(order(2)), content_type="application/json")
with CaptureQueriesContext(connection) as single:
    r = client.post("/api/v1/orders/", json.dumps(order(2)), content_type="application/json")
assert r.status_code == 201, (r.status_code, r.content, dict(r.headers))
with CaptureQueriesContext(connection) as bulk:
    r = client.post("/api/v1/orders/bulk_create/",
                    json.dumps({{"orders": [order(i) for i in range(1000)]}}),
                    content_type="application/json")
assert r.status_code == 201, (r.status_code, r.content, dict(r.headers))
print(json.dumps({{"single": [q["sql"][:60] for q in single.captured_queries],
                  "bulk": [q["sql"][:60] for q in bulk.captured_queries]}}))
"""
    out = json.loads(bench.manage("shell", "-c", code).strip().splitlines()[-1])
    return {
        "statements per single order": len(out["single"]),
        "statements per 1,000-order bulk": len(out["bulk"]),
        "single": " | ".join(s.split("\n")[0].strip()[:24] for s in out["single"]),
    }


# ----- report ------------------------------------------------------------------------------------

INTAKE = ("pgbench_single", "http_single", "http_hot_product", "http_bulk")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("**pass**" if ok else "**MISS**")


Row = tuple[str, str, str, str, str, str]


def _vs_ceiling(label: str, figures: dict[str, Any], ceiling: str, minimum: float | None) -> Row:
    """An intake throughput row: orders/s against the raw-SQL ceiling of the same run."""
    ratio = figures.get("ratio to SQL ceiling")
    return (
        label,
        f"{_fmt(figures['orders/s'])} orders/s",
        ceiling,
        _fmt(ratio) if ratio is not None else "",
        f"≥ {minimum}" if minimum is not None else "— (none set)",
        _verdict(None if ratio is None or minimum is None else ratio >= minimum),
    )


def summary_rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    """(figure, value, reference measured in the same run, ratio, target, pass/miss)."""
    rows: list[Row] = []
    pg = results.get("pgbench_single", {})
    ceiling = f"raw SQL (pgbench) {_fmt(pg['orders/s'])} orders/s" if pg else "not run"
    if single := results.get("http_single"):
        label = f"intake: accepted orders/s ({single['clients']} clients, 50 products)"
        rows.append(_vs_ceiling(label, single, ceiling, 0.4))
        rows.append(
            (
                "intake: latency p50 / p99",
                f"{_fmt(single['p50 ms'])} / {_fmt(single['p99 ms'])} ms",
                f"pgbench {_fmt(pg['p50 ms'])} / {_fmt(pg['p99 ms'])} ms" if pg else "",
                _fmt(round(single["p99 ms"] / pg["p99 ms"], 2)) if pg.get("p99 ms") else "",
                "p99 < 60 ms",
                _verdict(single["p99 ms"] < 60),
            )
        )
        rows.append(("intake: 5xx", _fmt(single["5xx"]), "", "", "0", _verdict(single["5xx"] == 0)))
    if hot := results.get("http_hot_product"):
        label = (
            f"hot product: accepted orders/s ({_fmt(hot['units'])} units, {hot['clients']} "
            f"clients, until sold out in {_fmt(hot['seconds'])} s)"
        )
        rows.append(_vs_ceiling(label, hot, ceiling, None))
        rows.append(
            (
                "hot product: oversell (units sold beyond the stock)",
                f"{_fmt(hot['oversell'])} (sold {_fmt(hot['units sold (db)'])}, "
                f"{_fmt(hot['units left'])} left)",
                "",
                "",
                "0",
                _verdict(hot["oversell"] == 0 and hot["5xx"] == 0),
            )
        )
    if bulk := results.get("http_bulk"):
        label = f"bulk: orders/s through bulk_create of {_fmt(bulk['orders/request'])}"
        rows.append(_vs_ceiling(label, bulk, ceiling, 1.5))
    if zero := results.get("pipeline_zero_delays"):
        best, noop = zero["pipeline_best"], zero["noop_best"]
        two, noop_two = zero["pipeline_two_workers"], zero["noop_two_workers"]
        for label, run, ref, ratio in (
            (f"1 worker (concurrency {best['concurrency']})", best, noop, "ratio_one_worker"),
            (
                f"2 workers (concurrency {two['concurrency']} each)",
                two,
                noop_two,
                "ratio_two_workers",
            ),
        ):
            rows.append(
                (
                    f"pipeline, zero delays: orders/s pending → delivered, {label}",
                    f"{_fmt(run['orders_per_s'])} orders/s",
                    f"no-op job {_fmt(ref['jobs_per_s'])} jobs/s "
                    f"({ref['processes']} × concurrency {ref['concurrency']})",
                    _fmt(zero[ratio]),
                    "≥ 0.2",
                    _verdict(zero[ratio] >= 0.2),
                )
            )
    if delays := results.get("pipeline_default_delays"):
        runs = delays["runs"]
        run = delays["best"] or min(runs, key=lambda r: r["arrival_per_s"])
        within = delays["best"] is not None
        at = f"{_fmt(run['arrived_per_s'])} orders/s arriving, 1 worker"
        rows.append(
            (
                f"pipeline, default delays: orders completed per minute ({at})",
                f"{_fmt(run['completed_per_min'])}/min",
                "a worker sleeping through the delays: < 30/min (issue 5)",
                "",
                "—",
                _verdict(None),
            )
        )
        rows.append(
            (
                f"pipeline, default delays: orders in flight with stage p99 lag ≤ 1 s ({at})",
                f"{_fmt(run['in_flight_avg'])} (max {_fmt(run['in_flight_max'])})",
                "",
                "",
                "≥ 1,000",
                _verdict(within and run["in_flight_avg"] >= 1000),
            )
        )
        rows.append(
            (
                f"pipeline, default delays: stage start lag behind schedule ({at})",
                f"p50 {_fmt(run['lag_p50_s'])} s / p99 {_fmt(run['lag_p99_s'])} s",
                "",
                "",
                "p99 ≤ 1 s",
                _verdict(run["lag_p99_s"] is not None and run["lag_p99_s"] <= 1.0),
            )
        )
    return rows


def _table(header: list[str], rows: list[Any]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """Every intake figure, one row per scenario (medians over the rounds)."""
    rows = {k: v for k, v in results.items() if k in INTAKE}
    columns: list[str] = []
    for figures in rows.values():
        for key in figures:
            if key not in columns:
                columns.append(key)
    lines = [
        "| scenario | " + " | ".join(columns) + " |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for name, figures in rows.items():
        lines.append(f"| {name} | " + " | ".join(str(figures.get(c, "")) for c in columns) + " |")
    if "statements" in results:
        s = results["statements"]
        lines.append("")
        lines.append(
            f"SQL statements (as Django counts them, BEGIN and COMMIT included): single order "
            f"{s['statements per single order']} ({s['single']}); 1,000-order bulk "
            f"{s['statements per 1,000-order bulk']}."
        )
    return "\n".join(lines)


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = " (" + line.split(":", 1)[1].strip() + ")"
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores{cpu}, {platform.system()} {platform.release()}"


def report(
    results: dict[str, dict[str, Any]],
    *,
    command: str,
    pg_version: str,
    started: float,
    load_before: tuple[float, ...],
) -> str:
    from loadtests.bench_pipeline import markdown as pipeline_markdown

    load_after = os.getloadavg()
    header = [
        f"Benchmark run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
        f"{round(time.time() - started)} s: {command}",
        "",
        f"Machine: {machine()}; PostgreSQL {pg_version} (a fresh embedded cluster started for "
        "this run: fsync and synchronous_commit off, as in the dev stack); load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (the load generator, gunicorn, "
        "the worker and PostgreSQL share these cores).",
        "",
    ]
    body = [
        _table(
            ["figure", "value", "reference (same run)", "ratio", "target", "result"],
            summary_rows(results),
        ),
        "",
        "Ratios: value / reference; for the intake rows the median of the per-round ratios.",
    ]
    if any(k in results for k in INTAKE):
        body += ["", "Order intake, every figure (medians over the rounds):", ""]
        body.append(markdown_table(results))
    zero = results.get("pipeline_zero_delays")
    delays = results.get("pipeline_default_delays")
    if zero or delays:
        body += ["", "Pipeline, every run:", "", pipeline_markdown(zero, delays)]
        if zero:
            per_c = ", ".join(
                f"concurrency {p['concurrency']}: {p['orders_per_s']} orders/s vs no-op "
                f"{n['jobs_per_s']} jobs/s"
                for p, n in zip(zero["pipeline_one_worker"], zero["noop_one_worker"], strict=True)
            )
            body.append(f"\nOne worker by concurrency: {per_c}.")
    return "\n".join(header + body) + "\n"


# ----- driver ------------------------------------------------------------------------------------

DEFAULT_SCENARIOS = (
    "statements,pgbench_single,http_single,http_hot_product,http_bulk,"
    "pipeline_zero_delays,pipeline_default_delays"
)
# Sizes: a full run stays under ten minutes on 2 cores, --quick under two.
FULL = {
    "duration": 12.0,
    "warmup": 3.0,
    "rounds": 3,
    "pipeline_orders": 1000,
    "noop_jobs": 3000,
    "worker_concurrency": [4, 8, 16],
    "pipeline_timeout": 60.0,
    "delay_rates": [25.0, 50.0, 100.0],
    "delay_seconds": 40.0,
    "delay_warmup": 15.0,
}
QUICK = {
    "duration": 3.0,
    "warmup": 1.0,
    "rounds": 1,
    "pipeline_orders": 200,
    "noop_jobs": 600,
    "worker_concurrency": [8],
    "pipeline_timeout": 30.0,
    "delay_rates": [25.0],
    "delay_seconds": 16.0,
    "delay_warmup": 8.0,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="every scenario briefly (smoke)")
    size = parser.add_argument_group("sizes (defaults: full run; --quick makes them small)")
    size.add_argument("--duration", type=float, help="measured seconds per intake scenario")
    size.add_argument("--warmup", type=float, help="unmeasured seconds first")
    size.add_argument(
        "--rounds", type=int, help="intake scenarios repeat, interleaved; medians reported"
    )
    size.add_argument("--pipeline-orders", type=int, help="orders per zero-delay pipeline run")
    size.add_argument("--noop-jobs", type=int, help="jobs per no-op reference run")
    size.add_argument("--worker-concurrency", type=int, nargs="+", help="one worker's tries")
    size.add_argument("--pipeline-timeout", type=float, help="longest zero-delay run (s)")
    size.add_argument("--delay-rates", type=float, nargs="+", help="default-delay arrival rates")
    size.add_argument("--delay-seconds", type=float, help="seconds per default-delay run")
    size.add_argument("--delay-warmup", type=float, help="seconds before in-flight sampling")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--hot-clients", type=int, default=32)
    parser.add_argument("--hot-units", type=int, default=1000)
    parser.add_argument("--bulk-clients", type=int, default=2)
    parser.add_argument("--bulk-size", type=int, default=1000)
    parser.add_argument(
        "--web-concurrency",
        type=int,
        default=int(os.environ.get("WEB_CONCURRENCY", "8")),
        help="gunicorn workers (default 8: the best measured for 16 clients on 2 cores)",
    )
    parser.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help="comma separated, run in this order; known: " + ", ".join(SCENARIOS),
    )
    parser.add_argument("--report", default=str(REPORT))
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    unknown = [n for n in args.scenarios.split(",") if n.strip() and n.strip() not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    return args


def _default_sigterm() -> None:
    # Load-generator processes: the pool stops them with SIGTERM; only the driver cleans up.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    import loadtests.bench_pipeline  # noqa: F401  (registers the pipeline scenarios)

    args = parse_args(argv)
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    started, load_before = time.time(), os.getloadavg()
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    print("[bench] starting a throwaway PostgreSQL and Redis", flush=True)
    with throwaway_stack() as urls:
        # Everything below, in this process (pipeline scenarios) and its children, uses them.
        os.environ.update(urls)
        os.environ.update(
            {
                "DEBUG": "0",
                "SECRET_KEY": secrets.token_urlsafe(50)[:50],
                "THROTTLE_RATE_KEY": UNLIMITED_RATE,
                "THROTTLE_RATE_ANON": UNLIMITED_RATE,
                # plain HTTP on loopback, as behind a TLS-terminating proxy
                "SECURE_SSL_REDIRECT": "0",
            }
        )
        bench = Bench(
            env=dict(os.environ),
            duration=args.duration,
            warmup=args.warmup,
            clients=args.clients,
            bulk_clients=args.bulk_clients,
            bulk_size=args.bulk_size,
            web_concurrency=args.web_concurrency,
            hot_clients=args.hot_clients,
            hot_units=args.hot_units,
            pipeline_orders=args.pipeline_orders,
            noop_jobs=args.noop_jobs,
            worker_concurrencies=tuple(args.worker_concurrency),
            pipeline_timeout=args.pipeline_timeout,
            delay_rates=tuple(args.delay_rates),
            delay_seconds=args.delay_seconds,
            delay_warmup=args.delay_warmup,
        )
        print(f"[bench] preparing the database ({urls['DATABASE_URL']})", flush=True)
        bench.prepare_database(hot_products=args.rounds)
        pg_version = bench.sql("SHOW server_version")[0][0]
        per_round: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
        try:
            if any(n.startswith("http") for n in names):
                log = Path(args.report).with_name("bench-gunicorn.log")
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_bytes(b"")
                bench.start_gunicorn(log)
                print(
                    f"[bench] gunicorn on {bench.base_url}, {bench.web_concurrency} workers "
                    f"(log: {log})",
                    flush=True,
                )
            for r in range(args.rounds):
                for name in names:
                    if r > 0 and name in ONCE:
                        continue
                    print(f"[bench] round {r + 1}: {name} ...", flush=True)
                    bench.results[name] = SCENARIOS[name](bench)
                    per_round[name].append(bench.results[name])
                    print(f"[bench] round {r + 1}: {name}: {bench.results[name]}", flush=True)
        finally:
            bench.stop_gunicorn()
    command = "`python -m loadtests.bench" + "".join(" " + shlex.quote(a) for a in argv) + "`"
    if os.environ.get("BENCH_COMMAND"):  # set by `make bench`
        command = f"`{os.environ['BENCH_COMMAND']}` (runs {command})"
    results = {n: aggregate(v) for n, v in per_round.items() if v}
    text = report(
        results, command=command, pg_version=pg_version, started=started, load_before=load_before
    )
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(text)
    Path(args.report).with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(text, end="")
    print(f"\n[bench] report written to {args.report}", flush=True)
    return 0


if __name__ == "__main__":
    # Run the package module, so scenario modules that register with ``loadtests.bench`` fill
    # the same registry as the one main() reads.
    from loadtests import bench as _bench

    raise SystemExit(_bench.main())
