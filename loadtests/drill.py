"""Failover drill: `make drill` (two minutes on a quiet machine), ``python -m loadtests.drill --help``.

On throwaway servers under ``.devstack/drill-<pid>/`` (deleted at the end) it builds:

- a primary and a **synchronous** hot standby (``synchronous_standby_names`` names it,
  ``synchronous_commit = on``): a commit returns only once the standby has it on disk;
- two gunicorn web processes on different ports and two Procrastinate workers (restarted when
  they exit, as a process supervisor would), all on one multi-host connection string
  ``postgres://...@primary,standby/fulfillment?target_session_attrs=read-write``.

Under a steady order load (clients alternate between the two web processes) it kills the
primary (SIGKILL to the postmaster), waits ``--promote-after`` seconds (the failover manager's
detection time) and promotes the standby with ``pg_ctl promote``. The connection string then
finds the new primary by itself. After the load it waits for the pipeline to settle (the
stale-order healing and stalled-job schedules run every few seconds here; healing also runs
once explicitly) and checks:

- no 500 (nor any status besides 201 and 503) and how many seconds the 503s lasted;
- every order that got a 201 exists on the new primary, and reaches a terminal status;
- stock reconciles with the ledger (``reconcile_inventory``);
- no order has two ledger rows of one kind for one product (no job changed stock twice).

It prints a report (exit code 1 when a check fails) and the CPU seconds per order of each
process group before the failure (web, worker, PostgreSQL), which docs/scaling.md's capacity
model uses. Never run against real servers: it starts and kills its own.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from config.devstack.launcher import WORKER_COMMAND, _venv_bin
from config.devstack.replication import PgServer, create_primary, create_standby, wait_streaming
from config.devstack.servers import DevStack
from loadtests.benchlib import ROOT, UNLIMITED_RATE, start_web, stop_web

TERMINAL = ("delivered", "cancelled", "failed")
STANDBY_NAME = "drill_standby"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _say(msg: str) -> None:
    print(f"[drill] {msg}", flush=True)


# ----- CPU accounting (/proc) -------------------------------------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None


def cpu_seconds(match: Any) -> float:
    """CPU seconds (user + system, with reaped children) of every process ``match(pid, ppid,
    pgid)`` accepts."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _proc_stat(int(entry))
        if fields is None:
            continue
        ppid, pgid = int(fields[1]), int(fields[2])
        if match(int(entry), ppid, pgid):
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / CLOCK_TICKS


# ----- the load ---------------------------------------------------------------------------------


@dataclass
class Result:
    start: float
    end: float
    status: int  # -1: no HTTP response
    order_id: str = ""
    code: str = ""


@dataclass
class Load:
    ports: list[int]
    headers: dict[str, str]
    product_ids: list[int]
    stop: threading.Event = field(default_factory=threading.Event)
    results: list[Result] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, n: int) -> None:
        i = n
        while not self.stop.is_set():
            port = self.ports[i % len(self.ports)]
            product = self.product_ids[i % len(self.product_ids)]
            i += 1
            body = json.dumps(
                {
                    "customer_name": f"Drill {n}",
                    "customer_email": f"drill{n}@example.com",
                    "items": [{"product_id": product, "quantity": 1}],
                }
            )
            start = time.monotonic()
            result = Result(start, start, -1)
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request(
                    "POST",
                    "/api/v1/orders/",
                    body,
                    {**self.headers, "Content-Type": "application/json"},
                )
                response = conn.getresponse()
                payload = response.read()
                conn.close()
                result.status = response.status
                data = json.loads(payload or b"{}")
                if response.status == 201:
                    result.order_id = data["order_id"]
                else:
                    result.code = (data.get("error") or {}).get("code", "")
            except (OSError, http.client.HTTPException, ValueError):
                time.sleep(0.05)
            result.end = time.monotonic()
            with self.lock:
                self.results.append(result)


# ----- processes --------------------------------------------------------------------------------


class Workers:
    """``count`` Procrastinate workers, each restarted when it exits (a supervisor's job)."""

    def __init__(self, env: dict[str, str], count: int, logdir: Path) -> None:
        self.env, self.count, self.logdir = env, count, logdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)

    def _spawn(self, n: int) -> subprocess.Popen[bytes]:
        with open(self.logdir / f"worker-{n}.log", "ab") as out:
            return subprocess.Popen(
                _venv_bin(WORKER_COMMAND),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    def start(self) -> None:
        self.procs = [self._spawn(n) for n in range(self.count)]
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            for n, proc in enumerate(self.procs):
                if proc.poll() is not None:
                    self.restarts += 1
                    time.sleep(0.5)
                    self.procs[n] = self._spawn(n)

    def pgids(self) -> set[int]:
        return {p.pid for p in self.procs}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for proc in self.procs:
            stop_web(proc)  # SIGTERM to the process group, then SIGKILL


def _manage(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode not in (0, 1):
        raise RuntimeError(f"manage.py {args[0]} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def _setup_code(products: int) -> str:
    return f"""
import json
from decimal import Decimal
from fulfillment.services.api_keys import api_key_create
from fulfillment.services.products import product_create
ids = [product_create(sku=f"DRILL-{{i:03d}}", name=f"Drill {{i}}", price=Decimal("5.00"),
                      initial_stock=1000000, low_stock_threshold=0, is_active=True,
                      actor="drill").pk for i in range({products})]
key = api_key_create(name="drill", role="operator", throttle_rate="{UNLIMITED_RATE}").raw_key
print(json.dumps({{"products": ids, "key": key}}))
"""


def _heal_code() -> str:
    return (
        "from fulfillment.services.stale import stale_orders_heal\n"
        "r = stale_orders_heal(actor='drill')\n"
        "print(r.checked, len(r.redeferred), len(r.failed), len(r.skipped_live_job))\n"
    )


# ----- the drill --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m loadtests.drill", description=__doc__.split("\n")[0]
    )
    p.add_argument("--duration", type=float, default=45, help="seconds of order load")
    p.add_argument("--kill-at", type=float, default=15, help="seconds into the load")
    p.add_argument("--promote-after", type=float, default=2, help="seconds after the kill")
    p.add_argument("--clients", type=int, default=8, help="concurrent order clients")
    p.add_argument("--settle-timeout", type=float, default=120, help="seconds for the pipeline")
    p.add_argument("--json", type=Path, help="also write the figures here")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    stack = DevStack()
    stack.start_redis()
    base = stack.base / f"drill-{os.getpid()}"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    logs = base / "logs"
    logs.mkdir()
    primary: PgServer | None = None
    standby: PgServer | None = None
    webs: list[subprocess.Popen[bytes]] = []
    workers: Workers | None = None
    load: Load | None = None
    figures: dict[str, Any] = {}
    try:
        _say("primary and synchronous standby")
        primary = create_primary(base / "primary", "synchronous_commit = on\n")
        standby = create_standby(primary.port, base / "standby", application_name=STANDBY_NAME)
        wait_streaming(primary, STANDBY_NAME)
        primary.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
        primary.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        sync = primary.execute(
            f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}'"
        )
        figures["standby sync_state"] = sync[0][0] if sync else "missing"

        url = (
            f"postgres://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/fulfillment"
            "?target_session_attrs=read-write"
        )
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": stack.redis_url[:-2] + "/14",
            "DEBUG": "1",
            "LOG_LEVEL": "WARNING",
            "DB_CONNECT_TIMEOUT": "2",
            "PIPELINE_DELAY_PROCESSING": "0.5-1",
            "PIPELINE_DELAY_SHIPPING": "0.5-1",
            "PIPELINE_DELAY_DELIVERY": "0.2-0.5",
            "PIPELINE_RETRY_BACKOFF_SECONDS": "2",
            "STALE_PENDING_SECONDS": "8",
            "STALE_PROCESSING_SECONDS": "8",
            "STALE_SHIPPED_SECONDS": "8",
            "STALE_CHECK_CRON": "* * * * * */5",
            "STALLED_JOBS_CRON": "* * * * * */5",
            "WORKER_HEARTBEAT_SECONDS": "1",
            "STALLED_WORKER_SECONDS": "6",
        }
        env.pop("DATABASE_REPLICA_URL", None)
        env.pop("DATABASE_ROUTERS", None)
        _manage(env, "migrate", "--noinput", "-v", "0")
        setup = json.loads(_manage(env, "shell", "-c", _setup_code(20)).strip().splitlines()[-1])

        _say("two web processes, two workers")
        for n in range(2):
            proc, _ = start_web(env, 2, logs / f"web-{n}.log")
            webs.append(proc)
        ports = [int(_listen_port(p)) for p in webs]
        workers = Workers(env, 2, logs)
        workers.start()

        load = Load(ports, {"Authorization": f"Bearer {setup['key']}"}, setup["products"])
        threads = [
            threading.Thread(target=load.client, args=(n,), daemon=True)
            for n in range(args.clients)
        ]
        postmaster = primary.pid()
        assert postmaster is not None
        web_pgids = {p.pid for p in webs}
        worker_pgids = workers.pgids()

        def group_cpu() -> dict[str, float]:
            return {
                "web": cpu_seconds(lambda pid, ppid, pgid: pgid in web_pgids),
                "worker": cpu_seconds(lambda pid, ppid, pgid: pgid in worker_pgids),
                "postgres": cpu_seconds(
                    lambda pid, ppid, pgid: pid == postmaster or ppid == postmaster
                ),
            }

        _say(f"order load: {args.clients} clients for {args.duration:.0f}s")
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(min(3.0, args.kill_at / 3))  # warm-up
        cpu_start, t_cpu = group_cpu(), time.monotonic()
        accepted_start = sum(1 for r in load.results if r.status == 201)
        time.sleep(max(0.0, args.kill_at - (time.monotonic() - t0)))
        cpu_end, t_cpu_end = group_cpu(), time.monotonic()
        accepted_cpu = sum(1 for r in load.results if r.status == 201) - accepted_start

        _say("KILL -9 the primary")
        t_kill = time.monotonic()
        primary.kill()
        time.sleep(args.promote_after)
        _say("promote the standby")
        standby.promote()
        t_promoted = time.monotonic()
        time.sleep(max(0.0, args.duration - (time.monotonic() - t0)))
        load.stop.set()
        for t in threads:
            t.join(timeout=35)
        t_end = time.monotonic()

        results = sorted(load.results, key=lambda r: r.start)
        accepted = {r.order_id for r in results if r.status == 201}
        statuses: dict[str, int] = {}
        for r in results:
            key = str(r.status) if r.status > 0 else "no response"
            statuses[key] = statuses.get(key, 0) + 1
        errors = [r for r in results if r.status != 201]
        unavailable = [r for r in errors if r.status == 503]
        window = (
            max(r.end for r in unavailable) - min(r.start for r in unavailable)
            if unavailable
            else 0.0
        )
        _say("waiting for every accepted order to reach a terminal status")
        time.sleep(3)
        heal = _manage(env, "shell", "-c", _heal_code()).strip().splitlines()[-1]
        open_count, deadline = -1, time.monotonic() + args.settle_timeout
        ids = sorted(accepted)
        while time.monotonic() < deadline:
            rows = standby.execute(
                "SELECT status, count(*) FROM fulfillment_order "
                f"WHERE order_id = ANY(ARRAY[{','.join(repr(i) for i in ids) or 'NULL'}]::uuid[]) "
                "GROUP BY status",
                "fulfillment",
            )
            by_status = {str(s): int(c) for s, c in rows}
            open_count = sum(c for s, c in by_status.items() if s not in TERMINAL)
            if open_count == 0:
                break
            time.sleep(1)
        found = sum(by_status.values())
        reconcile = _manage(env, "reconcile_inventory", "--json").strip().splitlines()[-1]
        recon = json.loads(reconcile)
        doubles = standby.execute(
            "SELECT count(*) FROM (SELECT order_id, product_id, kind FROM "
            "fulfillment_stockmovement WHERE order_id IS NOT NULL "
            "GROUP BY 1, 2, 3 HAVING count(*) > 1) d",
            "fulfillment",
        )[0][0]
        orders_cpu = max(accepted_cpu, 1)
        seconds = t_cpu_end - t_cpu
        figures.update(
            {
                "load seconds": round(t_end - t0, 1),
                "requests": len(results),
                "responses by status": statuses,
                "accepted (201)": len(accepted),
                "503 window seconds": round(window, 2),
                "kill to promote seconds": round(t_promoted - t_kill, 2),
                "first 201 after promotion seconds": round(
                    min(
                        (r.end for r in results if r.status == 201 and r.start >= t_kill),
                        default=t_end,
                    )
                    - t_promoted,
                    2,
                ),
                "500s": sum(1 for r in results if r.status == 500),
                "other non-2xx": sum(1 for r in errors if r.status not in (503,)),
                "accepted orders missing": len(accepted) - found,
                "accepted orders not terminal": open_count,
                "terminal by status": by_status,
                "stale heal (checked redeferred failed skipped)": heal,
                "reconcile drifts": len(recon.get("drifts", [])),
                "ledger rows doubled": int(doubles),
                "worker restarts": workers.restarts,
                "orders/s before the kill": round(accepted_cpu / seconds, 1) if seconds else 0,
                "cpu ms per order (web, worker, postgres)": [
                    round(1000 * (cpu_end[g] - cpu_start[g]) / orders_cpu, 2)
                    for g in ("web", "worker", "postgres")
                ],
            }
        )
        return figures
    finally:
        if load is not None:
            load.stop.set()
        if workers is not None:
            workers.stop()
        for proc in webs:
            stop_web(proc)
        for server in (primary, standby):
            if server is not None:
                server.remove()
        if os.environ.get("DRILL_KEEP_LOGS"):
            _say(f"logs kept in {logs}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _listen_port(proc: subprocess.Popen[bytes]) -> int:
    """The port gunicorn was started on (from its command's BIND, via /proc)."""
    with open(f"/proc/{proc.pid}/environ", "rb") as fh:
        env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
    return int(env[b"BIND"].rsplit(b":", 1)[1])


def failures(figures: dict[str, Any]) -> list[str]:
    checks = {
        "the standby is synchronous": figures.get("standby sync_state") == "sync",
        "no 500": figures.get("500s") == 0,
        "no status besides 201 and 503": figures.get("other non-2xx") == 0,
        "orders were accepted after the promotion": figures.get(
            "first 201 after promotion seconds", 1e9
        )
        < 30,
        "every accepted order exists": figures.get("accepted orders missing") == 0,
        "every accepted order is terminal": figures.get("accepted orders not terminal") == 0,
        "stock reconciles": figures.get("reconcile drifts") == 0,
        "no stock change twice": figures.get("ledger rows doubled") == 0,
    }
    return [name for name, ok in checks.items() if not ok]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    figures = run(args)
    failed = failures(figures)
    print("\n## Failover drill\n")
    for key, value in figures.items():
        print(f"- {key}: {value}")
    print("\nresult:", "PASS" if not failed else "FAIL: " + "; ".join(failed))
    if args.json:
        args.json.write_text(json.dumps({**figures, "failed": failed}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
