"""Volume benchmark: `make bench-volume` (10 M orders, 1 M waiting jobs) or
`make bench-volume ARGS=--quick` (1 M orders, 500 k waiting jobs).

Two embedded PostgreSQL/Redis stacks in the same run:

- the VOLUME stack, under ``.devstack/volume-<orders>/``, kept between runs: the data set is built
  once (``manage.py seed_volume``) and reused; ``--rebuild`` starts it again from scratch;
- the REFERENCE stack, a throwaway one with a small data set (``--reference-orders``, every
  order in flight with a due stage job), the "empty database" every figure is compared with.

On each stack it measures, with gunicorn started as `make run` does and every cache lifetime set
to 0 (uncached reads): p50/p95 of every read in :data:`READS` (sequential requests after a
warm-up), order intake over HTTP, the zero-delay pipeline (stage jobs finished per second by one
worker, the due backlog included), the stale check, the reconciliation, the clean-up; then on the
volume stack alone the plan of Procrastinate's job fetch (``EXPLAIN ANALYZE``) and bytes per
order by table and index. Report: ``loadtests/reports/volume.md`` (figures also in
``volume.json``), and its summary replaces the ``## Volume`` section of ``docs/performance.md``.

A new endpoint is measured by adding one line to :data:`READS`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loadtests.bench_report import machine
from loadtests.benchlib import ROOT, UNLIMITED_RATE, percentile, stop_web

REPORT = ROOT / "loadtests" / "reports" / "volume.md"
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
SECTION = "## Volume"

# Every read measured: (name, path). Placeholders come from :func:`sample`.
READS: list[tuple[str, str]] = [
    ("orders list", "/api/v1/orders/?limit=50"),
    ("orders ?status=delivered", "/api/v1/orders/?status=delivered&limit=50"),
    ("orders ?status=pending", "/api/v1/orders/?status=pending&limit=50"),
    ("orders ?status=failed", "/api/v1/orders/?status=failed&limit=50"),
    ("orders ?priority=high", "/api/v1/orders/?priority=high&limit=50"),
    ("orders ?customer_email", "/api/v1/orders/?customer_email={email}&limit=50"),
    ("orders ?created range", "/api/v1/orders/?created_after={after}&created_before={before}"),
    ("orders ?stale_only", "/api/v1/orders/?stale_only=true&limit=50"),
    ("orders deep keyset page", "/api/v1/orders/?limit=50&cursor={cursor}"),
    ("orders deep page ?status", "/api/v1/orders/?status=delivered&limit=50&cursor={cursor}"),
    ("order detail", "/api/v1/orders/{order_id}/"),
    ("order history", "/api/v1/orders/{order_id}/history/"),
    ("order tracking", "/api/v1/orders/{order_id}/tracking/"),
    ("orders statistics", "/api/v1/orders/statistics/"),
    ("products list", "/api/v1/products/"),
    ("product detail", "/api/v1/products/{product_id}/"),
    ("product stock history", "/api/v1/products/{product_id}/stock_history/"),
    ("products low stock", "/api/v1/products/low_stock/"),
    ("inventory list", "/api/v1/inventory/"),
    ("inventory detail", "/api/v1/inventory/{product_id}/"),
    ("inventory ledger page", "/api/v1/inventory/{product_id}/transactions/"),
    ("inventory summary", "/api/v1/inventory/summary/"),
    ("pipeline reports", "/api/v1/pipeline/reports/"),
    ("/health/", "/health/"),
    ("/health/ready/", "/health/ready/"),
]
TARGET_P95_MS = 50.0

SIZES = {
    "full": {"orders": 10_000_000, "jobs": 1_000_000, "requests": 60, "seconds": 15.0},
    "quick": {"orders": 1_000_000, "jobs": 500_000, "requests": 30, "seconds": 10.0},
}

# Uncached: every cache lifetime 0, so each request does its real work.
UNCACHED = {
    "CACHE_TTL_SECONDS": "0",
    "ORDER_STATISTICS_TTL_SECONDS": "0",
    "HEALTH_CACHE_SECONDS": "0",
}
ZERO_DELAYS = {
    "PIPELINE_DELAY_PROCESSING": "0",
    "PIPELINE_DELAY_SHIPPING": "0",
    "PIPELINE_DELAY_DELIVERY": "0",
    "PIPELINE_FAILURE_RATE_PROCESSING": "0",
    "PIPELINE_FAILURE_RATE_SHIPPING": "0",
}


def log(msg: str) -> None:
    print(f"[bench-volume] {msg}", file=sys.stderr, flush=True)


# ----- stacks ----------------------------------------------------------------------------------


class Stack:
    """One embedded PostgreSQL/Redis with the project migrated, and helpers on it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {
            **os.environ,
            **env,
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50)[:50],
            # plain HTTP on loopback, as behind a TLS-terminating proxy
            "SECURE_SSL_REDIRECT": "0",
            "LOG_LEVEL": "WARNING",
            "THROTTLE_RATE_KEY": UNLIMITED_RATE,
            "THROTTLE_RATE_ANON": UNLIMITED_RATE,
            # Schedules stay out of the measurements.
            "STALE_CHECK_CRON": "0 0 1 1 *",
            "STALLED_JOBS_CRON": "0 0 1 1 *",
            "RECONCILIATION_CRON": "0 0 1 1 *",
            "STATISTICS_REFRESH_CRON": "0 0 1 1 *",
            **UNCACHED,
        }

    def manage(self, *args: str, stream: bool = False) -> str:
        cmd = [sys.executable, "manage.py", *args]
        if stream:  # progress bar straight to the terminal
            subprocess.run(cmd, cwd=ROOT, env=self.env, check=True)
            return ""
        out = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{out.stderr[-3000:]}")
        return out.stdout

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.env["DATABASE_URL"], autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def api_key(self) -> str:
        code = (
            "from fulfillment.services.api_keys import api_key_create\n"
            "import secrets\n"
            "print(api_key_create(name='bench-volume-' + secrets.token_hex(4), "
            "role='operator').raw_key)"
        )
        return self.manage("shell", "-c", code).strip().splitlines()[-1]


@contextmanager
def stack_at(base: Path) -> Iterator[Stack]:
    from config.devstack.servers import DevStack

    base.mkdir(parents=True, exist_ok=True)
    dev = DevStack(base=base)
    try:
        yield Stack(dev.start())
    finally:
        dev.stop()


def ensure_dataset(stack: Stack, base: Path, orders: int, jobs: int, extra: list[str]) -> dict:
    """Build the data set once (a marker file records it); later runs reuse it."""
    marker = base / "dataset.json"
    if marker.exists():
        data = json.loads(marker.read_text())
        log(
            f"reusing the data set in {base} ({data['orders']:,} orders, built in "
            f"{data['seconds']:,.0f}s)"
        )
        return dict(data)
    stack.manage("migrate", "--noinput", "-v", "0")
    log(f"building {orders:,} orders with {jobs:,} waiting jobs in {base}")
    started = time.monotonic()
    stack.manage("seed_volume", "--orders", str(orders), "--jobs", str(jobs), *extra, stream=True)
    data = {"orders": orders, "jobs": jobs, "seconds": round(time.monotonic() - started, 1)}
    stack.sql("VACUUM ANALYZE")
    marker.write_text(json.dumps(data))
    return data


def start_web(env: dict[str, str], workers: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """gunicorn as `make run` starts it, on a free port; waits up to two minutes for
    ``/health/live/`` (a loaded machine boots five workers slowly)."""
    import socket

    from config.devstack.launcher import WEB_COMMAND, _venv_bin

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            _venv_bin(WEB_COMMAND),
            cwd=ROOT,
            env={**env, "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers)},
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if _get(base_url + "/health/live/", {})[0] == 200:
                return proc, base_url
        except OSError:
            time.sleep(0.5)
    stop_web(proc)
    raise RuntimeError(f"gunicorn did not come up (log: {log})")


# ----- measurements ----------------------------------------------------------------------------


def sample(stack: Stack) -> dict[str, str]:
    """Values for the placeholders of READS: a finished order in the middle of the data set, its
    customer, a product, a cursor deep in the list, a one-day created range."""
    (mid,) = stack.sql("SELECT (min(id) + max(id)) / 2 FROM fulfillment_order")[0]
    order_id, email, created_at, pk = stack.sql(
        "SELECT order_id, customer_email, created_at, id FROM fulfillment_order "
        "WHERE id >= %s ORDER BY id LIMIT 1",
        [mid],
    )[0]
    (product_id,) = stack.sql(
        "SELECT product_id FROM fulfillment_orderline WHERE order_id = %s LIMIT 1", [pk]
    )[0]
    raw = f"{created_at.isoformat()}|{pk}".encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    day = created_at.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "order_id": str(order_id),
        "email": email,
        "product_id": str(product_id),
        "cursor": cursor,
        "after": day.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "before": (day.replace(hour=23, minute=59)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _get(url: str, headers: dict[str, str]) -> tuple[int, float]:
    req = urllib.request.Request(url, headers=headers)
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    return status, time.perf_counter() - started


def measure_reads(
    base_url: str, key: str, values: dict[str, str], n: int, warmup: int = 3
) -> dict[str, dict]:
    headers = {"Authorization": f"Bearer {key}"}
    out: dict[str, dict] = {}
    for name, path in READS:
        url = base_url + path.format(**values)
        for _ in range(warmup):
            _get(url, headers)
        statuses, times = [], []
        for _ in range(n):
            status, seconds = _get(url, headers)
            statuses.append(status)
            times.append(seconds)
        out[name] = {
            "p50 ms": round(percentile(times, 50) * 1000, 1),
            "p95 ms": round(percentile(times, 95) * 1000, 1),
            "status": sorted(set(statuses)),
        }
    return out


def measure_intake(stack: Stack, base_url: str, key: str, seconds: float) -> dict[str, Any]:
    """Single-order POSTs from 8 client threads for ``seconds``: accepted orders per second."""
    import threading

    products = [
        r[0]
        for r in stack.sql(
            "SELECT product_id FROM fulfillment_stocklevel WHERE on_hand - reserved > 1000 "
            "ORDER BY on_hand - reserved DESC LIMIT 50"
        )
    ]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    accepted = [0]
    errors = [0]
    lock = threading.Lock()
    until = time.monotonic() + seconds

    def client(i: int) -> None:
        n = 0
        while time.monotonic() < until:
            n += 1
            body = json.dumps(
                {
                    "customer_name": "Bench",
                    "customer_email": f"bench{i}@example.com",
                    "items": [{"product_id": products[(i * 7 + n) % len(products)], "quantity": 1}],
                }
            ).encode()
            req = urllib.request.Request(
                base_url + "/api/v1/orders/", data=body, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    resp.read()
                    ok = resp.status == 201
            except urllib.error.HTTPError as exc:
                exc.read()
                ok = False
            with lock:
                if ok:
                    accepted[0] += 1
                else:
                    errors[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    return {"orders/s": round(accepted[0] / elapsed, 1), "errors": errors[0]}


def measure_pipeline(stack: Stack, seconds: float) -> dict[str, Any]:
    """One worker (the system's worker command, concurrency 8, zero delays) for ``seconds``:
    stage jobs finished per second, counted from Procrastinate's events."""
    from config.devstack.launcher import WORKER_COMMAND

    env = {**stack.env, **ZERO_DELAYS}
    cmd = [sys.executable, *WORKER_COMMAND[1:], "--concurrency=8"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not stack.sql("SELECT 1 FROM procrastinate_workers LIMIT 1"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("worker did not start")
            time.sleep(0.1)
        time.sleep(2.0)  # warm-up
        (t0,) = stack.sql("SELECT clock_timestamp()")[0]
        time.sleep(seconds)
        (t1,) = stack.sql("SELECT clock_timestamp()")[0]
        (done,) = stack.sql(
            "SELECT count(*) FROM procrastinate_events WHERE type = 'succeeded' "
            "AND at >= %s AND at < %s",
            [t0, t1],
        )[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return {"jobs/s": round(done / (t1 - t0).total_seconds(), 1)}


def timed_shell(stack: Stack, code: str) -> float:
    """Seconds one snippet takes in ``manage.py shell`` (Django set up before the clock)."""
    wrapped = "import time\n_t = time.perf_counter()\n" + code + "\nprint(time.perf_counter() - _t)"
    return round(float(stack.manage("shell", "-c", wrapped).strip().splitlines()[-1]), 3)


def measure_maintenance(stack: Stack) -> dict[str, Any]:
    return {
        "stale check s": timed_shell(
            stack,
            "from fulfillment.services.stale import stale_orders_heal\n"
            "stale_orders_heal(actor='bench')",
        ),
        "reconciliation s": timed_shell(
            stack,
            "from fulfillment.services.reconciliation import inventory_reconcile\n"
            "assert inventory_reconcile().ok",
        ),
        "clean-up s": timed_shell(
            stack,
            "from fulfillment.services.reports import retention_cleanup\nretention_cleanup()",
        ),
    }


def fetch_plan(stack: Stack) -> str:
    """EXPLAIN ANALYZE of the SELECT inside ``procrastinate_fetch_job_v2`` (all queues)."""
    rows = stack.sql(
        """
        EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
        SELECT jobs.id FROM procrastinate_jobs AS jobs
        WHERE NOT EXISTS (
            SELECT 1 FROM procrastinate_jobs AS other_jobs
            WHERE jobs.lock IS NOT NULL AND other_jobs.lock = jobs.lock
              AND (other_jobs.status = 'doing' OR (other_jobs.status = 'todo' AND (
                   other_jobs.priority > jobs.priority OR (
                   other_jobs.priority = jobs.priority AND other_jobs.id < jobs.id)))))
          AND jobs.status = 'todo'
          AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
        ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1
        FOR UPDATE OF jobs SKIP LOCKED
        """
    )
    return "\n".join(r[0] for r in rows)


def sizes(stack: Stack) -> dict[str, Any]:
    (orders,) = stack.sql("SELECT count(*) FROM fulfillment_order")[0]
    rows = stack.sql(
        """
        SELECT c.relname, pg_table_size(c.oid), pg_indexes_size(c.oid), c.reltuples::bigint
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname = 'public'
        ORDER BY pg_total_relation_size(c.oid) DESC LIMIT 14
        """
    )
    (db,) = stack.sql("SELECT pg_database_size(current_database())")[0]
    tables = [
        {
            "table": name,
            "rows": max(int(tuples), 0),
            "table B/order": round(tsize / max(orders, 1), 1),
            "indexes B/order": round(isize / max(orders, 1), 1),
        }
        for name, tsize, isize, tuples in rows
    ]
    return {
        "orders": orders,
        "database bytes": db,
        "B/order": round(db / max(orders, 1)),
        "tables": tables,
    }


def run_stack(stack: Stack, args: argparse.Namespace, log_path: Path) -> dict[str, Any]:
    key = stack.api_key()
    values = sample(stack)
    # The worker's periodic statistics job, run once: the snapshot the statistics read serves.
    refresh = timed_shell(
        stack,
        "from fulfillment.selectors.orders import order_statistics_refresh\n"
        "order_statistics_refresh()",
    )
    proc, base_url = start_web(stack.env, args.web_concurrency, log_path)
    try:
        # Every gunicorn worker's first requests (connection, imports) stay out of the figures.
        reads = measure_reads(
            base_url, key, values, args.requests, warmup=3 + 2 * args.web_concurrency
        )
        intake = measure_intake(stack, base_url, key, args.seconds)
    finally:
        stop_web(proc)
    pipeline = measure_pipeline(stack, args.seconds)
    return {
        "reads": reads,
        "intake": intake,
        "pipeline": pipeline,
        "statistics refresh s": refresh,
        **measure_maintenance(stack),
    }


# ----- report ----------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "pass" if ok else "**miss**"


def render(result: dict[str, Any], command: str) -> tuple[str, str]:
    vol, ref = result["volume"], result["reference"]
    lines = [
        f"Volume data set: {result['sizes']['orders']:,} orders, {result['dataset']['jobs']:,} "
        f"waiting stage jobs at build (built in {result['dataset']['seconds']:,.0f} s by "
        f"`seed_volume`); reference: {result['reference_orders']:,} orders. Command: "
        f"`{command}`, {result['date']}, {machine()}. Uncached (every cache lifetime 0), "
        f"{result['requests']} sequential requests per read after a warm-up of three plus two per "
        f"gunicorn worker.",
        "",
        "| read | reference p50 / p95 ms | volume p50 / p95 ms | p95 <= 50 ms |",
        "| --- | --- | --- | --- |",
    ]
    for name, _ in READS:
        r, v = ref["reads"][name], vol["reads"][name]
        lines.append(
            f"| {name} | {r['p50 ms']} / {r['p95 ms']} | {v['p50 ms']} / {v['p95 ms']} | "
            f"{_verdict(v['p95 ms'] <= TARGET_P95_MS)} |"
        )
    ri, vi = ref["intake"]["orders/s"], vol["intake"]["orders/s"]
    rp, vp = ref["pipeline"]["jobs/s"], vol["pipeline"]["jobs/s"]
    lines += [
        "",
        "| figure | reference | volume | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        f"| intake, orders/s (8 HTTP clients) | {ri} | {vi} | {vi / ri if ri else 0:.2f} | "
        f">= 0.9: {_verdict(bool(ri) and vi / ri >= 0.9)} |",
        f"| zero-delay pipeline, jobs/s (1 worker) | {rp} | {vp} | {vp / rp if rp else 0:.2f} | "
        f">= 0.8: {_verdict(bool(rp) and vp / rp >= 0.8)} |",
        f"| stale check, s | {ref['stale check s']} | {vol['stale check s']} | | <= 1 s: "
        f"{_verdict(vol['stale check s'] <= 1)} |",
        f"| reconciliation, s | {ref['reconciliation s']} | {vol['reconciliation s']} | | "
        f"<= 60 s: {_verdict(vol['reconciliation s'] <= 60)} |",
        f"| clean-up, s | {ref['clean-up s']} | {vol['clean-up s']} | | batches |",
        f"| statistics snapshot (worker, every minute), s | {ref['statistics refresh s']} | "
        f"{vol['statistics refresh s']} | | |",
    ]
    summary = "\n".join(lines)
    s = result["sizes"]
    detail = [
        "",
        f"Database: {s['database bytes'] / 1e9:.2f} GB, {s['B/order']:,} bytes per order.",
        "",
        "| table | rows | table B/order | indexes B/order |",
        "| --- | --- | --- | --- |",
    ]
    detail += [
        f"| {t['table']} | {t['rows']:,} | {t['table B/order']} | {t['indexes B/order']} |"
        for t in s["tables"]
    ]
    detail += [
        "",
        "Procrastinate's job fetch on the volume data set (`EXPLAIN ANALYZE`):",
        "",
        "```",
        result["fetch_plan"],
        "```",
    ]
    return summary, summary + "\n" + "\n".join(detail)


def update_performance_doc(summary: str) -> None:
    text = PERFORMANCE_DOC.read_text()
    body = (
        f"{SECTION}\n\nThe latest `make bench-volume` run (full report: "
        f"`loadtests/reports/volume.md`):\n\n{summary}\n"
    )
    if SECTION in text:
        head, _, rest = text.partition(SECTION)
        nxt = rest.find("\n## ")
        text = head + body + (rest[nxt:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    PERFORMANCE_DOC.write_text(text)


# ----- driver ----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 M orders instead of 10 M")
    parser.add_argument("--orders", type=int, help="volume data set size")
    parser.add_argument("--jobs", type=int, help="waiting stage jobs in the volume data set")
    parser.add_argument("--requests", type=int, help="measured requests per read")
    parser.add_argument("--seconds", type=float, help="seconds per intake and pipeline run")
    parser.add_argument("--reference-orders", type=int, default=20_000)
    parser.add_argument("--rebuild", action="store_true", help="build the volume data set again")
    parser.add_argument("--dir", help="where the volume stack lives (default .devstack/volume-N)")
    parser.add_argument("--web-concurrency", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--report", default=str(REPORT))
    parser.add_argument("--no-doc", action="store_true", help="leave docs/performance.md alone")
    args = parser.parse_args(argv)
    for k, v in SIZES["quick" if args.quick else "full"].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.chdir(ROOT)
    args = parse_args(argv)
    command = os.environ.get("BENCH_COMMAND") or "python -m loadtests.bench_volume " + " ".join(
        argv
    )
    base = Path(args.dir).resolve() if args.dir else ROOT / ".devstack" / f"volume-{args.orders}"
    if args.rebuild and base.exists():
        from config.devstack.servers import DevStack

        DevStack(base=base).stop()
        shutil.rmtree(base)
    report_path = Path(args.report)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "requests": args.requests,
        "reference_orders": args.reference_orders,
    }
    ref_base = Path(tempfile.mkdtemp(prefix="bench-volume-ref-"))
    try:
        with stack_at(ref_base) as ref:
            ref.manage("migrate", "--noinput", "-v", "0")
            ref.manage(
                "seed_volume",
                "--orders",
                str(args.reference_orders),
                "--products",
                "1000",
                "--jobs",
                str(args.reference_orders // 2),
                "--due-fraction",
                "1",
                "--quiet",
            )
            ref.sql("VACUUM ANALYZE")
            log("measuring the reference stack")
            result["reference"] = run_stack(ref, args, ref_base / "gunicorn.log")
    finally:
        shutil.rmtree(ref_base, ignore_errors=True)
    with stack_at(base) as vol:
        result["dataset"] = ensure_dataset(vol, base, args.orders, args.jobs, [])
        log("measuring the volume stack")
        result["fetch_plan"] = fetch_plan(vol)
        result["volume"] = run_stack(vol, args, base / "gunicorn.log")
        result["sizes"] = sizes(vol)
    summary, full = render(result, command)
    report_path.write_text("# Volume benchmark\n\n" + full + "\n")
    report_path.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    if not args.no_doc:
        update_performance_doc(summary)
    print(full)
    return 0


if __name__ == "__main__":
    sys.exit(main())
