"""Steady state: single-order HTTP intake and the pipeline together, as `make run` runs them.

The system runs exactly as `make run` configures it: gunicorn with ``WEB_COMMAND`` and the worker
pool with ``WORKER_POOL_COMMAND`` (``config/worker_pool.py``), default delays and failure rates,
the periodic schedules on. Orders arrive **open-loop**: the ``i``-th ``POST /api/v1/orders/`` is
due at ``t0 + i / rate`` whatever the earlier responses did, sent by a pool of sender threads
large enough never to hold one back (a send that starts late is counted, and its latency is
measured from its due time, so a stalled server cannot hide its queueing).

Per arrival rate: a warm-up (load on, not measured), then the measured window: intake p50/p99
and errors, stage-start lag p50/p99 (a stage job's ``started`` event minus its ``scheduled_at``,
from Procrastinate's tables), orders in flight (not terminal) at the start and end of the window
and sampled each second, CPU seconds by process group (web: gunicorn and its workers; worker:
the pool and its processes; PostgreSQL: the postmaster and its backends, reaped ones included;
load generator: this process), from ``/proc/<pid>/stat``, and CPU ms per order. Then the load
stops and the queue drains before the next rate. A rate *holds* when intake p99 <= 100 ms, no
5xx, stage lag p99 <= 1 s and orders in flight do not grow over the window.

The reference, in the same run and database: the CPU per order of intake alone (the same
open-loop load, no worker running) plus that of the pipeline alone (the worker pool draining the
orders intake alone left, the web idle). Their sum is what an order would cost if the parts
added up; the report shows the mix's CPU per order next to it, and the rate two cores could
hold at that sum.

Run alone: ``python -m loadtests.bench --scenarios steady_state [--quick]``.
"""

from __future__ import annotations

import http.client
import json
import os
import queue as queue_mod
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from loadtests.benchlib import ROOT, Bench, percentile, start_web, stop_web

STEADY_DB = "bench_steady"
SENDERS = 96
INTAKE_P99_MS = 100.0
LAG_P99_S = 1.0
TERMINAL = ("delivered", "failed", "cancelled")

# ----- CPU by process group, from /proc -------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _parents() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (f := _stat(int(entry))) is not None:
            out[int(entry)] = int(f[1])
    return out


def tree_cpu_seconds(root: int, parents: dict[int, int] | None = None) -> float:
    """User + system CPU of ``root``, its live descendants and the children it has reaped."""
    parents = parents if parents is not None else _parents()
    members = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in members and pid not in members:
                members.add(pid)
                grew = True
    total = 0.0
    for pid in members:
        f = _stat(pid)
        if f is None:
            continue
        total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / _TICK


def own_cpu_seconds(pid: int) -> float:
    f = _stat(pid)
    return 0.0 if f is None else (int(f[11]) + int(f[12])) / _TICK


class GroupCpu:
    """CPU seconds per process group between :meth:`start` and :meth:`stop`."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        parents = _parents()
        return {
            # This process alone: gunicorn and the worker pool are its children.
            name: own_cpu_seconds(pid) if pid == os.getpid() else tree_cpu_seconds(pid, parents)
            for name, pid in self.roots.items()
        }

    def start(self) -> None:
        self._t0 = self._now()

    def stop(self) -> dict[str, float]:
        t1 = self._now()
        self.used = {k: round(t1[k] - self._t0[k], 2) for k in self.roots}
        return self.used


# ----- open-loop load -------------------------------------------------------------------------


@dataclass
class Sent:
    due: float
    started: float
    done: float
    status: int


@dataclass
class OpenLoop:
    """Sends ``POST /api/v1/orders/`` at ``rate`` per second from :meth:`start` until :meth:`stop`."""

    base_url: str
    headers: dict[str, str]
    product_ids: list[int]
    rate: float
    results: list[Sent] = field(default_factory=list)

    def start(self) -> None:
        self._stop = threading.Event()
        self._due: queue_mod.Queue[float | None] = queue_mod.Queue()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._send_loop, args=(random.Random(i),), daemon=True)
            for i in range(SENDERS)
        ]
        for t in self._threads:
            t.start()
        self.t0 = time.perf_counter()
        self._scheduler = threading.Thread(target=self._schedule, daemon=True)
        self._scheduler.start()

    def _schedule(self) -> None:
        i = 0
        while not self._stop.is_set():
            due = self.t0 + i / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            self._due.put(due)
            i += 1

    def _send_loop(self, rng: random.Random) -> None:
        u = urlsplit(self.base_url)
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=30)
        headers = {**self.headers, "Content-Type": "application/json"}
        while True:
            due = self._due.get()
            if due is None:
                return
            lines = rng.sample(self.product_ids, rng.randint(1, 3))
            body = json.dumps(
                {
                    "customer_name": "Steady",
                    "customer_email": "steady@example.com",
                    "items": [{"product_id": p, "quantity": rng.randint(1, 3)} for p in lines],
                }
            )
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/orders/", body, headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                status = 0
            with self._lock:
                self.results.append(Sent(due, started, time.perf_counter(), status))

    def stop(self) -> None:
        self._stop.set()
        self._scheduler.join()
        for _ in self._threads:
            self._due.put(None)
        for t in self._threads:
            t.join(timeout=60)

    def window(self, t_from: float, t_to: float) -> list[Sent]:
        with self._lock:
            return [s for s in self.results if t_from <= s.due < t_to]


def intake_figures(sent: list[Sent]) -> dict[str, Any]:
    latencies = [1000 * (s.done - s.due) for s in sent]
    return {
        "requests": len(sent),
        "accepted": sum(1 for s in sent if s.status == 201),
        "5xx": sum(1 for s in sent if s.status >= 500),
        "other errors": sum(1 for s in sent if s.status != 201 and s.status < 500),
        "sent late (> 50 ms after due)": sum(1 for s in sent if s.started - s.due > 0.05),
        "intake p50 ms": round(percentile(latencies, 50), 1),
        "intake p99 ms": round(percentile(latencies, 99), 1),
    }


# ----- the system under test ------------------------------------------------------------------


def _db_url(bench: Bench) -> str:
    base = urlsplit(bench.env["DATABASE_URL"])
    return urlunsplit(base._replace(path=f"/{STEADY_DB}"))


def _sql(url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def _postmaster_pid(url: str) -> int:
    backend = int(_sql(url, "SELECT pg_backend_pid()")[0][0])
    f = _stat(backend)
    assert f is not None, "the database server is not local: no CPU accounting"
    return int(f[1])


@contextmanager
def worker_pool(
    env: dict[str, str], log: Path, extra_args: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    from config.devstack.launcher import WORKER_POOL_COMMAND, _venv_bin

    with open(log, "ab") as out:
        pool = subprocess.Popen(
            [*_venv_bin(WORKER_POOL_COMMAND), *extra_args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        yield pool
    finally:
        pool.send_signal(signal.SIGTERM)
        try:
            pool.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pool.pid, signal.SIGKILL)
            pool.wait()


def _in_flight(url: str) -> int:
    return int(
        _sql(
            url, "SELECT count(*) FROM fulfillment_order WHERE status <> ALL(%s)", [list(TERMINAL)]
        )[0][0]
    )


def _wait_drained(url: str, timeout: float) -> float:
    started = time.monotonic()
    while _in_flight(url) and time.monotonic() - started < timeout:
        time.sleep(0.5)
    return time.monotonic() - started


LAG_SQL = """
SELECT EXTRACT(EPOCH FROM s.at - COALESCE(j.scheduled_at, d.at))
FROM procrastinate_events s
JOIN procrastinate_jobs j ON j.id = s.job_id
JOIN procrastinate_events d ON d.job_id = j.id AND d.type = 'deferred'
WHERE s.type = 'started' AND j.task_name = %s
  AND s.at >= to_timestamp(%s) AND s.at < to_timestamp(%s)
"""


def _db_now(url: str) -> float:
    return float(_sql(url, "SELECT EXTRACT(EPOCH FROM clock_timestamp())")[0][0])


def _run_window(
    *,
    url: str,
    load: OpenLoop,
    cpu: GroupCpu,
    seconds: float,
) -> dict[str, Any]:
    """Measure ``seconds`` of the running load (in flight each second, CPU, stage lag), then stop
    the load and add the intake figures of the requests due in the window."""
    t_from, db_from = time.perf_counter(), _db_now(url)
    cpu.start()
    in_flight = [_in_flight(url)]
    while time.perf_counter() - t_from < seconds:
        time.sleep(max(0.0, min(1.0, t_from + seconds - time.perf_counter())))
        in_flight.append(_in_flight(url))
    used = cpu.stop()
    t_to, db_to = time.perf_counter(), _db_now(url)
    load.stop()  # waits for the requests still open
    sent = load.window(t_from, t_to)
    lags = sorted(float(r[0]) for r in _sql(url, LAG_SQL, [ADVANCE_ORDER_TASK, db_from, db_to]))
    figures = intake_figures(sent)
    accepted = max(figures["accepted"], 1)
    half = len(in_flight) // 2
    first_half = sum(in_flight[:half]) / max(half, 1)
    second_half = sum(in_flight[half:]) / max(len(in_flight) - half, 1)
    figures.update(
        {
            "stage jobs started": len(lags),
            # ~2.76 when the pipeline keeps pace (3 stages, less the orders failed at processing,
            # 10 %, and at shipping, 5 %); less means the CPU per order below misses work that
            # was left for later.
            "stage jobs per accepted order": round(len(lags) / accepted, 2),
            "lag p50 s": round(percentile(lags, 50), 3) if lags else None,
            "lag p99 s": round(percentile(lags, 99), 3) if lags else None,
            "in flight at start": in_flight[0],
            "in flight at end": in_flight[-1],
            "in flight mean, 1st / 2nd half": f"{first_half:.0f} / {second_half:.0f}",
            # Growing: the second half of the window holds clearly more than the first (more
            # than one second of arrivals and 10 %): the pipeline falls behind.
            "in flight growing": second_half > first_half * 1.1 + load.rate,
            "cpu s": used,
            **{f"{k} cpu ms/order": round(1000 * v / accepted, 2) for k, v in used.items()},
            "system cpu ms/order": round(
                1000 * sum(v for k, v in used.items() if k != "load generator") / accepted, 2
            ),
            "cpu % of machine": round(
                100 * sum(used.values()) / (seconds * (os.cpu_count() or 1)), 1
            ),
        }
    )
    return figures


def holds(figures: dict[str, Any]) -> bool:
    return (
        figures["intake p99 ms"] <= INTAKE_P99_MS
        and figures["5xx"] == 0
        and figures["lag p99 s"] is not None
        and figures["lag p99 s"] <= LAG_P99_S
        and not figures["in flight growing"]
    )


# The stage task's name (``fulfillment.queue.ADVANCE_ORDER_TASK``; the driver does not set Django
# up for this scenario, and a test keeps the two equal).
ADVANCE_ORDER_TASK = "fulfillment.advance_order"


def steady_state(bench: Bench) -> dict[str, Any]:
    """The reference (intake alone, pipeline alone), then each arrival rate; see the module."""
    url = _db_url(bench)
    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    _sql(admin, f'DROP DATABASE IF EXISTS "{STEADY_DB}" WITH (FORCE)')
    _sql(admin, f'CREATE DATABASE "{STEADY_DB}"')
    env = {**bench.env, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    # As `make run`: default delays and failure rates, schedules on; DEBUG=0 and throttling
    # raised come from the driver's environment.
    for name in list(env):
        if name.startswith(("PIPELINE_DELAY_", "PIPELINE_FAILURE_RATE_")) or name.endswith("_CRON"):
            del env[name]
    if bench.steady_worker_processes is not None:
        env["WORKER_PROCESSES"] = str(bench.steady_worker_processes)
    sysbench = Bench(env=env, duration=bench.duration, warmup=bench.warmup)
    sysbench.prepare_database(hot_products=0)
    logs = Path(ROOT / "loadtests" / "reports")
    logs.mkdir(parents=True, exist_ok=True)
    web, base_url = start_web(
        env, bench.web_concurrency, logs / "bench-steady-gunicorn.log", timeout=120
    )
    postmaster = _postmaster_pid(url)
    out: dict[str, Any] = {
        "web workers": bench.web_concurrency,
        "worker processes": env.get("WORKER_PROCESSES", "pool default"),
        "worker extra args": " ".join(bench.steady_worker_args),
        "runs": [],
    }
    try:
        # Reference 1: intake alone (no worker), the same open-loop load.
        ref_rate = bench.steady_reference_rate
        load = OpenLoop(base_url, sysbench.headers, sysbench.product_ids, ref_rate)
        load.start()
        time.sleep(bench.steady_warmup / 2)
        cpu = GroupCpu({"web": web.pid, "postgres": postmaster})
        t_from = time.perf_counter()
        cpu.start()
        time.sleep(bench.steady_reference_seconds)
        used = cpu.stop()
        t_to = time.perf_counter()
        load.stop()
        alone = intake_figures(load.window(t_from, t_to))
        n = max(alone["accepted"], 1)
        intake_ms = round(1000 * sum(used.values()) / n, 2)
        out["intake alone"] = {
            "rate": ref_rate,
            **alone,
            "cpu s": used,
            "cpu ms/order (web + postgres)": intake_ms,
        }
        # Reference 2: the pipeline alone, draining every order left by intake alone.
        # Every job due now and the later stages without delay, so that the drain is bound by
        # the work, not by the simulated delays (idle polling would be counted otherwise).
        backlog = _in_flight(url)
        _sql(url, "UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo'")
        zero = {f"PIPELINE_DELAY_{s}": "0" for s in ("PROCESSING", "SHIPPING", "DELIVERY")}
        with worker_pool(
            {**env, **zero}, logs / "bench-steady-worker.log", bench.steady_worker_args
        ) as pool:
            cpu = GroupCpu({"worker": pool.pid, "postgres": postmaster})
            cpu.start()
            took = _wait_drained(url, timeout=bench.steady_drain_timeout)
            used = cpu.stop()
        done = backlog - _in_flight(url)
        pipeline_ms = round(1000 * sum(used.values()) / max(done, 1), 2)
        out["pipeline alone"] = {
            "orders": done,
            "seconds": round(took, 1),
            "orders/s": round(done / max(took, 0.001), 1),
            "cpu s": used,
            "cpu ms/order (worker + postgres)": pipeline_ms,
        }
        # Statistics of a populated database, as autovacuum would have them in production.
        _sql(url, "ANALYZE")
        with worker_pool(env, logs / "bench-steady-worker.log", bench.steady_worker_args) as pool:
            reference = round(intake_ms + pipeline_ms, 2)
            out["reference cpu ms/order (intake alone + pipeline alone)"] = reference
            cores = os.cpu_count() or 1
            out["reference: orders/s the cores hold at that cost"] = round(
                1000 * cores / reference, 1
            )
            groups = {"web": web.pid, "worker": pool.pid, "postgres": postmaster}
            groups["load generator"] = os.getpid()
            for rate in bench.steady_rates:
                load = OpenLoop(base_url, sysbench.headers, sysbench.product_ids, rate)
                load.start()
                time.sleep(bench.steady_warmup)
                figures = _run_window(
                    url=url, load=load, cpu=GroupCpu(groups), seconds=bench.steady_seconds
                )
                figures = {"rate": rate, **figures, "holds": None}
                figures["holds"] = holds(figures)
                figures["ratio system cpu / reference"] = round(
                    figures["system cpu ms/order"] / reference, 2
                )
                figures["drain s"] = round(
                    _wait_drained(url, timeout=bench.steady_drain_timeout), 1
                )
                print(f"[bench] steady_state {rate:g}/s: {figures}", flush=True)
                out["runs"].append(figures)
    finally:
        stop_web(web)
    held = [r["rate"] for r in out["runs"] if r["holds"]]
    out["highest rate that holds"] = max(held) if held else None
    return out
