"""The pipeline benchmark's harness: a scratch database, real ``manage.py procrastinate worker``
processes, CPU accounting of the workers and the database server, completion-time polling, and
the orders the scenarios feed the pipeline with (``loadtests/bench_pipeline.py``).
"""

from __future__ import annotations

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

from loadtests.benchlib import ROOT

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
    warm_up()
    _ready = True
    return {"DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"]}


def sql(query: str, params: Any = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []


def reset() -> None:
    sql(
        "TRUNCATE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, "
        "procrastinate_workers, fulfillment_stockmovement, fulfillment_orderline, "
        "fulfillment_order, fulfillment_stocklevel, fulfillment_product CASCADE"
    )
    # No ANALYZE here: on the emptied tables it would record "0 rows", and the worker's sessions
    # would then plan (and cache) the job fetch for an empty queue, a plan that stays slow as the
    # queue fills: runs collapsed to ~25 stage jobs/s that way. TRUNCATE keeps the column
    # statistics of :func:`warm_up` and leaves the size "unknown" (read from the file size).


def warm_up() -> None:
    """Give every table the statistics of a populated run, once per scratch database.

    A fresh database has none: the job fetch (and the stage statement) are then planned blind,
    and the first minute of runs measured the planner instead of the system. Fetching and
    finishing a job costs about 1.2 ms of server CPU before the first ANALYZE and 0.3 ms after
    it, and autovacuum runs that ANALYZE at an unpredictable point of some run: the no-op
    reference moved between ~550 and ~1,000 jobs/s from one run to the next. So the driver runs
    a small pipeline and a batch of no-op jobs through a worker, analyzes the tables while they
    hold that data (as autovacuum would in production), and only then measures. TRUNCATE, in
    :func:`reset`, keeps these column statistics.
    """
    reset()
    products = make_products()
    from django.conf import settings
    from django.db import transaction
    from django.test import override_settings

    from fulfillment.queue import job_manager as _job_manager
    from fulfillment.tasks import noop

    no_delays = {stage: (0.0, 0.0) for stage in settings.PIPELINE_DELAYS}
    with workers(env=ZERO_DELAYS):
        with override_settings(PIPELINE_DELAYS=no_delays):
            create_orders(products, 200, random.Random(0))
        with transaction.atomic():
            _job_manager().batch_defer_jobs([noop.configure().job] * 600)
        deadline = time.monotonic() + 120
        while (
            sql("SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')")[0][0]
            and time.monotonic() < deadline
        ):
            time.sleep(0.25)
    sql("ANALYZE")


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
        "STATISTICS_REFRESH_CRON": "0 0 1 1 *",
        **(env or {}),
    }
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=full_env, stderr=subprocess.DEVNULL)
        for _ in range(processes)
    ]
    try:
        deadline = time.monotonic() + 60
        while sql("SELECT count(*) FROM procrastinate_workers")[0][0] < processes:
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


def db_clock() -> float:
    """The database server's clock (epoch seconds): the start of a timed run, on the same clock
    as the completion timestamps the run ends with."""
    return float(sql("SELECT EXTRACT(EPOCH FROM clock_timestamp())")[0][0])


def wait_for(query: str, target: int, timeout: float, started: float) -> tuple[float, int]:
    """Poll ``query`` (``count, epoch of the latest completion``) until the count reaches
    ``target`` or ``timeout`` seconds have passed; the seconds from ``started`` (:func:`db_clock`)
    to the latest completion, and the count reached (a bounded run reports what it got done).

    The elapsed time comes from the completion timestamps, not from when the poll saw them, so the
    poll can be rare (it used to count every 20 ms: 50 scans a second of a growing table on the
    server being measured).
    """
    deadline = time.monotonic() + timeout
    while True:
        count, last = sql(query)[0]
        if count >= target or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    if last is None:
        raise RuntimeError(
            f"nothing completed within {timeout:.0f} s: are the workers running? ({query})"
        )
    return float(last) - started, int(count)


def make_products(n: int = 50, stock: int = 1_000_000) -> list[tuple[int, str]]:
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


def create_orders(products: list[tuple[int, str]], count: int, rng: random.Random) -> None:
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
        sql(
            "SELECT id FROM fulfillment_stocklevel WHERE product_id = ANY(%s) ORDER BY id "
            "FOR UPDATE",
            [sorted({line.product_id for line in lines})],
        )
        for order_pk, order_lines in by_order.items():
            stock_reserve(lines=sorted(order_lines), order_id=order_pk, actor="bench")
        Order.objects.filter(pk__in=[o.pk for o in orders]).update(total_amount=Decimal("1"))
        enqueue_first_stage(order_pks=[o.pk for o in orders])


def create_orders_bulk(products: list[tuple[int, str]], count: int, rng: random.Random) -> None:
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


def close_connections() -> None:
    # The driver forks load generators later; they must not inherit open connections.
    from django.db import connections

    connections.close_all()
