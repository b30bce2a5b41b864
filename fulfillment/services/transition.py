"""The stage statement: one order's status change with its stock effect, its ledger rows and
the next stage job, as ONE server-side prepared statement.

Why raw SQL: a stage is the pipeline's hot path. As one statement the order row and the stock
rows are locked only until the commit that follows it (never across round trips to Python), and
preparing it once per connection means each stage pays for executing it, not for parsing and
planning six CTEs again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any
from uuid import UUID

import psycopg.errors
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from fulfillment import lifecycle, metrics, queue
from fulfillment.errors import (
    FulfillmentError,
    InvalidStockChange,
    InvalidTransition,
    NotFound,
    VersionConflict,
)
from fulfillment.lifecycle import OrderStatus, sql_literal
from fulfillment.models import Order
from fulfillment.services.inventory import stock_change_ctes
from fulfillment.services.simulation import stage_delay

# Lock order, as everywhere: the order row (``moved``), then the stock rows of its lines in
# primary-key order (``locked``: it reads ``lines``, which reads ``moved``, so the order row is
# always locked first). The stock change is the inventory service's own (``stock_change_ctes``):
# deltas applied only where every invariant still holds, ``version`` bumped; then one ledger row
# per line with the balances after the change. When a line could not be changed the statement
# raises (``fulfillment_stock_effect_failed``), which undoes all of it, order row included. The
# next stage job is deferred on this connection (``queue.defer_job_sql``), so it commits or rolls
# back with the transition. ``ev`` writes the ``order.<target>`` event from ``moved``: a stage that
# found nothing to do writes none.
TRANSITION_BODY = (
    f"""
WITH moved AS (
    UPDATE fulfillment_order SET
        status = %(target)s,
        status_changed_at = %(now)s,
        version = version + 1,
        {{timestamp_field}} = %(now)s,
        failure_reason = CASE WHEN %(target)s = {sql_literal(OrderStatus.FAILED)} THEN %(reason)s ELSE failure_reason END,
        tracking_number = CASE WHEN %(tracking)s <> '' THEN %(tracking)s
            WHEN %(target)s = {sql_literal(OrderStatus.SHIPPED)}
            THEN 'TRK' || lpad(id::text, 10, '0') || upper(left(replace(order_id::text, '-', ''), 6))
            ELSE tracking_number END
    WHERE {{key}} = %(key)s
      AND status = ANY(%(sources)s)
      AND (%(expected_status)s::varchar IS NULL OR status = %(expected_status)s)
      AND (%(expected_version)s::int IS NULL OR version = %(expected_version)s)
    RETURNING id, order_id, version, tracking_number, failure_reason
), ev AS (
    INSERT INTO fulfillment_event (type, occurred_at, data)
    SELECT 'order.' || %(target)s, %(now)s, jsonb_strip_nulls(jsonb_build_object(
        'order_id', moved.order_id, 'status', %(target)s, 'version', moved.version,
        'tracking_number', CASE WHEN %(target)s = {sql_literal(OrderStatus.SHIPPED)}
            THEN moved.tracking_number END,
        'reason', CASE WHEN %(target)s IN ({sql_literal(OrderStatus.FAILED)},
            {sql_literal(OrderStatus.CANCELLED)}) THEN %(reason)s END,
        'cancelled_by', CASE WHEN %(target)s = {sql_literal(OrderStatus.CANCELLED)}
            THEN %(actor)s END))
    FROM moved
), lines AS (
    SELECT l.product_id, %(on_hand_sign)s::int * l.quantity AS oh, -l.quantity AS rs
    FROM fulfillment_orderline l JOIN moved ON l.order_id = moved.id
    WHERE %(stock_kind)s::varchar IS NOT NULL
), """
    + stock_change_ctes(deltas="lines")
    + """, ledger AS (
    INSERT INTO fulfillment_stockmovement
        (product_id, kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after,
         order_id, reason, actor, created_at)
    SELECT upd.product_id, %(stock_kind)s, upd.oh, upd.rs, upd.on_hand, upd.reserved,
           moved.id, %(stock_reason)s, %(actor)s, now()
    FROM upd CROSS JOIN moved
    ORDER BY upd.product_id
), next_job AS (
    SELECT ("""
    + queue.defer_job_sql(
        args="jsonb_build_object('order_pk', moved.id, 'expected_status', %(target)s::text)",
        scheduled_at="%(job_scheduled_at)s",
    )
    + """)[1] AS job_id
    FROM moved WHERE %(defer_next)s
)
SELECT moved.id,
       (SELECT job_id FROM next_job),
       CASE WHEN (SELECT count(*) FROM upd) <> (SELECT count(*) FROM lines)
           THEN fulfillment_stock_effect_failed(json_build_object(
               'lines', (SELECT array_agg(product_id) FROM lines),
               'changed', (SELECT array_agg(product_id) FROM upd))::text)
       END
FROM moved
"""
)

# The parameters of the prepared statement, in order, with their types.
TRANSITION_PARAMS: tuple[tuple[str, str], ...] = (
    ("target", "varchar"),
    ("now", "timestamptz"),
    ("reason", "varchar"),
    ("tracking", "varchar"),
    ("key", "{key_type}"),
    ("sources", "varchar[]"),
    ("expected_status", "varchar"),
    ("expected_version", "int"),
    ("stock_kind", "varchar"),
    ("on_hand_sign", "int"),
    ("stock_reason", "varchar"),
    ("actor", "varchar"),
    ("defer_next", "boolean"),
    ("job_queue", "varchar"),
    ("job_task", "varchar"),
    ("job_priority", "int"),
    ("job_scheduled_at", "timestamptz"),
)
# What a stage sends: the leading comment matters, as pghistory adds its audit context to every
# statement that does not start with SELECT, and this one must carry it to the history triggers
# of the order and stock rows. ``lock_timeout`` and the plan choice are local to the transaction
# (the implicit one of this statement when the caller has none); the generic plan is the point
# of preparing (the custom plans of the first executions would each be planned again).
TRANSITION_EXEC = """-- order transition
SELECT set_config('lock_timeout', %(lock_timeout)s, true),
       set_config('plan_cache_mode', 'force_generic_plan', true);
EXECUTE {name}({args})"""

STOCK_MESSAGE = "fulfillment:stock_effect_failed"


@dataclass(frozen=True)
class Moved:
    order_pk: int
    next_job_id: int | None


@cache
def prepare_sql(timestamp_field: str, key: str) -> tuple[str, str, str]:
    """(name, PREPARE statement, EXECUTE statement) of one variant of the transition."""
    name = f"fulfillment_transition_{timestamp_field}_{key}"
    body = TRANSITION_BODY.format(timestamp_field=timestamp_field, key=key)
    types = []
    for i, (param, type_) in enumerate(TRANSITION_PARAMS, start=1):
        body = body.replace(f"%({param})s", f"${i}")
        types.append(type_.format(key_type="bigint" if key == "id" else "uuid"))
    assert "%(" not in body, "every parameter of the transition must be listed"
    prepare = f"PREPARE {name} ({', '.join(types)}) AS {body}"
    execute = TRANSITION_EXEC.format(
        name=name, args=", ".join(f"%({param})s" for param, _ in TRANSITION_PARAMS)
    )
    return name, prepare, execute


def _prepared(timestamp_field: str, key: str) -> str:
    """The EXECUTE statement of a transition variant, preparing it first on this connection if
    it is not yet (prepared statements live as long as the database session)."""
    name, prepare, execute = prepare_sql(timestamp_field, key)
    connection.ensure_connection()
    raw = connection.connection
    done: set[str] | None = getattr(raw, "_fulfillment_prepared", None)
    if done is None:
        done = set()
        raw._fulfillment_prepared = done
    if name not in done:
        with connection.cursor() as cur:
            cur.execute(prepare)
        done.add(name)
    return execute


def transition_row(
    *,
    target: str,
    actor: str,
    order_pk: int | None = None,
    order_id: UUID | None = None,
    expected_status: str | None = None,
    expected_version: int | None = None,
    reason: str = "",
    lock_timeout: str = "0",
    tracking_number: str = "",
    defer_next: bool = False,
) -> Moved | None:
    """One statement (its own transaction unless the caller has one): a conditional
    ``UPDATE ... RETURNING`` locks the order row, checks that it may move to ``target`` (and is
    in ``expected_status`` / at ``expected_version``), moves it, sets the stage timestamp and
    ``status_changed_at`` and bumps ``version``; for a move with a stock effect (ship, release)
    it locks the stock rows of the order's lines in primary-key order, changes them and writes
    the ledger rows; with ``defer_next`` it defers the job of the next stage (scheduled after
    its simulated delay). None when no order row qualified (nothing was written); raises
    InvalidStockChange, with nothing written, when a line's stock could not be changed."""
    if order_pk is None and order_id is None:
        raise TypeError("order_pk or order_id is required")
    variant = (lifecycle.STAGE_TIMESTAMPS[target], "id" if order_pk is not None else "order_id")
    now = timezone.now()
    defer_next = defer_next and target in lifecycle.NEXT_STAGE
    scheduled_at = None
    if defer_next:
        delay = stage_delay(order_pk=order_pk or 0, stage=lifecycle.NEXT_STAGE[target])
        scheduled_at = now + timedelta(seconds=delay) if delay > 0 else None
    stock_kind, on_hand_sign = lifecycle.STOCK_EFFECT.get(target, (None, 0))
    params = {
        "lock_timeout": lock_timeout,
        "target": target,
        "now": now,
        "reason": reason[:255],
        "tracking": tracking_number[:64],
        "key": order_pk if order_pk is not None else order_id,
        "sources": lifecycle.SOURCES.get(target, []),
        "expected_status": expected_status,
        "expected_version": expected_version,
        "stock_kind": stock_kind,
        "on_hand_sign": on_hand_sign,
        "stock_reason": (reason or target) if stock_kind == "release" else "",
        "actor": actor,
        "defer_next": defer_next,
        **queue.stage_job_params(),
        "job_scheduled_at": scheduled_at,
    }
    try:
        try:
            row = _execute(_prepared(*variant), params)
        except DatabaseError as exc:
            # The session lost its prepared statements (``DEALLOCATE ALL``, ``DISCARD ALL``):
            # prepare again and run once more, unless a failed statement spoilt a transaction.
            if connection.in_atomic_block or not isinstance(
                exc.__cause__, psycopg.errors.InvalidSqlStatementName
            ):
                raise
            connection.connection._fulfillment_prepared = set()
            row = _execute(_prepared(*variant), params)
    except DatabaseError as exc:
        diag = getattr(exc.__cause__, "diag", None)
        if diag is None or diag.message_primary != STOCK_MESSAGE:
            raise
        raise InvalidStockChange(
            "the stock effect of the move would leave stock negative or reserved above on hand",
            target=target,
            **json.loads(diag.message_detail or "{}"),
        ) from None
    if row is None:
        return None
    # Counted once the move is committed (at once in autocommit).
    transaction.on_commit(lambda: metrics.stage_transition(target))
    return Moved(int(row[0]), row[1])


def _execute(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        # Several statements, several results (pghistory may already have moved past some): the
        # last one is the transition's.
        while cur.nextset():
            pass
        return cur.fetchone()  # type: ignore[no-any-return]


def explain_refusal(
    *, target: str, order_pk: int | None, order_id: UUID | None, expected_version: int | None
) -> FulfillmentError:
    """Why :func:`transition_row` changed nothing (runs only on that path)."""
    qs = Order.objects.all()
    qs = qs.filter(pk=order_pk) if order_pk is not None else qs.filter(order_id=str(order_id))
    order = qs.first()
    if order is None:
        return NotFound("order", order_id if order_id is not None else order_pk)
    if expected_version is not None and order.version != expected_version:
        return VersionConflict("order", order.order_id, expected_version, order.version)
    return InvalidTransition(order.order_id, order.status, target)
