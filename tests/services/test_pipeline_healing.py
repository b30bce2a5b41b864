"""Self-healing: transient-error retries, stale-order recovery."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from fulfillment.lifecycle import stale_q
from fulfillment.models import Order, StockLevel
from fulfillment.services import stale
from tests.factories import make_order, make_product
from tests.pipeline_support import jobs, run_worker_until_idle
from tests.services.test_pipeline import assert_ledger_matches_stock, ledger_kinds

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_queue")]
Status = Order.Status


@pytest.fixture
def serialization_failures():
    """A real PostgreSQL error: moving an order to processing raises serialization_failure
    (SQLSTATE 40001) while the test's budget of failures lasts (``-1``: forever)."""
    with connection.cursor() as cur:
        cur.execute(
            """
            CREATE TABLE test_failure_budget (n int NOT NULL);
            INSERT INTO test_failure_budget VALUES (0);
            CREATE SEQUENCE test_failure_seq;
            CREATE FUNCTION test_serialization_failure() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE budget int;
            BEGIN
                SELECT n INTO budget FROM test_failure_budget;
                -- nextval() survives the rollback of the failing transaction
                IF budget >= 0 AND nextval('test_failure_seq') > budget THEN RETURN NEW; END IF;
                RAISE EXCEPTION 'simulated conflict' USING ERRCODE = '40001';
            END $$;
            CREATE TRIGGER test_serialization_failure BEFORE UPDATE ON fulfillment_order
            FOR EACH ROW WHEN (NEW.status = 'processing')
            EXECUTE FUNCTION test_serialization_failure();
            """
        )

    def set_budget(n: int) -> None:
        with connection.cursor() as cur:
            cur.execute("UPDATE test_failure_budget SET n = %s", [n])

    yield set_budget
    with connection.cursor() as cur:
        cur.execute(
            "DROP TRIGGER test_serialization_failure ON fulfillment_order;"
            "DROP FUNCTION test_serialization_failure(); DROP TABLE test_failure_budget;"
            "DROP SEQUENCE test_failure_seq;"
        )


def test_transient_database_errors_are_retried_until_the_stage_succeeds(
    settings, serialization_failures
):
    settings.PIPELINE_MAX_RETRIES = 5
    serialization_failures(2)
    order = make_order(lines=[(make_product(stock=5), 1)])

    run_worker_until_idle()

    order.refresh_from_db()
    assert order.status == Status.DELIVERED
    first = jobs()[0]
    assert first["args"]["expected_status"] == "pending"
    assert (first["status"], first["attempts"]) == ("succeeded", 3)
    assert ledger_kinds(order) == ["reserve", "ship"]


def test_stage_job_that_exhausts_its_retries_fails_the_order_and_releases_stock(
    settings, serialization_failures
):
    settings.PIPELINE_MAX_RETRIES = 2
    serialization_failures(-1)
    product = make_product(stock=5)
    order = make_order(lines=[(product, 3)])

    run_worker_until_idle()

    order.refresh_from_db()
    assert order.status == Status.FAILED
    assert order.failure_reason.startswith("stage job failed after 2 retries: ")
    assert "simulated conflict" in order.failure_reason
    assert [(j["status"], j["attempts"]) for j in jobs()] == [("failed", 3)]
    assert ledger_kinds(order) == ["reserve", "release"]
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved) == (5, 0)


def _make_stuck(order: Order, *, minutes: int = 30) -> None:
    """The order's job vanished and it has not moved for a while."""
    with connection.cursor() as cur:
        cur.execute(
            "DELETE FROM procrastinate_jobs WHERE (args->>'order_pk')::bigint = %s", [order.pk]
        )
    Order.objects.filter(pk=order.pk).update(
        status_changed_at=timezone.now() - timedelta(minutes=minutes)
    )


def test_stale_order_without_a_job_gets_its_stage_job_again_and_then_moves(settings):
    # given
    order = make_order(lines=[(make_product(stock=5), 1)])
    fresh = make_order(lines=[(make_product(stock=5), 1)])
    _make_stuck(order)
    assert list(Order.objects.filter(stale_q()).values_list("pk", flat=True)) == [order.pk]

    # when
    result = stale.stale_orders_heal(actor="test")
    again = stale.stale_orders_heal(actor="test")

    # then: one recovery, one new job; the second run sees the live job and leaves it
    assert result.redeferred == [str(order.order_id)] and not result.failed
    assert again.skipped_live_job == [str(order.order_id)] and not again.redeferred
    order.refresh_from_db()
    assert order.recovery_count == 1
    pending_jobs = [j for j in jobs() if j["args"]["order_pk"] == order.pk]
    assert [(j["status"], j["args"]["expected_status"]) for j in pending_jobs] == [
        ("todo", "pending")
    ]
    run_worker_until_idle()
    order.refresh_from_db()
    fresh.refresh_from_db()
    assert order.status == fresh.status == Status.DELIVERED
    assert ledger_kinds(order) == ["reserve", "ship"]


def test_stale_order_fails_after_the_maximum_recoveries_and_releases_stock(settings):
    # given
    settings.STALE_MAX_RECOVERIES = 2
    product = make_product(stock=5)
    order = make_order(lines=[(product, 2)])

    # when: the order keeps losing its job
    outcomes = []
    for _ in range(3):
        _make_stuck(order)
        result = stale.stale_orders_heal(actor="test")
        outcomes.append((len(result.redeferred), len(result.failed)))

    # then
    assert outcomes == [(1, 0), (1, 0), (0, 1)]
    order.refresh_from_db()
    assert order.status == Status.FAILED
    assert order.recovery_count == 2
    assert order.failure_reason == "stale in pending: no progress after 2 recoveries"
    assert ledger_kinds(order) == ["reserve", "release"]
    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved) == (5, 0)
    assert_ledger_matches_stock()
    assert not stale.stale_orders_heal(actor="test").checked


def test_stale_check_job_runs_in_the_worker_and_records_its_context():
    order = make_order(lines=[(make_product(stock=5), 1)])
    _make_stuck(order)
    from fulfillment.tasks import heal_stale_orders

    heal_stale_orders.defer(timestamp=0)
    run_worker_until_idle(queues=("maintenance", "pipeline"))

    order.refresh_from_db()
    assert order.status == Status.DELIVERED and order.recovery_count == 1
