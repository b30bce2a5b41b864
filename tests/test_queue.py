"""The Procrastinate internals ``fulfillment.queue`` relies on are still what it was written
against; and every way it enqueues a stage job writes the same job."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from django.db import connection, transaction
from procrastinate.contrib.django import app

from fulfillment import queue, tasks
from fulfillment.lifecycle import OrderStatus
from fulfillment.services import stages
from tests.factories import make_order, make_product

pytestmark = pytest.mark.django_db


def _rows(sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])
        return list(cur.fetchall())


def test_the_installed_procrastinate_is_the_checked_version():
    """An upgrade fails here first: re-check the internals listed in ``fulfillment.queue`` (the
    tests below), then move ``CHECKED_VERSION``."""
    assert version("procrastinate") == queue.CHECKED_VERSION


def test_defer_function_and_job_type_have_the_signature_the_inline_sql_uses():
    assert _rows(
        "SELECT pg_get_function_identity_arguments(p.oid), pg_get_function_result(p.oid) "
        "FROM pg_proc p WHERE p.proname = 'procrastinate_defer_jobs_v1'"
    ) == [("jobs procrastinate_job_to_defer_v1[]", "bigint[]")]
    assert _rows(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod) FROM pg_type t "
        "JOIN pg_attribute a ON a.attrelid = t.typrelid "
        "WHERE t.typname = 'procrastinate_job_to_defer_v1' AND a.attnum > 0 ORDER BY a.attnum"
    ) == [
        ("queue_name", "character varying"),
        ("task_name", "character varying"),
        ("priority", "integer"),
        ("lock", "text"),
        ("queueing_lock", "text"),
        ("args", "jsonb"),
        ("scheduled_at", "timestamp with time zone"),
    ]


def test_the_job_and_event_columns_the_reads_use_exist():
    columns = set(
        _rows(
            "SELECT table_name::text, column_name::text FROM information_schema.columns "
            "WHERE table_name IN ('procrastinate_jobs', 'procrastinate_events')"
        )
    )
    used = {
        ("procrastinate_jobs", c)
        for c in ("id", "task_name", "status", "args", "queue_name", "scheduled_at")
    } | {("procrastinate_events", c) for c in ("job_id", "type", "at")}
    assert used <= columns


def test_task_decorators_use_the_queue_names_and_the_stage_job_defaults():
    task = app.tasks[queue.ADVANCE_ORDER_TASK]
    assert task is tasks.advance_order
    assert (task.queue, task.priority, task.lock, task.queueing_lock) == (
        queue.PIPELINE_QUEUE,
        queue.ADVANCE_ORDER_PRIORITY,
        None,
        None,
    )
    assert {t.queue for t in app.tasks.values() if t.name.startswith("fulfillment.")} == {
        queue.PIPELINE_QUEUE,
        queue.MAINTENANCE_QUEUE,
        queue.PROBE_QUEUE,
        queue.WEBHOOKS_QUEUE,
    }


def test_the_stage_statement_defers_the_same_job_as_a_batch_deferral():
    # given: an order whose first stage job came from the intake statement
    order = make_order(lines=[(make_product(stock=5), 1)])

    # when: the stage statement defers the next job, and a batch deferral writes the same one
    outcome = stages.order_advance(
        order_pk=order.pk, expected_status=OrderStatus.PENDING, actor="test"
    )
    with transaction.atomic():
        (batch_id,) = stages.stage_jobs_defer([(order.pk, OrderStatus.PROCESSING)])

    # then
    fields = "queue_name, task_name, priority, lock, queueing_lock, args, status"
    from_stage, from_batch = _rows(
        f"SELECT {fields} FROM procrastinate_jobs WHERE id = ANY(%s) ORDER BY id",
        [[outcome.next_job_id, batch_id]],
    )
    assert from_stage == from_batch
    assert from_stage[:2] == (queue.PIPELINE_QUEUE, queue.ADVANCE_ORDER_TASK)


@pytest.mark.django_db(transaction=True)
def test_the_worker_pool_checks_only_connections_that_sat_idle():
    """``manage.py procrastinate worker`` runs on :func:`queue.worker_connector`; its pool hands a
    connection reused at once out unchecked, and checks one idle for longer."""
    import asyncio

    from django.db import connections

    connections.close_all()  # the pool opens its own connections to the test database
    connector = app.connector.get_worker_connector()
    assert connector._pool_factory is queue._worker_pool_factory  # installed by on_app_ready

    checks: list[object] = []

    async def run() -> None:
        real = queue.AsyncConnectionPool.check_connection

        async def counting(conn: object) -> None:
            checks.append(conn)
            await real(conn)  # type: ignore[arg-type]

        queue.AsyncConnectionPool.check_connection = counting  # type: ignore[method-assign]
        try:
            await connector.open_async()
            pool = connector._async_pool
            assert pool is not None and pool._check is queue._check_if_idle
            for _ in range(10):  # fresh or just returned: handed out as they are
                assert await connector.execute_query_one_async("SELECT 1 AS one") == {"one": 1}
            after_busy = len(checks)
            for conn in list(queue._returned_at):
                queue._returned_at[conn] -= queue.POOL_CHECK_IDLE_SECONDS + 1  # sat idle
            assert await connector.execute_query_one_async("SELECT 1 AS one") == {"one": 1}
        finally:
            queue.AsyncConnectionPool.check_connection = real  # type: ignore[method-assign]
            await connector.close_async()
        assert after_busy == 0, "a connection reused at once was checked"
        assert len(checks) == after_busy + 1, "an idle connection went out unchecked"

    asyncio.run(run())
