"""A worker process killed with SIGKILL mid-flight loses no order and ships none twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Sum

from config.devstack.launcher import WORKER_COMMAND
from fulfillment import lifecycle
from fulfillment.models import Order, StockLevel, StockMovement
from fulfillment.queue import ADVANCE_ORDER_TASK
from tests.conftest import stop_process, subprocess_database_url
from tests.factories import make_order, make_product

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_queue"),
]
ROOT = Path(__file__).resolve().parent.parent
ORDERS = 150


def _worker_env() -> dict[str, str]:
    url = subprocess_database_url()
    return {
        **os.environ,
        "DATABASE_URL": url,
        "PIPELINE_DELAY_PROCESSING": "0",
        "PIPELINE_DELAY_SHIPPING": "0",
        "PIPELINE_DELAY_DELIVERY": "0",
        "PIPELINE_FAILURE_RATE_PROCESSING": "0",
        "PIPELINE_FAILURE_RATE_SHIPPING": "0",
        # A dead worker is noticed after 2 s; the stalled-job job runs every second.
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "STALLED_WORKER_SECONDS": "2",
        "STALLED_JOBS_CRON": "* * * * * *",
        "PYTHONUNBUFFERED": "1",
    }


def _start_worker(log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, *WORKER_COMMAND[1:]] if WORKER_COMMAND[0] == "python" else WORKER_COMMAND
    with log.open("ab") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=_worker_env(), stdout=out, stderr=out)


def _job_counts() -> Counter[str]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs WHERE task_name = %s GROUP BY 1",
            [ADVANCE_ORDER_TASK],
        )
        return Counter(dict(cur.fetchall()))


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_sigkilled_worker_loses_no_order_and_ships_none_twice(tmp_path):
    # given: orders flowing through a worker process
    product = make_product(stock=10 * ORDERS)
    orders = [make_order(lines=[(product, 2)]) for _ in range(ORDERS)]
    log = tmp_path / "worker.log"
    first = _start_worker(log)
    try:
        # when: it is frozen while holding jobs, then killed
        _wait(lambda: _job_counts()["succeeded"] >= 30, 60, "the first worker to make progress")
        for _ in range(200):
            first.send_signal(signal.SIGSTOP)
            if _job_counts()["doing"]:
                break
            first.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        in_flight = _job_counts()["doing"]
        first.kill()
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    unfinished = Order.objects.exclude(status__in=lifecycle.TERMINAL).count()
    assert in_flight > 0, "the worker was killed while holding no job"
    assert unfinished > 0, "the worker had finished everything before it was killed"

    second = _start_worker(log)
    try:
        # Every order terminal, and every job the dead worker held taken back and finished
        # (a job whose transaction had committed before the kill is retried and does nothing).
        _wait(
            lambda: (
                not Order.objects.exclude(status__in=lifecycle.TERMINAL).exists()
                and not (_job_counts()["doing"] or _job_counts()["todo"])
            ),
            60,
            "every order terminal and every job finished:\n" + log.read_text()[-3000:],
        )
    finally:
        stop_process(second, timeout=15)

    # then: every order delivered, each shipped exactly once, nothing released, ledger = stock
    assert Order.objects.filter(status=Order.Status.DELIVERED).count() == ORDERS
    ships = Counter(StockMovement.objects.filter(kind="ship").values_list("order_id", flat=True))
    assert ships == Counter({o.pk: 1 for o in orders})
    assert not StockMovement.objects.filter(kind="release").exists()
    level = StockLevel.objects.get(product=product)
    sums = StockMovement.objects.filter(product=product).aggregate(
        oh=Sum("on_hand_delta"), rs=Sum("reserved_delta")
    )
    assert (level.on_hand, level.reserved) == (sums["oh"], sums["rs"]) == (8 * ORDERS, 0)
    assert set(_job_counts()) == {"succeeded"}
