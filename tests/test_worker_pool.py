"""The worker pool `make run` and compose run: several worker processes, a dead one restarted,
all of them stopped by one SIGTERM; together they fulfil orders."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from config.worker_pool import WORKER_POOL_COMMAND
from fulfillment.models import Order
from tests.conftest import stop_process, subprocess_database_url
from tests.factories import make_order, make_product

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_queue"),
]
ROOT = Path(__file__).resolve().parent.parent


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.add(int(entry))
    return found


def _registered_workers() -> int:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM procrastinate_workers "
            "WHERE last_heartbeat > now() - interval '5 seconds'"
        )
        return int(cur.fetchone()[0])


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_pool_runs_its_processes_restarts_a_dead_one_and_stops_on_sigterm(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "WORKER_PROCESSES": "2",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "PIPELINE_DELAY_PROCESSING": "0",
        "PIPELINE_DELAY_SHIPPING": "0",
        "PIPELINE_DELAY_DELIVERY": "0",
        "PIPELINE_FAILURE_RATE_PROCESSING": "0",
        "PIPELINE_FAILURE_RATE_SHIPPING": "0",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "pool.log"
    with log.open("ab") as out:
        pool = subprocess.Popen(
            [sys.executable, *WORKER_POOL_COMMAND[1:]], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        # given: two worker processes, both registered
        _wait(lambda: len(_children(pool.pid)) == 2, 30, "two worker processes")
        _wait(lambda: _registered_workers() == 2, 60, "two registered workers\n" + log.read_text())
        first = _children(pool.pid)

        # when: one of them is killed outright
        victim = min(first)
        os.kill(victim, signal.SIGKILL)

        # then: the pool starts another in its place, and the pool fulfils orders
        _wait(
            lambda: len(_children(pool.pid)) == 2 and victim not in _children(pool.pid),
            30,
            "a replacement worker process",
        )
        assert "restarting it" in log.read_text()
        product = make_product(stock=20)
        orders = [make_order(lines=[(product, 1)]) for _ in range(10)]
        _wait(
            lambda: (
                Order.objects.filter(
                    pk__in=[o.pk for o in orders], status=Order.Status.DELIVERED
                ).count()
                == 10
            ),
            60,
            "the pool to deliver every order\n" + log.read_text()[-3000:],
        )
        children = _children(pool.pid)

        # when: the pool is asked to stop
        pool.send_signal(signal.SIGTERM)
        code = pool.wait(timeout=30)
    finally:
        stop_process(pool, timeout=5)

    # then: it exits cleanly with every child gone
    assert code == 0, log.read_text()[-3000:]
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie_or_gone(pid)


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_pool_refuses_a_process_count_that_is_not_a_positive_integer():
    result = subprocess.run(
        [sys.executable, *WORKER_POOL_COMMAND[1:]],
        cwd=ROOT,
        env={**os.environ, "WORKER_PROCESSES": "0"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "WORKER_PROCESSES must be a positive integer" in result.stderr
