"""The event feed: id order, paging with ``after``, and never a missed event, even though
transactions commit out of id order."""

from __future__ import annotations

import random
import threading
import time

import pytest
from django.db import connection, connections, transaction

from fulfillment.models import Event
from fulfillment.selectors.events import event_feed
from tests.conftest import assert_error
from tests.factories import make_order, make_product


@pytest.mark.django_db
def test_feed_holds_back_the_events_of_a_transaction_still_open(api_as):
    # given: events written in a transaction that has not committed (the test's own)
    viewer = api_as("viewer")
    product = make_product(stock=10)
    make_order(lines=[(product, 1)])
    assert Event.objects.exists()

    # when / then: the feed does not hand them out (yet)
    body = viewer.get("events/").json()
    assert body == {"items": [], "next_after": None}


@pytest.mark.django_db(transaction=True)
def test_feed_hands_out_committed_events_in_order_and_filters_by_type(api_as):
    viewer = api_as("viewer")
    product = make_product(stock=10)
    orders = [make_order(lines=[(product, 1)]) for _ in range(3)]

    seen, after = [], 0
    while True:
        body = viewer.get(f"events/?after={after}&limit=2").json()
        assert len(body["items"]) <= 2
        seen += body["items"]
        if body["next_after"] is None:
            break
        assert body["next_after"] == body["items"][-1]["id"]
        after = body["next_after"]

    assert [e["id"] for e in seen] == sorted(Event.objects.values_list("id", flat=True))
    assert {"id", "type", "occurred_at", "data"} == set(seen[0])
    created = viewer.get("events/?type=order.created").json()["items"]
    assert [e["data"]["order_id"] for e in created] == [str(o.order_id) for o in orders]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "query",
    ["type=order.unknown", "after=-1", "limit=0", "limit=1001", "after=abc"],
)
def test_feed_refuses_bad_parameters_with_422(api_as, query):
    assert_error(api_as("viewer").get(f"events/?{query}"), 422)


@pytest.mark.django_db
def test_feed_needs_a_key_when_reads_are_closed(anon_api, settings):
    settings.ALLOW_ANONYMOUS_READS = False
    assert_error(anon_api.get("events/"), 401)


WRITERS = 8
PER_WRITER = 40


@pytest.mark.django_db(transaction=True)
def test_feed_never_skips_an_event_under_concurrent_writers_committing_out_of_order():
    # given: writers that insert an event, hold their transaction open for a random while and
    # commit (or roll back), so ids commit out of order; a reader paging all along
    committed: list[int] = []
    rolled_back: list[int] = []
    lock = threading.Lock()
    writers_done = threading.Event()
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(PER_WRITER):
                keep = rng.random() > 0.1
                try:
                    with transaction.atomic():
                        with connection.cursor() as cur:
                            cur.execute(
                                "INSERT INTO fulfillment_event (type, occurred_at, data) "
                                "VALUES ('stock.adjusted', now(), '{}') RETURNING id"
                            )
                            event_id = cur.fetchone()[0]
                        time.sleep(rng.uniform(0, 0.03))
                        if not keep:
                            raise _Rollback
                except _Rollback:
                    with lock:
                        rolled_back.append(event_id)
                    continue
                with lock:
                    committed.append(event_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    read: list[int] = []

    def reader() -> None:
        after = 0
        try:
            while True:
                done = writers_done.is_set()
                page = event_feed(after=after, type_=None, limit=50)
                read.extend(item["id"] for item in page.items)
                if page.next_after is not None:
                    after = page.next_after
                elif done:
                    return
                else:
                    time.sleep(0.002)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    reading = threading.Thread(target=reader)

    # when
    reading.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    writers_done.set()
    reading.join(60)

    # then: every committed event read exactly once, in increasing id order, nothing else
    assert not errors, errors
    assert len(committed) > WRITERS * PER_WRITER // 2 and rolled_back
    assert read == sorted(read), "the feed went backwards"
    assert len(read) == len(set(read)), "an event was handed out twice"
    assert set(read) == set(committed)
    assert not set(read) & set(rolled_back)


class _Rollback(Exception):
    pass
