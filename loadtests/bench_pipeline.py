"""Pipeline benchmark: real ``manage.py procrastinate worker`` processes on a scratch database.

Scenario functions return dicts of figures; each is bounded in time and measures its reference
(a no-op Procrastinate job) in the same run:

- :func:`noop_job_rate`: jobs/s of a job that does nothing (the queue's own ceiling).
- :func:`pipeline_rate`: orders/s taken from ``pending`` to ``delivered`` with zero delays.
- :func:`zero_delay_throughput`: both, for one worker at several concurrencies and for two
  worker processes, with the ratio pipeline orders/s : no-op jobs/s.
- :func:`default_delays`: orders arrive at a steady rate with the default simulated delays
  (processing 2-5 s, shipping 3-8 s, delivery 1-2 s); reports orders completed per minute,
  orders in flight, and the p50/p99 lag between a stage job's scheduled time and its start.

Run: ``.venv/bin/python -m loadtests.bench_pipeline`` (starts the embedded servers when
DATABASE_URL is not set; uses its own database ``bench_pipeline``, dropped and re-created).
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from loadtests.bench_report import pipeline_markdown
from loadtests.benchlib import ROOT, Bench

BENCH_DB = "bench_pipeline"
_ready = False
_postmaster_pid: int | None = None  # the embedded server's, for CPU accounting


# ----- set-up -----------------------------------------------------------------------------------


def setup(db_name: str = BENCH_DB) -> dict[str, str]:
    """Point Django at a fresh scratch database on the configured (or embedded) server."""
    global _ready
    if _ready:
        return {"DATABASE_URL": os.environ["DATABASE_URL"]}
    sys.path.insert(0, str(ROOT))
    from config.devstack.servers import external_or_embedded_env

    global _postmaster_pid
    env, stack = external_or_embedded_env()
    _postmaster_pid = stack.pg_pid() if stack is not None else None
    base = urlsplit(env["DATABASE_URL"])
    import psycopg

    admin_url = urlunsplit(base._replace(path="/postgres"))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db_name}"')
    os.environ["DATABASE_URL"] = urlunsplit(base._replace(path=f"/{db_name}"))
    os.environ["REDIS_URL"] = env["REDIS_URL"]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    _warm_up()
    _ready = True
    return {"DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"]}


def _sql(query: str, params: Any = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def _reset() -> None:
    _sql(
        "TRUNCATE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, "
        "procrastinate_workers, fulfillment_stockmovement, fulfillment_orderline, "
        "fulfillment_order, fulfillment_stocklevel, fulfillment_product CASCADE"
    )
    # No ANALYZE here: on the emptied tables it would record "0 rows", and the worker's sessions
    # would then plan (and cache) the job fetch for an empty queue, a plan that stays slow as the
    # queue fills: runs collapsed to ~25 stage jobs/s that way. TRUNCATE keeps the column
    # statistics of :func:`_warm_up` and leaves the size "unknown" (read from the file size).


def _warm_up() -> None:
    """Give every table the statistics of a populated run, once per scratch database.

    A fresh database has none: the job fetch (and the stage statement) are then planned blind,
    and the first minute of runs measured the planner instead of the system. Fetching and
    finishing a job costs about 1.2 ms of server CPU before the first ANALYZE and 0.3 ms after
    it, and autovacuum runs that ANALYZE at an unpredictable point of some run: the no-op
    reference moved between ~550 and ~1,000 jobs/s from one run to the next. So the driver runs
    a small pipeline and a batch of no-op jobs through a worker, analyzes the tables while they
    hold that data (as autovacuum would in production), and only then measures. TRUNCATE, in
    :func:`_reset`, keeps these column statistics.
    """
    _reset()
    products = _make_products()
    from django.conf import settings
    from django.db import transaction
    from django.test import override_settings

    from fulfillment.queue import job_manager as _job_manager
    from fulfillment.tasks import noop

    no_delays = {stage: (0.0, 0.0) for stage in settings.PIPELINE_DELAYS}
    with workers(env=ZERO_DELAYS):
        with override_settings(PIPELINE_DELAYS=no_delays):
            _create_orders(products, 200, random.Random(0))
        with transaction.atomic():
            _job_manager().batch_defer_jobs([noop.configure().job] * 600)
        deadline = time.monotonic() + 120
        while (
            _sql("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')")[0][0]
            and time.monotonic() < deadline
        ):
            time.sleep(0.25)
    _sql("ANALYZE")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of ``pid`` (all its threads; with ``children``, also its reaped
    children), from /proc; 0 where /proc is unavailable."""
    f = _stat(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)
    return ticks / _TICK


def _server_cpu_seconds() -> float | None:
    """CPU used so far by the embedded PostgreSQL: the postmaster, its live backends and the
    backends it has reaped. None when the server is not a local embedded one."""
    if _postmaster_pid is None or not os.path.isdir("/proc"):
        return None
    total = _cpu_seconds(_postmaster_pid, children=True)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat(int(entry))
            if f is not None and f[1] == str(_postmaster_pid):
                total += _cpu_seconds(int(entry))
    return total


class CpuMeter:
    """CPU seconds spent by the worker processes and by the database server between
    :meth:`start` and :meth:`stop`. On a shared machine wall-clock rates move with the
    neighbours' load; CPU per unit of work barely does."""

    def __init__(self, procs: list[subprocess.Popen[bytes]]) -> None:
        self.pids = [p.pid for p in procs]
        self.worker = self.server = None  # type: float | None

    def _now(self) -> tuple[float, float | None]:
        return sum(_cpu_seconds(pid) for pid in self.pids), _server_cpu_seconds()

    def start(self) -> None:
        self._w0, self._s0 = self._now()

    def stop(self) -> None:
        w1, s1 = self._now()
        self.worker = w1 - self._w0
        self.server = None if s1 is None or self._s0 is None else s1 - self._s0

    def per(self, units: int, what: str) -> dict[str, float | None]:
        """``worker_cpu_ms_per_<what>``, ``db_cpu_ms_per_<what>`` and their sum."""
        w = None if self.worker is None else round(1000 * self.worker / units, 3)
        d = None if self.server is None else round(1000 * self.server / units, 3)
        return {
            f"worker_cpu_ms_per_{what}": w,
            f"db_cpu_ms_per_{what}": d,
            f"cpu_ms_per_{what}": None if w is None or d is None else round(w + d, 3),
        }


ZERO_DELAYS = {
    "PIPELINE_DELAY_PROCESSING": "0",
    "PIPELINE_DELAY_SHIPPING": "0",
    "PIPELINE_DELAY_DELIVERY": "0",
    "PIPELINE_FAILURE_RATE_PROCESSING": "0",
    "PIPELINE_FAILURE_RATE_SHIPPING": "0",
}


@contextmanager
def workers(
    *,
    processes: int = 1,
    concurrency: int = 8,
    env: dict[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``processes`` worker processes started with the system's WORKER_COMMAND; yields once they
    have registered (so start-up time is not measured); stops them on exit."""
    from config.devstack.launcher import WORKER_COMMAND

    cmd = [sys.executable, *WORKER_COMMAND[1:], f"--concurrency={concurrency}", *extra_args]
    full_env = {
        **os.environ,
        # As deployed (docker-compose, Dockerfile): no debug cursor recording every query.
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LOG_LEVEL": "WARNING",
        # Schedules stay out of the measurement.
        "STALE_CHECK_CRON": "0 0 1 1 *",
        "STALLED_JOBS_CRON": "0 0 1 1 *",
        "RECONCILIATION_CRON": "0 0 1 1 *",
        **(env or {}),
    }
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=full_env, stderr=subprocess.DEVNULL)
        for _ in range(processes)
    ]
    try:
        deadline = time.monotonic() + 60
        while _sql("SELECT count(*) FROM procrastinate_workers")[0][0] < processes:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("workers did not start")
            time.sleep(0.05)
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _db_clock() -> float:
    """The database server's clock (epoch seconds): the start of a timed run, on the same clock
    as the completion timestamps the run ends with."""
    return float(_sql("SELECT EXTRACT(EPOCH FROM clock_timestamp())")[0][0])


def _wait_for(query: str, target: int, timeout: float, started: float) -> tuple[float, int]:
    """Poll ``query`` (``count, epoch of the latest completion``) until the count reaches
    ``target`` or ``timeout`` seconds have passed; the seconds from ``started`` (:func:`_db_clock`)
    to the latest completion, and the count reached (a bounded run reports what it got done).

    The elapsed time comes from the completion timestamps, not from when the poll saw them, so the
    poll can be rare (it used to count every 20 ms: 50 scans a second of a growing table on the
    server being measured).
    """
    deadline = time.monotonic() + timeout
    while True:
        count, last = _sql(query)[0]
        if count >= target or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    return (float(last) - started if last is not None else 0.0), int(count)


# ----- scenarios ------------------------------------------------------------------------------


def noop_job_rate(
    *, jobs: int = 3000, processes: int = 1, concurrency: int = 8, timeout: float = 120
) -> dict[str, Any]:
    """No-op jobs per second, queued at once and drained by the workers."""
    setup()
    _reset()
    from django.db import transaction

    from fulfillment.queue import job_manager as _job_manager
    from fulfillment.tasks import noop

    with workers(processes=processes, concurrency=concurrency) as procs:
        template = noop.configure().job
        with transaction.atomic():
            _job_manager().batch_defer_jobs([template] * jobs)
        cpu = CpuMeter(procs)
        started = _db_clock()
        cpu.start()
        elapsed, done = _wait_for(
            "SELECT count(*), EXTRACT(EPOCH FROM max(at)) FROM procrastinate_events "
            "WHERE type = 'succeeded'",
            jobs,
            timeout,
            started,
        )
        cpu.stop()
    return {
        "jobs": done,
        "processes": processes,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "jobs_per_s": round(done / elapsed, 1),
        **cpu.per(max(done, 1), "job"),
    }


def _make_products(n: int = 50, stock: int = 1_000_000) -> list[tuple[int, str]]:
    from decimal import Decimal

    from fulfillment.services.products import product_create

    products = []
    for i in range(n):
        p = product_create(
            sku=f"BENCH-{i:04d}",
            name=f"Bench product {i}",
            price=Decimal("9.99"),
            initial_stock=stock,
            low_stock_threshold=1,
            is_active=True,
            actor="bench",
        )
        products.append((p.pk, str(p.price)))
    return products


def _create_orders(products: list[tuple[int, str]], count: int, rng: random.Random) -> None:
    """``count`` pending orders (1-3 lines each) the way intake makes them, in ONE transaction:
    reserve stock per order through the inventory service, then defer the first stage jobs."""
    from decimal import Decimal

    from django.db import transaction

    from fulfillment.models import Order, OrderLine
    from fulfillment.services.inventory import stock_reserve
    from fulfillment.services.stages import enqueue_first_stage

    with transaction.atomic():
        orders = Order.objects.bulk_create(
            [Order(customer_name="Bench", customer_email="bench@example.com") for _ in range(count)]
        )
        lines = []
        for order in orders:
            for pid, price in rng.sample(products, rng.randint(1, 3)):
                lines.append(
                    OrderLine(
                        order=order, product_id=pid, quantity=rng.randint(1, 3), unit_price=price
                    )
                )
        OrderLine.objects.bulk_create(lines)
        by_order: dict[int, list[tuple[int, int]]] = {}
        for line in lines:
            by_order.setdefault(line.order_id, []).append((line.product_id, line.quantity))
        # Lock every stock row of the batch once, in primary-key order (as a set-based bulk
        # intake does), so the per-order reservations below cannot deadlock with the worker.
        _sql(
            "SELECT id FROM fulfillment_stocklevel WHERE product_id = ANY(%s) ORDER BY id "
            "FOR UPDATE",
            [sorted({line.product_id for line in lines})],
        )
        for order_pk, order_lines in by_order.items():
            stock_reserve(lines=sorted(order_lines), order_id=order_pk, actor="bench")
        Order.objects.filter(pk__in=[o.pk for o in orders]).update(total_amount=Decimal("1"))
        enqueue_first_stage(order_pks=[o.pk for o in orders])


def _create_orders_bulk(products: list[tuple[int, str]], count: int, rng: random.Random) -> None:
    """``count`` pending orders (1-3 lines each) through the bulk intake service, as
    ``POST /api/v1/orders/bulk_create/`` makes them: one set-based transaction that reserves the
    stock and defers every first stage job (scheduled after its simulated delay)."""
    from fulfillment.services.bulk_intake import order_bulk_create
    from fulfillment.services.receipts import OrderDraft

    drafts = [
        OrderDraft(
            customer_name="Bench",
            customer_email="bench@example.com",
            items=sorted(
                (pid, rng.randint(1, 3)) for pid, _ in rng.sample(products, rng.randint(1, 3))
            ),
        )
        for _ in range(count)
    ]
    order_bulk_create(drafts=drafts, atomic=True, actor="bench")


def pipeline_rate(
    *, orders: int = 1000, processes: int = 1, concurrency: int = 8, timeout: float = 180
) -> dict[str, Any]:
    """Orders per second from pending to delivered with zero delays and no failures."""
    setup()
    _reset()
    products = _make_products()
    from django.conf import settings
    from django.test import override_settings

    # The first stage is scheduled by intake (this process): after no delay either.
    no_delays = {stage: (0.0, 0.0) for stage in settings.PIPELINE_DELAYS}
    with workers(processes=processes, concurrency=concurrency, env=ZERO_DELAYS) as procs:
        with override_settings(PIPELINE_DELAYS=no_delays):
            _create_orders(products, orders, random.Random(1))
        cpu = CpuMeter(procs)
        started = _db_clock()
        cpu.start()
        elapsed, delivered = _wait_for(
            "SELECT count(*), EXTRACT(EPOCH FROM max(delivered_at)) FROM fulfillment_order "
            "WHERE status = 'delivered'",
            orders,
            timeout,
            started,
        )
        cpu.stop()
    retried = _sql(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'fulfillment.advance_order' "
        "AND attempts > 1"
    )[0][0]
    ships = _sql("SELECT count(*) FROM fulfillment_stockmovement WHERE kind = 'ship'")[0][0]
    return {
        "orders": delivered,
        "processes": processes,
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "orders_per_s": round(delivered / elapsed, 1),
        "stage_jobs_per_s": round(3 * delivered / elapsed, 1),
        "ship_rows": ships,
        "retried_jobs": retried,
        **cpu.per(max(delivered, 1), "order"),
    }


def zero_delay_throughput(
    *,
    concurrencies: tuple[int, ...] = (4, 8, 16),
    orders: int = 1000,
    noop_jobs: int = 3000,
    timeout: float = 180,
) -> dict[str, Any]:
    """Pipeline orders/s next to no-op jobs/s, one worker (best concurrency) and two workers;
    each run stops after ``timeout`` seconds and reports what it completed by then."""
    # Interleaved (pipeline, then no-op, at each concurrency) so that a drift of the shared
    # machine's speed during the scenario touches both sides of the ratio alike.
    one, noop_one = [], []
    for c in concurrencies:
        one.append(pipeline_rate(orders=orders, concurrency=c, timeout=timeout))
        noop_one.append(noop_job_rate(jobs=noop_jobs, concurrency=c, timeout=timeout))
    best = max(one, key=lambda r: r["orders_per_s"])
    noop_best = max(noop_one, key=lambda r: r["jobs_per_s"])
    two = pipeline_rate(
        orders=orders, processes=2, concurrency=best["concurrency"], timeout=timeout
    )
    noop_two = noop_job_rate(
        jobs=noop_jobs, processes=2, concurrency=noop_best["concurrency"], timeout=timeout
    )
    return {
        "pipeline_one_worker": one,
        "noop_one_worker": noop_one,
        "pipeline_best": best,
        "noop_best": noop_best,
        "pipeline_two_workers": two,
        "noop_two_workers": noop_two,
        "ratio_one_worker": round(best["orders_per_s"] / noop_best["jobs_per_s"], 3),
        "ratio_two_workers": round(two["orders_per_s"] / noop_two["jobs_per_s"], 3),
    }


def default_delays(
    *,
    arrival_per_s: float = 100.0,
    seconds: float = 60.0,
    warmup: float = 15.0,
    concurrency: int = 8,
    extra_args: tuple[str, ...] = (),
    intake: str = "bulk",
) -> dict[str, Any]:
    """Steady arrivals with the default delays and failure rates, one worker.

    Orders arrive in batches every 0.5 s for ``seconds`` (``intake="bulk"``: one bulk intake
    transaction per batch, so the load generator, on the same cores, stays light; ``"single"``:
    one transaction per order); after ``warmup`` the driver samples the orders in flight
    (non-terminal) each second and counts completions (delivered or failed). The lag of each
    stage job is its start minus its scheduled time.
    """
    setup()
    _reset()
    products = _make_products()
    rng = random.Random(2)
    in_flight: list[int] = []
    with workers(concurrency=concurrency, extra_args=extra_args):
        started = time.perf_counter()
        next_batch = started
        next_sample = started + warmup
        terminal_at_warmup = None
        sent = 0.0
        while (now := time.perf_counter()) - started < seconds:
            if now >= next_batch:
                due = arrival_per_s * (now - started) - sent
                if intake == "bulk" and int(due) > 0:
                    _create_orders_bulk(products, int(due), rng)
                elif intake != "bulk":
                    # One short transaction per order, as ``POST /orders/`` does.
                    for _ in range(int(due)):
                        _create_orders(products, 1, rng)
                sent += max(int(due), 0)
                next_batch += 0.5
            if now >= next_sample:
                flying, terminal = _sql(
                    "SELECT count(*) FILTER (WHERE status IN ('pending','processing','shipped')),"
                    " count(*) FILTER (WHERE status IN ('delivered','failed','cancelled'))"
                    " FROM fulfillment_order"
                )[0]
                if terminal_at_warmup is None:
                    terminal_at_warmup = (terminal, now)
                in_flight.append(flying)
                next_sample += 1.0
            time.sleep(max(0.0, min(next_batch, next_sample) - time.perf_counter()))
        terminal_end = _sql(
            "SELECT count(*) FROM fulfillment_order WHERE status IN "
            "('delivered','failed','cancelled')"
        )[0][0]
        window = time.perf_counter() - terminal_at_warmup[1] if terminal_at_warmup else 0.0
    lags = [
        float(r[0])
        for r in _sql(
            """
            SELECT EXTRACT(EPOCH FROM s.at - COALESCE(j.scheduled_at, d.at))
            FROM procrastinate_jobs j
            JOIN procrastinate_events s ON s.job_id = j.id AND s.type = 'started'
            JOIN procrastinate_events d ON d.job_id = j.id AND d.type = 'deferred'
            WHERE j.task_name = 'fulfillment.advance_order'
            """
        )
    ]
    lags.sort()
    pct = lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))], 3) if lags else None  # noqa: E731
    completed = terminal_end - (terminal_at_warmup[0] if terminal_at_warmup else 0)
    counts = dict(_sql("SELECT status, count(*) FROM fulfillment_order GROUP BY 1"))
    return {
        "arrival_per_s": arrival_per_s,
        "seconds": seconds,
        "concurrency": concurrency,
        "intake": intake,
        "orders_created": int(sent),
        "arrived_per_s": round(sent / seconds, 1),
        "completed_per_min": round(completed * 60 / window, 1) if window else None,
        "in_flight_avg": round(sum(in_flight) / len(in_flight)) if in_flight else 0,
        "in_flight_max": max(in_flight, default=0),
        "stage_jobs_started": len(lags),
        "lag_p50_s": pct(0.50),
        "lag_p99_s": pct(0.99),
        "lag_max_s": round(lags[-1], 3) if lags else None,
        "status_counts": counts,
    }


def default_delays_sweep(
    *,
    rates: tuple[float, ...] = (25, 50, 75, 100),
    seconds: float = 45.0,
    warmup: float = 15.0,
    concurrency: int = 8,
) -> dict[str, Any]:
    """:func:`default_delays` at rising arrival rates until the p99 stage start lag exceeds 1 s;
    the best run is the highest rate that kept p99 within 1 s."""
    runs = []
    for rate in rates:
        run = default_delays(
            arrival_per_s=rate, seconds=seconds, warmup=warmup, concurrency=concurrency
        )
        runs.append(run)
        if run["lag_p99_s"] is None or run["lag_p99_s"] > 1.0:
            break
    ok = [r for r in runs if r["lag_p99_s"] is not None and r["lag_p99_s"] <= 1.0]
    return {"runs": runs, "best": ok[-1] if ok else None}


# ----- scenarios of the benchmark driver (`make bench`, loadtests/bench.py) ------------------


def _close_connections() -> None:
    # The driver forks load generators later; they must not inherit open connections.
    from django.db import connections

    connections.close_all()


def bench_zero_delays(bench: Bench) -> dict[str, Any]:
    """:func:`zero_delay_throughput` with the driver's sizes."""
    try:
        return zero_delay_throughput(
            concurrencies=bench.worker_concurrencies,
            orders=bench.pipeline_orders,
            noop_jobs=bench.noop_jobs,
            timeout=bench.pipeline_timeout,
        )
    finally:
        _close_connections()


def bench_default_delays(bench: Bench) -> dict[str, Any]:
    """:func:`default_delays_sweep` with the driver's rates and durations."""
    try:
        return default_delays_sweep(
            rates=bench.delay_rates, seconds=bench.delay_seconds, warmup=bench.delay_warmup
        )
    finally:
        _close_connections()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["zero", "delays"], default=None)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[25, 50, 75, 100], help="orders/s arriving"
    )
    parser.add_argument("--seconds", type=float, default=45.0)
    args = parser.parse_args(argv)
    setup()
    zero = delays = None
    if args.only in (None, "zero"):
        zero = zero_delay_throughput(concurrencies=tuple(args.concurrency), orders=args.orders)
        print(zero, file=sys.stderr)
    if args.only in (None, "delays"):
        delays = default_delays_sweep(rates=tuple(args.rates), seconds=args.seconds)
        print(delays, file=sys.stderr)
    print(pipeline_markdown(zero, delays))
    return 0


if __name__ == "__main__":
    sys.exit(main())
