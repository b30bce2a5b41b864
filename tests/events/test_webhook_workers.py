"""Webhook deliveries on worker processes started with the commands ``make run`` uses: a hanging
receiver never delays the pipeline, and a worker killed mid-delivery loses no event."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from config.devstack.launcher import WEBHOOK_WORKER_COMMAND, WORKER_COMMAND, _venv_bin
from fulfillment.lifecycle import OrderStatus
from fulfillment.models import Order, WebhookAttempt, WebhookDelivery
from fulfillment.services import webhooks
from tests.conftest import stop_process, subprocess_database_url
from tests.events.receiver import Receiver, running_receiver
from tests.factories import make_order, make_product

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_queue"),
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _private_networks(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # the receiver is on loopback


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "PIPELINE_DELAY_PROCESSING": "0",
        "PIPELINE_DELAY_SHIPPING": "2",
        "PIPELINE_DELAY_DELIVERY": "0",
        "PIPELINE_FAILURE_RATE_PROCESSING": "0",
        "PIPELINE_FAILURE_RATE_SHIPPING": "0",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",
        "WEBHOOK_RETRY_SCHEDULE": "0.5,0.5,0.5,0.5,0.5,0.5",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "STALLED_WORKER_SECONDS": "2",
        "STALLED_JOBS_CRON": "* * * * * *",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(_venv_bin(command), cwd=ROOT, env=env, stdout=out, stderr=out)


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_hanging_receiver_times_out_and_a_pipeline_stage_due_meanwhile_starts_on_time(tmp_path):
    # given: a receiver that never answers within the timeout, subscribed to everything
    env = _env(WEBHOOK_TIMEOUT_SECONDS="3")
    log = tmp_path / "workers.log"
    with running_receiver(Receiver(answer=lambda n, r: "hang", hang_seconds=20)) as receiver:
        webhooks.webhook_endpoint_create(url=receiver.url, event_types=["*"])
        product = make_product(stock=50)
        pipeline = _start(WORKER_COMMAND, log, env)
        hooks = _start(WEBHOOK_WORKER_COMMAND, log, env)
        try:
            # when: orders arrive while the first delivery hangs (the first order also shows that
            # the pipeline worker is up)
            make_order(lines=[(product, 1)])
            _wait(lambda: bool(receiver.received), 60, "the first delivery:\n" + log.read_text())
            _wait(
                lambda: Order.objects.filter(status=OrderStatus.DELIVERED).exists(),
                60,
                "the pipeline worker:\n" + log.read_text()[-3000:],
            )
            orders = [make_order(lines=[(product, 1)]) for _ in range(5)]
            # then: every order reaches shipped after its 2 s shipping delay, on time
            _wait(
                lambda: Order.objects.filter(status=OrderStatus.DELIVERED).count() == 6,
                30,
                "the orders to be delivered:\n" + log.read_text()[-3000:],
            )
            # and the hanging delivery is recorded as timed out
            _wait(lambda: WebhookAttempt.objects.exists(), 15, "the timed-out attempt")
        finally:
            stop_process(pipeline, timeout=15)
            stop_process(hooks, timeout=15)

    for order in Order.objects.filter(pk__in=[o.pk for o in orders]):
        assert order.processing_at is not None and order.shipped_at is not None
        assert (order.processing_at - order.created_at).total_seconds() < 1.5
        assert (order.shipped_at - order.processing_at).total_seconds() < 2 + 1.5
    attempt = WebhookAttempt.objects.order_by("id").first()
    assert attempt is not None and attempt.error == "timed out after 3 s"
    # the endpoint retries its oldest event after each backoff instead of trying every event
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1


def test_a_worker_killed_mid_delivery_still_delivers_the_event(tmp_path):
    # given: a receiver that holds the first request open, then answers at once
    env = _env(WEBHOOK_TIMEOUT_SECONDS="10")
    log = tmp_path / "workers.log"
    receiver_script = Receiver(answer=lambda n, r: "hang" if n == 1 else 200, hang_seconds=8)
    with running_receiver(receiver_script) as receiver:
        webhooks.webhook_endpoint_create(url=receiver.url, event_types=["order.created"])
        order = make_order(lines=[(make_product(stock=5), 1)])
        maintenance = _start(WORKER_COMMAND, log, env)  # retries the dead worker's jobs
        first = _start(WEBHOOK_WORKER_COMMAND, log, env)
        second = None
        try:
            _wait(lambda: bool(receiver.received), 30, "the first request:\n" + log.read_text())
            # when: the worker is killed while the request is in flight
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            assert not WebhookAttempt.objects.exists()
            second = _start(WEBHOOK_WORKER_COMMAND, log, env)
            # then: the event is delivered (again), with the same webhook-id
            _wait(
                lambda: WebhookDelivery.objects.filter(status="succeeded").exists(),
                60,
                "the delivery after the kill:\n" + log.read_text()[-3000:],
            )
        finally:
            stop_process(maintenance, timeout=15)
            if second is not None:
                stop_process(second, timeout=15)
            if first.poll() is None:
                first.kill()

    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(receiver.received) >= 2 and len(ids) == 1
    assert receiver.ok()[0].headers["webhook-id"] == ids.pop()
    delivery = WebhookDelivery.objects.get()
    assert delivery.attempts == 1  # the killed attempt left no record: the event was sent again
    assert order.order_id
