"""Benchmark driver: `make bench` (full run, under ten minutes) or `make bench ARGS=--quick`
(every scenario briefly, under two minutes); ``python -m loadtests.bench --help`` for the knobs.

It starts a THROWAWAY embedded PostgreSQL and Redis (``config.devstack.servers.DevStack`` in a temporary
directory, stopped and deleted at the end), so the dev database is never touched and every run
starts from the same empty state. Each figure is measured next to its reference in the same run,
and the report shows their ratio, its target and pass/miss. It prints one
Markdown report and writes it to ``loadtests/reports/bench.md`` (every figure also to
``bench.json`` beside it).

A benchmark is a set of scenario functions; each takes the shared :class:`Bench` (servers,
running gunicorn, bench products, sizes; ``loadtests/benchlib.py``) and returns a dict of
figures. ``main`` runs the selected scenarios of :data:`SCENARIOS` in order for ``--rounds``
rounds (those in :data:`ONCE` in the first round only) and reports medians. The scenarios live
in:

- ``loadtests/bench_intake.py`` (order intake): the raw-SQL ceiling through pgbench,
  single orders over HTTP, the hot product, bulk creation, statements per order;
- ``loadtests/bench_pgbouncer.py``: single orders through PgBouncer in transaction pooling,
  next to the direct ones;
- ``loadtests/bench_pipeline.py`` (pipeline): zero delays with one and two worker
  processes next to a no-op Procrastinate job's rate, and the default delays with orders fed
  through bulk intake (orders completed per minute, orders in flight, stage-start lag);
- ``loadtests/bench_webhooks.py`` (webhooks): a loopback receiver subscribed to every event
  type, orders at a steady rate; every event delivered, delivery lag p50/p99;
- ``loadtests/bench_steady.py`` (steady state): single-order HTTP requests arriving open-loop
  at fixed rates while gunicorn and the worker pool run as `make run` runs them; per rate intake
  latency, stage-start lag, orders in flight, CPU by process group, and the highest rate that
  holds, next to the CPU per order of intake alone plus the pipeline alone.

``loadtests/bench_report.py`` turns the figures into the report. Imports point down: this
driver imports the scenario and report modules, they import ``benchlib``, never the driver.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from loadtests import (
    bench_analytics,
    bench_intake,
    bench_metrics,
    bench_pgbouncer,
    bench_pipeline,
    bench_steady,
    bench_webhooks,
)
from loadtests.bench_report import report
from loadtests.benchlib import ROOT, UNLIMITED_RATE, Bench, Scenario

REPORT = ROOT / "loadtests" / "reports" / "bench.md"

# Every scenario, in the order of `--help`; those in ONCE run in the first round only.
SCENARIOS: dict[str, Scenario] = {
    "pgbench_single": bench_intake.pgbench_single,
    "http_single": bench_intake.http_single,
    "http_single_pgbouncer": bench_pgbouncer.http_single_pgbouncer,
    "http_hot_product": bench_intake.http_hot_product,
    "http_bulk": bench_intake.http_bulk,
    "statements": bench_intake.statements,
    "pipeline_zero_delays": bench_pipeline.bench_zero_delays,
    "pipeline_default_delays": bench_pipeline.bench_default_delays,
    "http_single_metrics": bench_metrics.http_single_metrics,
    "metrics_scrape": bench_metrics.metrics_scrape,
    "webhook_delivery": bench_webhooks.bench_webhook_delivery,
    "steady_state": bench_steady.steady_state,
    # Not in the default list: fills a million orders (run it alone or last).
    "analytics": bench_analytics.bench_analytics,
}
ONCE = {
    "statements",
    "pipeline_zero_delays",
    "pipeline_default_delays",
    "metrics_scrape",
    "webhook_delivery",
    "steady_state",
    "analytics",
}


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
    from config.devstack.servers import DevStack

    base = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    stack = DevStack(base=base)
    try:
        yield stack.start()
    finally:
        stack.stop()
        shutil.rmtree(base, ignore_errors=True)


# ----- driver ------------------------------------------------------------------------------------

DEFAULT_SCENARIOS = (
    "statements,pgbench_single,http_single,http_single_pgbouncer,http_hot_product,http_bulk,"
    "pipeline_zero_delays,pipeline_default_delays,webhook_delivery,http_single_metrics,"
    "metrics_scrape,steady_state"
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
    "analytics_orders": 1_000_000,
    "metrics_volume": 1_000_000,
    "steady_rates": [100.0, 150.0, 200.0],
    "steady_seconds": 120.0,
    "steady_warmup": 20.0,
    "steady_reference_seconds": 20.0,
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
    "analytics_orders": 100_000,
    "metrics_volume": 20_000,
    "steady_rates": [50.0, 150.0],
    "steady_seconds": 15.0,
    "steady_warmup": 15.0,
    "steady_reference_seconds": 8.0,
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
    size.add_argument("--analytics-orders", type=int, help="orders the analytics scenario fills")
    size.add_argument(
        "--metrics-volume", type=int, help="orders and waiting jobs inserted before metrics_scrape"
    )
    size.add_argument(
        "--steady-rates", type=float, nargs="+", help="steady state: open-loop orders/s"
    )
    size.add_argument("--steady-seconds", type=float, help="steady state: measured s per rate")
    size.add_argument("--steady-warmup", type=float, help="steady state: warm-up s per rate")
    size.add_argument(
        "--steady-reference-seconds", type=float, help="steady state: intake-alone reference s"
    )
    parser.add_argument(
        "--steady-worker-processes",
        type=int,
        help="steady state: worker processes (default: the pool's, as make run)",
    )
    parser.add_argument(
        "--steady-worker-arg",
        action="append",
        default=[],
        help="steady state: an extra worker argument, e.g. --steady-worker-arg=--concurrency=8",
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--hot-clients", type=int, default=32)
    parser.add_argument("--hot-units", type=int, default=1000)
    parser.add_argument("--bulk-clients", type=int, default=2)
    parser.add_argument("--bulk-size", type=int, default=1000)
    parser.add_argument(
        "--web-concurrency",
        type=int,
        # As `make run` (config/gunicorn.py): 2 x cores + 1 sync workers unless WEB_CONCURRENCY
        # says otherwise; on 2 cores 5 measured faster than 8 (fewer processes contending).
        default=int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1)),
        help="gunicorn workers (default 2 x cores + 1, as make run)",
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


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.chdir(ROOT)
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
            analytics_orders=args.analytics_orders,
            metrics_volume=args.metrics_volume,
            steady_rates=tuple(args.steady_rates),
            steady_seconds=args.steady_seconds,
            steady_warmup=args.steady_warmup,
            steady_reference_seconds=args.steady_reference_seconds,
            steady_worker_processes=args.steady_worker_processes,
            steady_worker_args=tuple(args.steady_worker_arg),
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
    raise SystemExit(main())
