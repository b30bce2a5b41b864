"""Order intake scenarios of the benchmark driver (``loadtests/bench.py``, `make bench`), each a
function of the shared ``Bench`` that returns its figures.

Against gunicorn started as `make run` starts it (``config.devstack.launcher.WEB_COMMAND``: sync workers,
persistent connections, ``DEBUG=0``):

- ``statements``: SQL statements per single order and per 1,000-order bulk (Django's capture).
- ``pgbench_single``: the single-order transaction as raw SQL (the API's own statement,
  rendered by ``loadtests/pgbench_script.py``) driven by pgbench (simple protocol, 16 clients): the database ceiling, the intake reference.
- ``http_single``: POST /api/v1/orders/, 16 clients, orders of 1-3 lines over 50 products.
- ``http_hot_product``: one product with 1,000 units, 32 clients ordering 1-3 units of it until
  it is sold out; accepted orders/s and oversell (units sold beyond the 1,000; must be 0).
- ``http_bulk``: POST /api/v1/orders/bulk_create/ with 1,000 orders per request.

The load generator is a few processes of client threads with raw sockets (little CPU of its
own: it shares the cores with the server and the database).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

from loadtests.benchlib import ROOT, Bench, percentile

# ----- HTTP load generator (processes of client threads, raw sockets) --------------------------


def _default_sigterm() -> None:
    # Load-generator processes: the pool stops them with SIGTERM; only the driver cleans up.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
        "p50 ms": round(percentile(latencies, 50) * 1000, 1),
        "p95 ms": round(percentile(latencies, 95) * 1000, 1),
        "p99 ms": round(percentile(latencies, 99) * 1000, 1),
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


def pgbench_single(bench: Bench) -> dict[str, Any]:
    """The raw-SQL ceiling: the API's order statement through pgbench, simple protocol, 16 clients."""
    from config.devstack.servers import DevStack

    db = bench.db
    pids = bench.product_ids
    assert pids == list(range(pids[0], pids[0] + len(pids))), "bench products must be contiguous"
    with tempfile.TemporaryDirectory() as tmp:
        script = f"{tmp}/order_txn.sql"
        subprocess.run(
            [sys.executable, "-m", "loadtests.pgbench_script", script], cwd=ROOT, check=True
        )
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
            script,
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
        "p50 ms": round(percentile(latencies, 50) * 1000, 1),
        "p95 ms": round(percentile(latencies, 95) * 1000, 1),
        "p99 ms": round(percentile(latencies, 99) * 1000, 1),
        "failed": int(failed.group(1)) if failed else 0,
    }


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


def http_bulk(bench: Bench) -> dict[str, Any]:
    """POST /api/v1/orders/bulk_create/ with bulk_size orders per request."""
    figures = _http_run(bench, "bulk", bench.bulk_clients)
    figures["orders/request"] = bench.bulk_size
    _ratio_to_ceiling(bench, figures)
    return figures


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
