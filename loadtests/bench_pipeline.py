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
import random
import sys
import time
from typing import Any

from loadtests.bench_report import pipeline_markdown
from loadtests.benchlib import Bench
from loadtests.pipeline_harness import (
    ZERO_DELAYS,
    CpuMeter,
    close_connections,
    create_orders,
    create_orders_bulk,
    db_clock,
    make_products,
    reset,
    setup,
    sql,
    wait_for,
    workers,
)

# ----- scenarios ------------------------------------------------------------------------------


def noop_job_rate(
    *, jobs: int = 3000, processes: int = 1, concurrency: int = 8, timeout: float = 120
) -> dict[str, Any]:
    """No-op jobs per second, queued at once and drained by the workers."""
    setup()
    reset()
    from django.db import transaction

    from fulfillment.queue import job_manager as _job_manager
    from fulfillment.tasks import noop

    with workers(processes=processes, concurrency=concurrency) as procs:
        template = noop.configure().job
        with transaction.atomic():
            _job_manager().batch_defer_jobs([template] * jobs)
        cpu = CpuMeter(procs)
        started = db_clock()
        cpu.start()
        elapsed, done = wait_for(
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


def pipeline_rate(
    *, orders: int = 1000, processes: int = 1, concurrency: int = 8, timeout: float = 180
) -> dict[str, Any]:
    """Orders per second from pending to delivered with zero delays and no failures."""
    setup()
    reset()
    products = make_products()
    from django.conf import settings
    from django.test import override_settings

    # The first stage is scheduled by intake (this process): after no delay either.
    no_delays = {stage: (0.0, 0.0) for stage in settings.PIPELINE_DELAYS}
    with workers(processes=processes, concurrency=concurrency, env=ZERO_DELAYS) as procs:
        with override_settings(PIPELINE_DELAYS=no_delays):
            create_orders(products, orders, random.Random(1))
        cpu = CpuMeter(procs)
        started = db_clock()
        cpu.start()
        elapsed, delivered = wait_for(
            "SELECT count(*), EXTRACT(EPOCH FROM max(delivered_at)) FROM fulfillment_order "
            "WHERE status = 'delivered'",
            orders,
            timeout,
            started,
        )
        cpu.stop()
    from fulfillment.queue import ADVANCE_ORDER_TASK

    retried = sql(
        "SELECT count(*) FROM procrastinate_jobs WHERE task_name = %s AND attempts > 1",
        [ADVANCE_ORDER_TASK],
    )[0][0]
    ships = sql("SELECT count(*) FROM fulfillment_stockmovement WHERE kind = 'ship'")[0][0]
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
    reset()
    products = make_products()
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
                    create_orders_bulk(products, int(due), rng)
                elif intake != "bulk":
                    # One short transaction per order, as ``POST /orders/`` does.
                    for _ in range(int(due)):
                        create_orders(products, 1, rng)
                sent += max(int(due), 0)
                next_batch += 0.5
            if now >= next_sample:
                flying, terminal = sql(
                    "SELECT count(*) FILTER (WHERE status IN ('pending','processing','shipped')),"
                    " count(*) FILTER (WHERE status IN ('delivered','failed','cancelled'))"
                    " FROM fulfillment_order"
                )[0]
                if terminal_at_warmup is None:
                    terminal_at_warmup = (terminal, now)
                in_flight.append(flying)
                next_sample += 1.0
            time.sleep(max(0.0, min(next_batch, next_sample) - time.perf_counter()))
        terminal_end = sql(
            "SELECT count(*) FROM fulfillment_order WHERE status IN "
            "('delivered','failed','cancelled')"
        )[0][0]
        window = time.perf_counter() - terminal_at_warmup[1] if terminal_at_warmup else 0.0
    from fulfillment.queue import ADVANCE_ORDER_TASK

    lags = [
        float(r[0])
        for r in sql(
            """
            SELECT EXTRACT(EPOCH FROM s.at - COALESCE(j.scheduled_at, d.at))
            FROM procrastinate_jobs j
            JOIN procrastinate_events s ON s.job_id = j.id AND s.type = 'started'
            JOIN procrastinate_events d ON d.job_id = j.id AND d.type = 'deferred'
            WHERE j.task_name = %s
            """,
            [ADVANCE_ORDER_TASK],
        )
    ]
    lags.sort()
    pct = lambda q: round(lags[min(len(lags) - 1, int(q * len(lags)))], 3) if lags else None  # noqa: E731
    completed = terminal_end - (terminal_at_warmup[0] if terminal_at_warmup else 0)
    counts = dict(sql("SELECT status, count(*) FROM fulfillment_order GROUP BY 1"))
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
        close_connections()


def bench_default_delays(bench: Bench) -> dict[str, Any]:
    """:func:`default_delays_sweep` with the driver's rates and durations."""
    try:
        return default_delays_sweep(
            rates=bench.delay_rates, seconds=bench.delay_seconds, warmup=bench.delay_warmup
        )
    finally:
        close_connections()


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
