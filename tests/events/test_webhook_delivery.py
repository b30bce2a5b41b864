"""Webhook delivery end to end: a real receiver on loopback, the real dispatcher and a real
Procrastinate worker on the ``webhooks`` queue; signatures checked with the Standard Webhooks
reference library."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from fulfillment.events import EVENT_TYPES
from fulfillment.lifecycle import OrderStatus
from fulfillment.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from fulfillment.queue import WEBHOOKS_QUEUE
from fulfillment.services import inventory, webhooks
from fulfillment.services.stages import order_cancel
from tests.events.receiver import Receiver, running_receiver
from tests.factories import make_order, make_product
from tests.pipeline_support import run_worker_until_idle

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_queue"),
]


@pytest.fixture(autouse=True)
def _webhook_settings(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # the receiver is on loopback
    settings.WEBHOOK_RETRY_SCHEDULE = [0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]
    settings.WEBHOOK_TIMEOUT_SECONDS = 1.0


def deliver_until(done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Dispatch and run the webhooks worker until ``done()`` (retries wait for their time)."""
    deadline = time.monotonic() + timeout
    while True:
        webhooks.events_dispatch()
        run_worker_until_idle(queues=(WEBHOOKS_QUEUE,), concurrency=2, timeout=30)
        if done():
            return
        assert time.monotonic() < deadline, "deliveries did not finish in time"
        time.sleep(0.05)


def verified(secret: str, request: Any) -> dict[str, Any]:
    return Webhook(secret).verify(request.body, request.headers)  # type: ignore[no-any-return]


def _make_every_event_type() -> None:
    product = make_product(stock=10, threshold=5)
    other = make_product(stock=10)
    order = make_order(lines=[(product, 6)])  # 4 left: stock.low
    make_order(lines=[(product, 4)])  # 0 left: stock.out
    cancelled = make_order(lines=[(other, 1)])
    order_cancel(order_id=cancelled.order_id, actor="key:ops")
    inventory.stock_adjust(product_id=other.pk, delta=1, actor="key:ops", reason="found one")
    from fulfillment.services.stages import order_advance

    for expected in (OrderStatus.PENDING, OrderStatus.PROCESSING, OrderStatus.SHIPPED):
        order_advance(order_pk=order.pk, expected_status=expected, actor="test")
    failing = make_order(lines=[(other, 1)])
    from fulfillment.services.stages import order_transition

    order_transition(
        target=OrderStatus.FAILED, order_pk=failing.pk, actor="test", reason="payment declined"
    )


def test_every_event_type_is_delivered_once_per_subscribed_endpoint_with_a_valid_signature():
    with running_receiver() as everything, running_receiver() as shipped_only:
        # given: one endpoint subscribed to everything, one to order.shipped only
        all_ep, all_secret = webhooks.webhook_endpoint_create(url=everything.url, event_types=["*"])
        one_ep, one_secret = webhooks.webhook_endpoint_create(
            url=shipped_only.url, event_types=["order.shipped"]
        )

        # when: every kind of change happens
        _make_every_event_type()
        events = list(Event.objects.order_by("id"))
        assert {e.type for e in events} == set(EVENT_TYPES)
        deliver_until(lambda: len(everything.received) >= len(events))

        # then: each event once to "*", in event order, each verified by the reference library
        got = [verified(all_secret, r) for r in everything.received]
        assert [g["type"] for g in got] == [e.type for e in events]
        ids = [r.headers["webhook-id"] for r in everything.received]
        assert ids == [f"evt_{e.id}" for e in events]
        assert got[0]["data"] == events[0].data and "timestamp" in got[0]
        # and only order.shipped to the other endpoint
        [shipped] = shipped_only.received
        assert verified(one_secret, shipped)["type"] == "order.shipped"
        with pytest.raises(WebhookVerificationError):
            verified(all_secret, shipped)
        assert WebhookDelivery.objects.filter(status="succeeded").count() == len(events) + 1
        assert not WebhookDelivery.objects.exclude(status="succeeded").exists()
        assert all_ep.pk != one_ep.pk


def test_insufficient_stock_rolled_back_and_no_op_stages_produce_no_delivery():
    with running_receiver() as receiver:
        webhooks.webhook_endpoint_create(url=receiver.url, event_types=["*"])
        product = make_product(stock=1, threshold=0)
        deliver_until(lambda: len(receiver.received) == Event.objects.count())
        before = len(receiver.received)
        from django.db import transaction

        from fulfillment.errors import InsufficientStock
        from fulfillment.services.stages import order_advance

        with pytest.raises(InsufficientStock):
            make_order(lines=[(product, 5)])
        with pytest.raises(RuntimeError), transaction.atomic():
            order = make_order(lines=[(product, 1)])
            raise RuntimeError("roll back")
        real = make_order(lines=[(product, 1)])
        order_advance(order_pk=real.pk, expected_status=OrderStatus.SHIPPED, actor="t")  # no-op

        deliver_until(lambda: not WebhookDelivery.objects.filter(status="pending").exists())
        new = [json.loads(r.body) for r in receiver.received[before:]]
        # only the committed order: its order.created, plus stock.low/stock.out of its reservation
        assert Counter(n["type"] for n in new) == {
            "order.created": 1,
            "stock.low": 1,
            "stock.out": 1,
        }
        [created] = [n for n in new if n["type"] == "order.created"]
        assert created["data"]["order_id"] == str(real.order_id)
        assert order is not None


def test_a_receiver_down_then_back_gets_the_event_after_retries_with_the_same_webhook_id():
    # given: an endpoint whose receiver is not listening
    with running_receiver() as probe:
        port = probe.port
    endpoint, secret = webhooks.webhook_endpoint_create(
        url=f"http://127.0.0.1:{port}/hooks", event_types=["order.created"]
    )
    order = make_order(lines=[(make_product(stock=5), 1)])
    deliver_until(lambda: WebhookAttempt.objects.count() >= 2)
    attempts = list(WebhookAttempt.objects.order_by("number"))
    assert attempts[0].error == "connection refused" and attempts[0].status_code is None
    endpoint.refresh_from_db()
    assert endpoint.failing_since is not None

    # when: the receiver comes back on the same port
    with running_receiver(port=port) as receiver:
        deliver_until(lambda: bool(receiver.received))

    # then: delivered, signed, with the event's stable id
    [request] = receiver.received
    assert request.headers["webhook-id"] == f"evt_{Event.objects.get(type='order.created').id}"
    assert verified(secret, request)["data"]["order_id"] == str(order.order_id)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "succeeded" and delivery.attempts >= 3
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None and endpoint.is_active


def test_500_twice_then_200_records_three_attempts_and_the_api_lists_them(api):
    answers = {1: 500, 2: 500}
    with running_receiver(Receiver(answer=lambda n, r: answers.get(n, 200))) as receiver:
        endpoint, _ = webhooks.webhook_endpoint_create(
            url=receiver.url, event_types=["order.created"]
        )
        make_order(lines=[(make_product(stock=5), 1)])

        deliver_until(lambda: WebhookDelivery.objects.filter(status="succeeded").exists())

    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    body = api.get(f"webhooks/{endpoint.pk}/deliveries/").json()
    [delivery] = body["items"]
    assert delivery["attempts"] == 3 and delivery["status"] == "succeeded"
    assert [(t["number"], t["status_code"], t["succeeded"]) for t in delivery["tries"]] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert all(t["latency_ms"] >= 0 for t in delivery["tries"])
    assert api.get(f"webhooks/{endpoint.pk}/deliveries/?status=failed").json()["items"] == []

    # and a retry through the API sends it once more
    event_id = delivery["event_id"]
    assert api.post(f"webhooks/{endpoint.pk}/deliveries/{event_id}/retry/").status_code == 200
    with running_receiver(port=receiver.port) as again:
        deliver_until(lambda: bool(again.received))
    assert again.received[0].headers["webhook-id"] == f"evt_{event_id}"


def test_410_disables_the_endpoint_visibly():
    with running_receiver(Receiver(answer=lambda n, r: 410)) as receiver:
        endpoint, _ = webhooks.webhook_endpoint_create(url=receiver.url, event_types=["*"])
        make_order(lines=[(make_product(stock=5), 1)])
        deliver_until(lambda: not WebhookEndpoint.objects.get().is_active)

    endpoint.refresh_from_db()
    assert endpoint.disabled_reason == "the receiver answered 410 Gone"
    assert endpoint.disabled_at is not None
    assert len(receiver.received) == 1


def test_an_endpoint_failing_longer_than_the_limit_is_disabled(settings):
    settings.WEBHOOK_DISABLE_AFTER_HOURS = 0.0001  # 0.36 s
    with running_receiver(Receiver(answer=lambda n, r: 503)):
        pass
    with running_receiver(Receiver(answer=lambda n, r: 503)) as receiver:
        webhooks.webhook_endpoint_create(url=receiver.url, event_types=["order.created"])
        make_order(lines=[(make_product(stock=5), 1)])
        deliver_until(lambda: not WebhookEndpoint.objects.get().is_active)
    assert "failing for more than" in WebhookEndpoint.objects.get().disabled_reason


def test_rotate_secret_changes_the_signature():
    with running_receiver() as receiver:
        endpoint, old = webhooks.webhook_endpoint_create(url=receiver.url, event_types=["*"])
        product = make_product(stock=5)
        deliver_until(lambda: len(receiver.received) == Event.objects.count())
        _, new = webhooks.webhook_secret_rotate(endpoint_id=endpoint.pk)
        make_order(lines=[(product, 1)])
        deliver_until(lambda: not WebhookDelivery.objects.filter(status="pending").exists())

    last = receiver.received[-1]
    assert verified(new, last)
    with pytest.raises(WebhookVerificationError):
        verified(old, last)


def test_ssrf_a_name_resolving_to_loopback_is_refused_at_delivery_time(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with running_receiver() as receiver:
        webhooks.webhook_endpoint_create(
            url=f"http://localhost:{receiver.port}/hooks", event_types=["order.created"]
        )
        make_order(lines=[(make_product(stock=5), 1)])
        deliver_until(lambda: WebhookAttempt.objects.exists())

    assert receiver.received == []
    attempt = WebhookAttempt.objects.get()
    assert attempt.error.startswith("refused: localhost resolves to a loopback")
    assert Counter(WebhookDelivery.objects.values_list("status", flat=True)) == {"pending": 1}
