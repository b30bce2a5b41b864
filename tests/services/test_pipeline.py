"""The stage jobs, run by a real Procrastinate worker against the real PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from pghistory.models import Events
from procrastinate.contrib.django import app

from fulfillment.errors import InvalidStockChange, InvalidTransition
from fulfillment.models import Order, StockLevel, StockMovement
from fulfillment.queue import ADVANCE_ORDER_TASK
from fulfillment.services import simulation, stages
from fulfillment.services.reconciliation import inventory_reconcile
from tests.factories import make_order, make_product
from tests.pipeline_support import jobs, run_worker_until_idle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_queue")]
Status = Order.Status


def ledger_kinds(order: Order) -> list[str]:
    return list(
        StockMovement.objects.filter(order=order).order_by("id").values_list("kind", flat=True)
    )


def assert_ledger_matches_stock() -> None:
    for level in StockLevel.objects.all():
        sums = StockMovement.objects.filter(product_id=level.product_id).aggregate(
            oh=Sum("on_hand_delta"), rs=Sum("reserved_delta")
        )
        assert (level.on_hand, level.reserved) == (sums["oh"], sums["rs"])


def test_order_reaches_delivered_through_a_real_worker():
    # given
    product = make_product(stock=10)
    order = make_order(lines=[(product, 3)])

    # when
    run_worker_until_idle()

    # then
    order.refresh_from_db()
    assert order.status == Status.DELIVERED
    assert order.version == 4
    assert order.processing_at and order.shipped_at and order.delivered_at
    assert order.status_changed_at == order.delivered_at
    assert order.tracking_number.startswith("TRK")
    assert ledger_kinds(order) == ["reserve", "ship"]
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved) == (7, 0)
    assert_ledger_matches_stock()
    assert inventory_reconcile().ok
    assert [j["status"] for j in jobs()] == ["succeeded"] * 3


def test_every_audit_event_a_job_writes_carries_task_name_and_job_id():
    order = make_order(lines=[(make_product(stock=5), 1)])

    run_worker_until_idle()

    job_ids = {j["id"] for j in jobs()}
    updates = [e for e in Events.objects.tracks(order) if e.pgh_label == "update"]
    assert len(updates) == 3
    for event in updates:
        assert event.pgh_context["task"] == ADVANCE_ORDER_TASK
        assert event.pgh_context["job_id"] in job_ids


@pytest.mark.parametrize(
    ("stage", "failed_from"), [("processing", Status.PENDING), ("shipped", Status.PROCESSING)]
)
def test_simulated_failure_at_a_stage_fails_the_order_and_releases_once(
    settings, stage, failed_from
):
    # given
    settings.PIPELINE_FAILURE_RATES = {**settings.PIPELINE_FAILURE_RATES, stage: 1.0}
    product = make_product(stock=10)
    order = make_order(lines=[(product, 4)])

    # when
    run_worker_until_idle()

    # then
    order.refresh_from_db()
    assert order.status == Status.FAILED
    assert order.failure_reason == f"simulated failure in stage {stage}"
    assert order.failed_at is not None
    assert (order.processing_at is not None) == (failed_from == Status.PROCESSING)
    assert ledger_kinds(order) == ["reserve", "release"]
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved) == (10, 0)
    assert_ledger_matches_stock()
    assert not [j for j in jobs() if j["status"] == "todo"]


def test_seeded_failures_are_a_deterministic_function_of_order_and_stage(settings):
    settings.PIPELINE_RANDOM_SEED = "42"
    settings.PIPELINE_FAILURE_RATES = {"processing": 0.5, "shipped": 0.5, "delivered": 0.0}

    first = [simulation.stage_fails(order_pk=pk, stage="processing") for pk in range(200)]
    again = [simulation.stage_fails(order_pk=pk, stage="processing") for pk in range(200)]

    assert first == again
    assert 60 < sum(first) < 140


def test_stage_rolled_back_at_commit_leaves_no_next_job():
    """The next stage is deferred through Django's connection: when the stage's transaction
    rolls back (here a deferred constraint trigger fails at COMMIT), its next job goes too."""
    # given: commits that move an order to processing fail
    with connection.cursor() as cur:
        cur.execute(
            """
            CREATE FUNCTION test_refuse_processing() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
            CREATE CONSTRAINT TRIGGER test_refuse_processing AFTER UPDATE ON fulfillment_order
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
            WHEN (NEW.status = 'processing') EXECUTE FUNCTION test_refuse_processing();
            """
        )
    try:
        product = make_product(stock=5)
        order = make_order(lines=[(product, 2)])

        # when
        run_worker_until_idle()
    finally:
        with connection.cursor() as cur:
            cur.execute(
                "DROP TRIGGER test_refuse_processing ON fulfillment_order;"
                "DROP FUNCTION test_refuse_processing();"
            )

    # then: the stage job failed, the order did not move and no processing->shipped job exists
    order.refresh_from_db()
    assert order.status == Status.PENDING
    assert [(j["args"]["expected_status"], j["status"]) for j in jobs()] == [("pending", "failed")]
    assert ledger_kinds(order) == ["reserve"]


def test_deferral_inside_a_worker_joins_the_django_transaction():
    """With the app's connector swapped for the worker's psycopg pool (as in ``manage.py
    procrastinate worker``), a stage deferral still rolls back with Django's transaction."""
    order = make_order(lines=[(make_product(stock=5), 1)])
    before = jobs()

    with app.replace_connector(app.connector.get_worker_connector()), transaction.atomic():
        stages.stage_jobs_defer([(order.pk, Status.PENDING)])
        transaction.set_rollback(True)

    assert jobs() == before


def test_shipping_stage_is_one_autocommit_statement_that_writes_nothing_if_stock_refuses():
    """Transition, stock effect, ledger rows and next job are one statement: when the stock of a
    line cannot be shipped (here its reservation vanished behind the services' back), the
    statement raises and nothing of the stage is left, order row and next job included."""
    # given: an order in processing whose product lost its reservation
    product = make_product(stock=5)
    order = make_order(lines=[(product, 2)])
    stages.order_transition(order_pk=order.pk, target=Status.PROCESSING, actor="test")
    StockLevel.objects.filter(product=product).update(reserved=0)
    jobs_before = jobs()

    # when
    with pytest.raises(InvalidStockChange):
        stages.order_advance(order_pk=order.pk, expected_status=Status.PROCESSING, actor="t")

    # then
    order.refresh_from_db()
    assert order.status == Status.PROCESSING and order.shipped_at is None
    assert ledger_kinds(order) == ["reserve"]
    assert StockLevel.objects.get(product=product).on_hand == 5
    assert jobs() == jobs_before
    assert not connection.in_atomic_block


def test_stage_prepares_its_statement_again_when_the_session_lost_it():
    # given: the stage statement was prepared on this connection, then deallocated
    product = make_product(stock=5)
    first, second = (make_order(lines=[(product, 1)]) for _ in range(2))
    stages.order_advance(order_pk=first.pk, expected_status=Status.PENDING, actor="t")
    with connection.cursor() as cur:
        cur.execute("DEALLOCATE ALL")

    # when
    outcome = stages.order_advance(order_pk=second.pk, expected_status=Status.PENDING, actor="t")

    # then
    assert outcome.action == "advanced"
    second.refresh_from_db()
    assert second.status == Status.PROCESSING


def test_rerunning_a_stage_job_for_an_order_past_that_stage_changes_nothing():
    # given: a delivered order
    product = make_product(stock=5)
    order = make_order(lines=[(product, 2)])
    run_worker_until_idle()
    order.refresh_from_db()
    before = (order.status, order.version, order.status_changed_at, ledger_kinds(order))
    job_count = len(jobs())

    # when: every stage job runs again
    with transaction.atomic():
        stages.stage_jobs_defer(
            [(order.pk, s) for s in (Status.PENDING, Status.PROCESSING, Status.SHIPPED)]
        )
    run_worker_until_idle()

    # then
    order.refresh_from_db()
    assert (order.status, order.version, order.status_changed_at, ledger_kinds(order)) == before
    assert len(jobs()) == job_count + 3
    assert all(j["status"] == "succeeded" for j in jobs())
    assert stages.order_advance(
        order_pk=order.pk, expected_status=Status.PROCESSING, actor="test"
    ) == stages.StageOutcome(order.pk, Status.PROCESSING, "skipped", Status.DELIVERED)


def test_cancel_racing_stage_jobs_releases_or_ships_each_order_exactly_once():
    # given
    product = make_product(stock=1000)
    orders = [make_order(lines=[(product, 2)]) for _ in range(40)]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            run_worker_until_idle(concurrency=4)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    # when: once the worker is moving orders forward, cancel them from the other end
    thread = threading.Thread(target=worker)
    thread.start()
    while not Order.objects.exclude(status=Status.PENDING).exists():
        assert thread.is_alive() or errors, "worker stopped before moving any order"
        time.sleep(0.005)
    cancelled = 0
    for order in reversed(orders):
        try:
            stages.order_transition(order_pk=order.pk, target=Status.CANCELLED, actor="test")
            cancelled += 1
        except InvalidTransition:
            pass
    thread.join(timeout=60)
    assert not errors and not thread.is_alive()
    run_worker_until_idle()

    # then: each order either was cancelled (one release, no ship) or shipped (no release)
    for order in orders:
        order.refresh_from_db()
        kinds = ledger_kinds(order)
        if order.status == Status.CANCELLED:
            assert kinds == ["reserve", "release"]
        else:
            assert order.status == Status.DELIVERED
            assert kinds == ["reserve", "ship"]
    assert Order.objects.filter(status=Status.CANCELLED).count() == cancelled > 0
    level = StockLevel.objects.get(product=product)
    delivered = Order.objects.filter(status=Status.DELIVERED).count()
    assert delivered + cancelled == len(orders)
    assert (level.on_hand, level.reserved) == (1000 - 2 * delivered, 0)
    assert_ledger_matches_stock()


def test_stage_jobs_are_scheduled_after_the_simulated_delay_not_slept_through(settings):
    # given: the default delay ranges
    settings.PIPELINE_DELAYS = {"processing": (2, 5), "shipped": (3, 8), "delivered": (1, 2)}
    product = make_product(stock=10)

    # when
    orders = [make_order(lines=[(product, 1)]) for _ in range(10)]

    # then: each first-stage job waits 2-5 s in the queue; no worker is busy with it
    with connection.cursor() as cur:
        cur.execute(
            "SELECT EXTRACT(EPOCH FROM scheduled_at - now()) FROM procrastinate_jobs "
            "WHERE task_name = %s",
            [ADVANCE_ORDER_TASK],
        )
        waits = [float(r[0]) for r in cur.fetchall()]
    assert len(waits) == len(orders)
    assert all(1.0 < w <= 5.0 for w in waits), waits
    assert len({round(w, 2) for w in waits}) > 1
