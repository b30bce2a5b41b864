"""Benchmark driver (`make bench`, or `python -m loadtests.bench --help`).

A benchmark is a set of scenario functions; each takes the shared :class:`Bench` (database,
running gunicorn, bench products) and returns a dict of figures. ``main`` runs the selected
scenarios in order, prints one Markdown table and writes it to ``loadtests/reports/bench.md``.
Other modules add scenarios with the ``@scenario("name")`` decorator.

Order intake scenarios (issue 4):

- ``pgbench_single``: the single-order transaction as raw SQL (``loadtests/order_txn.sql``)
  driven by pgbench (simple protocol, 16 clients): the database ceiling.
- ``http_single``: POST /api/v1/orders/ through gunicorn started as `make run` does (sync
  workers, persistent connections, DEBUG=0), 16 client processes with keep-alive connections,
  orders of 1-3 lines over 50 products.
- ``http_bulk``: POST /api/v1/orders/bulk_create/ with 1,000 orders per request.
- ``statements``: SQL statements per single order and per 1,000-order bulk (Django's query
  capture, in process).

Everything runs against the dev stack (`make stack-start`), or DATABASE_URL / REDIS_URL.
Machine-shared numbers are noisy: compare the ratios.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "loadtests" / "reports" / "bench.md"
BENCH_SKU_PREFIX = "BENCH-"
BENCH_STOCK = 1_000_000_000

Scenario = Callable[["Bench"], dict[str, Any]]
SCENARIOS: dict[str, Scenario] = {}
ONCE: set[str] = set()  # scenarios that give the same answer every round


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


def aggregate(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric figure over the rounds (a shared machine is noisy)."""
    out: dict[str, Any] = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds if key in r]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        out[key] = _median(values) if numeric else values[-1]
    if len(rounds) > 1:
        out["rounds"] = len(rounds)
        if "orders/s" in rounds[0]:
            out["orders/s per round"] = " / ".join(str(r["orders/s"]) for r in rounds)
    return out


@dataclass
class Bench:
    env: dict[str, str]
    duration: float
    warmup: float
    clients: int
    bulk_clients: int
    bulk_size: int
    web_concurrency: int
    product_ids: list[int] = field(default_factory=list)
    base_url: str = ""
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    _gunicorn: subprocess.Popen[bytes] | None = None

    # ----- setup -------------------------------------------------------------------------------

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return out.stdout

    def prepare_database(self) -> None:
        self.manage("migrate", "--noinput", "-v", "0")
        code = f"""
from decimal import Decimal
from fulfillment.models import Product, StockLevel
from fulfillment.services.inventory import stock_receive
from fulfillment.services.products import product_create
have = dict(Product.objects.filter(sku__startswith={BENCH_SKU_PREFIX!r}).values_list("sku", "pk"))
for i in range(50):
    sku = f"{BENCH_SKU_PREFIX}{{i:03d}}"
    if sku not in have:
        product_create(sku=sku, name=f"Bench product {{i}}", price=Decimal("9.99"),
                       initial_stock={BENCH_STOCK}, low_stock_threshold=0, is_active=True,
                       actor="bench")
for s in StockLevel.objects.filter(product__sku__startswith={BENCH_SKU_PREFIX!r}):
    if s.on_hand - s.reserved < {BENCH_STOCK} // 2:
        stock_receive(product_id=s.product_id, quantity={BENCH_STOCK}, actor="bench")
print(",".join(str(pk) for pk in Product.objects.filter(
    sku__startswith={BENCH_SKU_PREFIX!r}).order_by("pk").values_list("pk", flat=True)))
"""
        last = self.manage("shell", "-c", code).strip().splitlines()[-1]
        self.product_ids = [int(x) for x in last.split(",")]

    def start_gunicorn(self) -> None:
        from config.launcher import WEB_COMMAND, _venv_bin

        port = _free_port()
        env = {
            **self.env,
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50)[:50],
            "BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": str(self.web_concurrency),
            "LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
        }
        self._gunicorn = subprocess.Popen(
            _venv_bin(WEB_COMMAND), cwd=ROOT, env=env, start_new_session=True
        )
        self.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health/live/")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not come up")

    def stop_gunicorn(self) -> None:
        if self._gunicorn is not None and self._gunicorn.poll() is None:
            os.killpg(self._gunicorn.pid, signal.SIGTERM)
            try:
                self._gunicorn.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self._gunicorn.pid, signal.SIGKILL)
                self._gunicorn.wait()

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


# ----- HTTP load generator (processes, keep-alive http.client connections) -------------------


def _random_order(rng: random.Random, products: list[int], n: int) -> dict[str, Any]:
    return {
        "customer_name": f"Bench {n}",
        "customer_email": f"bench{n}@example.com",
        "priority": rng.choice(["low", "normal", "high"]),
        "items": [
            {"product_id": pid, "quantity": rng.randint(1, 3)}
            for pid in rng.sample(products, rng.randint(1, 3))
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


def _client_thread(
    host: str, port: int, requests: list[bytes], warmup_until: float, until: float, kind: str
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted = 0
    i = 0
    while (now := time.time()) < until:
        request = requests[i % len(requests)]
        i += 1
        started = time.perf_counter()
        try:
            status, body = _post(host, port, request)
        except OSError:
            status, body = 0, b""
        elapsed = time.perf_counter() - started
        if now < warmup_until:
            continue
        latencies.append(elapsed)
        statuses[status] = statuses.get(status, 0) + 1
        if status == 201:
            accepted += 1 if kind == "single" else json.loads(body)["created"]
    return {"latencies": latencies, "statuses": statuses, "accepted": accepted}


def _client_loop(
    args: tuple[str, str, list[int], int, int, float, float, int],
) -> dict[str, Any]:
    """One load-generator process running ``threads`` clients; request bodies are built first."""
    from concurrent.futures import ThreadPoolExecutor

    base_url, kind, products, seed, threads, warmup_until, until, bulk_size = args
    u = urlparse(base_url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = "/api/v1/orders/" if kind == "single" else "/api/v1/orders/bulk_create/"
    per_thread = []
    for t in range(threads):
        rng = random.Random(seed * 1000 + t)
        requests = []
        for r in range(2000 if kind == "single" else 8):
            n = (seed * 1000 + t) * 100_000 + r * bulk_size
            if kind == "single":
                data = _random_order(rng, products, n)
            else:
                data = {"orders": [_random_order(rng, products, n + i) for i in range(bulk_size)]}
            body = json.dumps(data).encode()
            requests.append(
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
        per_thread.append(requests)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(
            pool.map(
                lambda reqs: _client_thread(host, port, reqs, warmup_until, until, kind),
                per_thread,
            )
        )
    return {
        "latencies": [x for p in parts for x in p["latencies"]],
        "statuses": {
            k: sum(p["statuses"].get(k, 0) for p in parts)
            for k in {k for p in parts for k in p["statuses"]}
        },
        "accepted": sum(p["accepted"] for p in parts),
    }


def _http_run(bench: Bench, kind: str, clients: int) -> dict[str, Any]:
    # Clients are threads spread over a few processes (all blocking I/O, little CPU each).
    processes = min(clients, 4)
    threads = [
        clients // processes + (1 if i < clients % processes else 0) for i in range(processes)
    ]
    start = time.time() + (2.0 if kind == "single" else 5.0)  # bodies are built before this
    warmup_until = start + bench.warmup
    until = warmup_until + bench.duration
    jobs = [
        (bench.base_url, kind, bench.product_ids, i + 1, n, warmup_until, until, bench.bulk_size)
        for i, n in enumerate(threads)
    ]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.map(_client_loop, jobs)
    latencies = [x for p in parts for x in p["latencies"]]
    statuses: dict[int, int] = {}
    for p in parts:
        for k, v in p["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    accepted = sum(p["accepted"] for p in parts)
    return {
        "clients": clients,
        "seconds": bench.duration,
        "requests": len(latencies),
        "orders/s": round(accepted / bench.duration, 1),
        "p50 ms": round(_percentile(latencies, 50) * 1000, 1),
        "p95 ms": round(_percentile(latencies, 95) * 1000, 1),
        "p99 ms": round(_percentile(latencies, 99) * 1000, 1),
        "5xx": sum(v for k, v in statuses.items() if k >= 500),
        "other non-2xx": sum(v for k, v in statuses.items() if k < 200 or 300 <= k < 500),
    }


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
            str(int(bench.duration)),
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
        "seconds": bench.duration,
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
    ceiling = bench.results.get("pgbench_single", {}).get("orders/s")
    if ceiling:
        figures["ratio to SQL ceiling"] = round(figures["orders/s"] / ceiling, 2)
    figures["gunicorn workers"] = bench.web_concurrency
    return figures


@scenario("http_bulk")
def http_bulk(bench: Bench) -> dict[str, Any]:
    """POST /api/v1/orders/bulk_create/ with bulk_size orders per request."""
    figures = _http_run(bench, "bulk", bench.bulk_clients)
    figures["orders/request"] = bench.bulk_size
    ceiling = bench.results.get("pgbench_single", {}).get("orders/s")
    if ceiling:
        figures["ratio to SQL ceiling"] = round(figures["orders/s"] / ceiling, 2)
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
client = Client()
def order(n):
    return {{"customer_name": "Stmt", "customer_email": "stmt@example.com",
            "items": [{{"product_id": p, "quantity": 1}} for p in pids[: 1 + n % 3]]}}
client.post("/api/v1/orders/", json.dumps(order(2)), content_type="application/json")
with CaptureQueriesContext(connection) as single:
    r = client.post("/api/v1/orders/", json.dumps(order(2)), content_type="application/json")
assert r.status_code == 201, r.content
with CaptureQueriesContext(connection) as bulk:
    r = client.post("/api/v1/orders/bulk_create/",
                    json.dumps({{"orders": [order(i) for i in range(1000)]}}),
                    content_type="application/json")
assert r.status_code == 201, r.content
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


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    rows = {k: v for k, v in results.items() if k != "statements"}
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=20, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds first")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--bulk-clients", type=int, default=2)
    parser.add_argument("--bulk-size", type=int, default=1000)
    parser.add_argument(
        "--web-concurrency", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "4"))
    )
    parser.add_argument(
        "--scenarios",
        default="statements,pgbench_single,http_single,http_bulk",
        help="comma separated, run in this order; known: " + ", ".join(SCENARIOS),
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="run the scenario list this many times, interleaved; the table shows medians",
    )
    parser.add_argument("--report", default=str(REPORT))
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    from config.devstack import external_or_embedded_env

    urls, _stack = external_or_embedded_env()
    env = {**os.environ, **urls, "DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50)[:50]}
    bench = Bench(
        env=env,
        duration=args.duration,
        warmup=args.warmup,
        clients=args.clients,
        bulk_clients=args.bulk_clients,
        bulk_size=args.bulk_size,
        web_concurrency=args.web_concurrency,
    )
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    print(f"[bench] preparing the database ({urls['DATABASE_URL']})", flush=True)
    bench.prepare_database()
    needs_web = any(n.startswith("http") for n in names)
    try:
        if needs_web:
            bench.start_gunicorn()
            print(
                f"[bench] gunicorn on {bench.base_url}, {bench.web_concurrency} workers", flush=True
            )
        per_round: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
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
    table = markdown_table({n: aggregate(v) for n, v in per_round.items() if v})
    header = (
        f"Benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, `python -m loadtests.bench "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + "`\n\n"
    )
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(header + table + "\n")
    print()
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
