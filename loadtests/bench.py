"""Benchmark driver: `make bench` (full run, under ten minutes) or `make bench ARGS=--quick`
(every scenario briefly, under two minutes); ``python -m loadtests.bench --help`` for the knobs.

It starts a THROWAWAY embedded PostgreSQL and Redis (``config.devstack.servers.DevStack`` in a temporary
directory, stopped and deleted at the end), so the dev database is never touched and every run
starts from the same empty state. Each figure is measured next to its reference in the same run,
and the report shows their ratio, the target from the issues and pass/miss. It prints one
Markdown report and writes it to ``loadtests/reports/bench.md`` (every figure also to
``bench.json`` beside it).

A benchmark is a set of scenario functions; each takes the shared :class:`Bench` (servers,
running gunicorn, bench products, sizes) and returns a dict of figures. ``main`` runs the
selected scenarios in order for ``--rounds`` rounds (scenarios registered with ``once=True`` run
in the first round only) and reports medians. Modules add scenarios with the
``@scenario("name")`` decorator:

- ``loadtests/bench_intake.py`` (order intake, issue 4): the raw-SQL ceiling through pgbench,
  single orders over HTTP, the hot product, bulk creation, statements per order;
- ``loadtests/bench_pipeline.py`` (pipeline, issue 5): zero delays with one and two worker
  processes next to a no-op Procrastinate job's rate, and the default delays (orders completed
  per minute, orders in flight, stage-start lag).

``loadtests/bench_report.py`` turns the figures into the report.
"""

from __future__ import annotations

import argparse
import json
import os
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
from typing import Any
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
    from config.devstack.servers import DevStack

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
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    # Scenario modules register themselves with this module's registry.
    import loadtests.bench_intake  # noqa: F401
    import loadtests.bench_pipeline  # noqa: F401
    from loadtests.bench_report import report

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
