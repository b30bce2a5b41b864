"""Order lifecycle: the one function every status change goes through, the stage jobs and
stale-order healing.

pending --> processing --> shipped --> delivered
   |             |
   +--> cancelled (before shipping)
   +--> failed    (simulated failure, retries exhausted, stale timeout)

Each stage is one Procrastinate job (``fulfillment.tasks.advance_order``) that runs
:func:`order_advance`: one transaction that locks the order row, checks the status the job
expects, applies the transition and its stock effect, and defers the next stage with
``schedule_in`` equal to the simulated delay. The next job is deferred through Django's
connection (:func:`_job_manager`), never through the worker's own connector, so it commits or
rolls back with the stage.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any
from uuid import UUID

import psycopg.errors
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from procrastinate.contrib.django.django_connector import DjangoConnector
from procrastinate.manager import JobManager

from fulfillment.errors import (
    FulfillmentError,
    InvalidStockChange,
    InvalidTransition,
    NotFound,
    VersionConflict,
)
from fulfillment.models import Order, StockMovement
from fulfillment.services import inventory

Status = Order.Status

ALLOWED: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset({Status.PROCESSING, Status.CANCELLED, Status.FAILED}),
    Status.PROCESSING: frozenset({Status.SHIPPED, Status.CANCELLED, Status.FAILED}),
    Status.SHIPPED: frozenset({Status.DELIVERED}),
}
TIMESTAMP_FIELD: dict[str, str] = {
    Status.PROCESSING: "processing_at",
    Status.SHIPPED: "shipped_at",
    Status.DELIVERED: "delivered_at",
    Status.CANCELLED: "cancelled_at",
    Status.FAILED: "failed_at",
}
# The stage a job moves an order into, keyed by the status the job expects.
NEXT_STAGE: dict[str, str] = {
    Status.PENDING: Status.PROCESSING,
    Status.PROCESSING: Status.SHIPPED,
    Status.SHIPPED: Status.DELIVERED,
}
ADVANCE_TASK = "fulfillment.advance_order"


# Each status a target can be reached from.
SOURCES: dict[str, list[str]] = {}
for _source, _targets in ALLOWED.items():
    for _target in _targets:
        SOURCES.setdefault(_target, []).append(_source)

# One statement per transition, stock effect included. It is a server-side prepared statement
# (``PREPARE`` once per connection and variant, see :func:`_prepared`), so each stage pays for
# executing it, not for parsing and planning six CTEs again.
#
# Lock order, as everywhere: the order row (``moved``), then the stock rows of its lines in
# primary-key order (``locked``: it reads ``lines``, which reads ``moved``, so the order row is
# always locked first). The stock change is the inventory service's own
# (``inventory.stock_change_ctes``): deltas applied only where every invariant still holds,
# ``version`` bumped; then one ledger row per line with the balances after the change. When a
# line could not be changed the statement raises (``fulfillment_stock_effect_failed``), which
# undoes all of it, order row included.
_TRANSITION_BODY = (
    """
WITH moved AS (
    UPDATE fulfillment_order SET
        status = %(target)s,
        status_changed_at = %(now)s,
        version = version + 1,
        {timestamp_field} = %(now)s,
        failure_reason = CASE WHEN %(target)s = 'failed' THEN %(reason)s ELSE failure_reason END,
        tracking_number = CASE WHEN %(tracking)s <> '' THEN %(tracking)s
            WHEN %(target)s = 'shipped'
            THEN 'TRK' || lpad(id::text, 10, '0') || upper(left(replace(order_id::text, '-', ''), 6))
            ELSE tracking_number END
    WHERE {key} = %(key)s
      AND status = ANY(%(sources)s)
      AND (%(expected_status)s::varchar IS NULL OR status = %(expected_status)s)
      AND (%(expected_version)s::int IS NULL OR version = %(expected_version)s)
    RETURNING id
), lines AS (
    SELECT l.product_id, %(on_hand_sign)s::int * l.quantity AS oh, -l.quantity AS rs
    FROM fulfillment_orderline l JOIN moved ON l.order_id = moved.id
    WHERE %(stock_kind)s::varchar IS NOT NULL
), """
    + inventory.stock_change_ctes(deltas="lines")
    + """, ledger AS (
    INSERT INTO fulfillment_stockmovement
        (product_id, kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after,
         order_id, reason, actor, created_at)
    SELECT upd.product_id, %(stock_kind)s, upd.oh, upd.rs, upd.on_hand, upd.reserved,
           moved.id, %(stock_reason)s, %(actor)s, now()
    FROM upd CROSS JOIN moved
    ORDER BY upd.product_id
), next_job AS (
    -- Procrastinate's own defer function, on this connection: the next stage job commits or
    -- rolls back with the transition.
    SELECT (procrastinate_defer_jobs_v1(ARRAY[ROW(
        %(job_queue)s, %(job_task)s, %(job_priority)s, NULL, NULL,
        jsonb_build_object('order_pk', moved.id, 'expected_status', %(target)s::text),
        %(job_scheduled_at)s
    )::procrastinate_job_to_defer_v1]))[1] AS job_id
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
_TRANSITION_PARAMS: tuple[tuple[str, str], ...] = (
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
_TRANSITION_EXEC = """-- order transition
SELECT set_config('lock_timeout', %(lock_timeout)s, true),
       set_config('plan_cache_mode', 'force_generic_plan', true);
EXECUTE {name}({args})"""

STOCK_MESSAGE = "fulfillment:stock_effect_failed"
# The stock effect of reaching each target: (ledger kind, sign of the on_hand change per unit);
# reserved always drops by the line quantity.
STOCK_EFFECT: dict[str, tuple[str, int]] = {
    Status.SHIPPED: (StockMovement.Kind.SHIP, -1),
    Status.CANCELLED: (StockMovement.Kind.RELEASE, 0),
    Status.FAILED: (StockMovement.Kind.RELEASE, 0),
}
STOCK_TARGETS = frozenset(STOCK_EFFECT)


@dataclass(frozen=True)
class _Moved:
    order_pk: int
    next_job_id: int | None


@cache
def _prepare_sql(timestamp_field: str, key: str) -> tuple[str, str, str]:
    """(name, PREPARE statement, EXECUTE statement) of one variant of the transition."""
    name = f"fulfillment_transition_{timestamp_field}_{key}"
    body = _TRANSITION_BODY.format(timestamp_field=timestamp_field, key=key)
    types = []
    for i, (param, type_) in enumerate(_TRANSITION_PARAMS, start=1):
        body = body.replace(f"%({param})s", f"${i}")
        types.append(type_.format(key_type="bigint" if key == "id" else "uuid"))
    assert "%(" not in body, "every parameter of the transition must be listed"
    prepare = f"PREPARE {name} ({', '.join(types)}) AS {body}"
    execute = _TRANSITION_EXEC.format(
        name=name, args=", ".join(f"%({param})s" for param, _ in _TRANSITION_PARAMS)
    )
    return name, prepare, execute


def _prepared(timestamp_field: str, key: str) -> str:
    """The EXECUTE statement of a transition variant, preparing it first on this connection if
    it is not yet (prepared statements live as long as the database session)."""
    name, prepare, execute = _prepare_sql(timestamp_field, key)
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


@cache
def _advance_job() -> tuple[str, str, int]:
    """Queue, name and priority of the stage job (the task's defaults), read once."""
    from fulfillment.tasks import advance_order

    return advance_order.queue, advance_order.name, advance_order.priority


def _transition_row(
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
) -> _Moved | None:
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
    variant = (TIMESTAMP_FIELD[target], "id" if order_pk is not None else "order_id")
    now = timezone.now()
    defer_next = defer_next and target in NEXT_STAGE
    scheduled_at = None
    if defer_next:
        delay = stage_delay(order_pk=order_pk or 0, stage=NEXT_STAGE[target])
        scheduled_at = now + timedelta(seconds=delay) if delay > 0 else None
    stock_kind, on_hand_sign = STOCK_EFFECT.get(target, (None, 0))
    job_queue, job_task, job_priority = _advance_job()
    params = {
        "lock_timeout": lock_timeout,
        "target": target,
        "now": now,
        "reason": reason[:255],
        "tracking": tracking_number[:64],
        "key": order_pk if order_pk is not None else order_id,
        "sources": SOURCES.get(target, []),
        "expected_status": expected_status,
        "expected_version": expected_version,
        "stock_kind": stock_kind,
        "on_hand_sign": on_hand_sign,
        "stock_reason": (reason or target) if stock_kind == "release" else "",
        "actor": actor,
        "defer_next": defer_next,
        "job_queue": job_queue,
        "job_task": job_task,
        "job_priority": job_priority,
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
    return _Moved(int(row[0]), row[1])


def _execute(sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    with connection.cursor() as cur:
        cur.execute(sql, params)
        # Several statements, several results (pghistory may already have moved past some): the
        # last one is the transition's.
        while cur.nextset():
            pass
        return cur.fetchone()  # type: ignore[no-any-return]


def _explain_refusal(
    *, target: str, order_pk: int | None, order_id: UUID | None, expected_version: int | None
) -> FulfillmentError:
    """Why :func:`_transition_row` changed nothing (runs only on that path)."""
    qs = Order.objects.all()
    qs = qs.filter(pk=order_pk) if order_pk is not None else qs.filter(order_id=str(order_id))
    order = qs.first()
    if order is None:
        return NotFound("order", order_id if order_id is not None else order_pk)
    if expected_version is not None and order.version != expected_version:
        return VersionConflict("order", order.order_id, expected_version, order.version)
    return InvalidTransition(order.order_id, order.status, target)


_move = _transition_row  # the transition with its stock effect, in the caller's transaction


@transaction.atomic
def order_transition(
    *,
    target: str,
    actor: str,
    order_pk: int | None = None,
    order_id: UUID | None = None,
    expected_version: int | None = None,
    expected_status: str | None = None,
    reason: str = "",
    tracking_number: str = "",
) -> Order:
    """Move one order to ``target`` with the stock effect of the move; every status change goes
    through here (or through :func:`order_advance`, which uses the same core).

    One statement (:func:`_transition_row`): a conditional UPDATE locks the order row and moves
    it only if the move is legal (and the order is in ``expected_status`` / at
    ``expected_version``); then the stock rows of its lines are locked in primary-key order and
    shipped or released with their ledger rows: order-then-stock is the lock order everywhere.
    Raises NotFound, VersionConflict or InvalidTransition when nothing qualified; nothing is
    written then.
    """
    moved = _move(
        target=target,
        actor=actor,
        order_pk=order_pk,
        order_id=order_id,
        expected_status=expected_status,
        expected_version=expected_version,
        reason=reason,
        tracking_number=tracking_number,
    )
    if moved is None:
        raise _explain_refusal(
            target=target, order_pk=order_pk, order_id=order_id, expected_version=expected_version
        )
    return Order.objects.get(pk=moved.order_pk)


# ----- simulation: delays and failures ---------------------------------------------------------


def _rng(order_pk: int, stage: str, what: str) -> random.Random | None:
    seed = settings.PIPELINE_RANDOM_SEED
    return None if seed is None else random.Random(f"{seed}:{order_pk}:{stage}:{what}")


def stage_delay(*, order_pk: int, stage: str) -> float:
    """Seconds to wait before the job that moves ``order_pk`` into ``stage`` runs."""
    low, high = settings.PIPELINE_DELAYS[stage]
    if high <= 0:
        return 0.0
    rng = _rng(order_pk, stage, "delay")
    return (rng or random).uniform(low, high)


def stage_fails(*, order_pk: int, stage: str) -> bool:
    """Whether the simulated ``stage`` fails for this order (deterministic under a seed)."""
    rate = float(settings.PIPELINE_FAILURE_RATES.get(stage, 0.0))
    if rate <= 0:
        return False
    rng = _rng(order_pk, stage, "failure")
    return (rng or random).random() < rate


# ----- deferring stage jobs through Django's connection ------------------------------------------


@cache
def _job_manager() -> JobManager:
    """Procrastinate's job manager on Django's connection (the current transaction).

    ``manage.py procrastinate worker`` swaps the app's connector for its own psycopg pool, so
    ``advance_order.defer()`` inside a running job would commit on another connection, outside
    the stage's transaction. This manager always writes through ``django.db.connection``.
    """
    return JobManager(connector=DjangoConnector())


def defer_stage_jobs(specs: Sequence[tuple[int, str]], *, delayed: bool = True) -> list[int]:
    """Defer the stage job for each ``(order_pk, expected_status)`` in the caller's transaction,
    each scheduled after the simulated delay of the stage it leads to (``delayed``) or at once.
    One statement for all."""
    if not specs:
        return []
    from fulfillment.tasks import advance_order

    template = advance_order.configure().job
    now = timezone.now()
    jobs = []
    for order_pk, expected_status in specs:
        delay = stage_delay(order_pk=order_pk, stage=NEXT_STAGE[expected_status]) if delayed else 0
        jobs.append(
            template.evolve(
                task_kwargs={"order_pk": order_pk, "expected_status": expected_status},
                scheduled_at=now + timedelta(seconds=delay) if delay > 0 else None,
            )
        )
    return [job.id for job in _job_manager().batch_defer_jobs(jobs) if job.id is not None]


def enqueue_first_stage(*, order_pks: Sequence[int]) -> None:
    """Defer the first stage job of new orders, inside the caller's transaction.

    The jobs go through Django's connection, so they commit or roll back with the orders. One
    statement for any number of orders.
    """
    defer_stage_jobs([(pk, Status.PENDING) for pk in order_pks])


# ----- the stage job -------------------------------------------------------------------------


@dataclass(frozen=True)
class StageOutcome:
    order_pk: int
    expected_status: str
    action: str  # "advanced" | "failed" | "skipped"
    status: str | None
    next_job_id: int | None = None


def order_advance(*, order_pk: int, expected_status: str, actor: str) -> StageOutcome:
    """Run one stage of one order: the body of the ``advance_order`` job.

    One transaction: the statement of :func:`_transition_row`, run in autocommit, is its own.
    It locks the order row (waiting at most ``PIPELINE_LOCK_TIMEOUT_MS``, so a stuck lock becomes
    a retryable error rather than a blocked worker), moves it only if it is still in
    ``expected_status`` (so re-running a job changes nothing: "skipped"), applies the stock
    effect (shipping: ``on_hand`` and ``reserved`` drop, one ``ship`` ledger row per line) and
    defers the next stage job. A simulated failure moves the order to ``failed`` and releases
    its reservation instead. Inside a caller's transaction (tests) it joins that transaction.
    """
    target = NEXT_STAGE.get(expected_status)
    if target is None:
        return StageOutcome(order_pk, expected_status, "skipped", None)
    fails = Status.FAILED in ALLOWED[expected_status] and stage_fails(
        order_pk=order_pk, stage=target
    )
    moved = _transition_row(
        target=Status.FAILED if fails else target,
        actor=actor,
        order_pk=order_pk,
        order_id=None,
        expected_status=expected_status,
        expected_version=None,
        reason=f"simulated failure in stage {target}" if fails else "",
        lock_timeout=_lock_timeout(),
        defer_next=not fails,
    )
    if moved is None:
        status = Order.objects.filter(pk=order_pk).values_list("status", flat=True).first()
        return StageOutcome(order_pk, expected_status, "skipped", status)
    if fails:
        return StageOutcome(order_pk, expected_status, "failed", Status.FAILED)
    return StageOutcome(order_pk, expected_status, "advanced", target, moved.next_job_id)


def _lock_timeout() -> str:
    return f"{int(settings.PIPELINE_LOCK_TIMEOUT_MS)}ms"


def order_fail_after_retries(
    *, order_pk: int, expected_status: str, actor: str, error: str
) -> StageOutcome:
    """A stage job exhausted its retries: fail the order (releasing its reservation) if it is
    still where the job found it. Waits for the order lock normally (no lock timeout)."""
    reason = f"stage job failed after {settings.PIPELINE_MAX_RETRIES} retries: {error}"
    try:
        order = order_transition(
            order_pk=order_pk,
            target=Status.FAILED,
            actor=actor,
            expected_status=expected_status,
            reason=reason,
        )
    except (InvalidTransition, NotFound):
        return StageOutcome(order_pk, expected_status, "skipped", None)
    return StageOutcome(order_pk, expected_status, "failed", order.status)


# ----- stale orders --------------------------------------------------------------------------


@dataclass
class StaleHealResult:
    checked: int = 0
    redeferred: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped_live_job: list[str] = field(default_factory=list)


def stale_orders_heal(*, actor: str, limit: int = 1000) -> StaleHealResult:
    """Heal orders stuck in a non-terminal status (``fulfillment.stale``).

    For each stale order, in its own short transaction under the order row lock (``SKIP LOCKED``:
    an order a stage job is working on is not stuck): if it is still stale and no live
    (``todo``/``doing``) stage job exists for it, re-defer its stage job and count the recovery;
    once ``recovery_count`` reached ``STALE_MAX_RECOVERIES``, fail it and release its stock.
    """
    from fulfillment.stale import live_stage_job_order_pks, stale_q

    result = StaleHealResult()
    candidates = list(
        Order.objects.filter(stale_q())
        .order_by("status_changed_at")
        .values_list("pk", "order_id")[:limit]
    )
    result.checked = len(candidates)
    # One scan of the job table for all candidates; the few without a live job are checked
    # again under their row lock (another healer may have just re-deferred one).
    live = live_stage_job_order_pks([pk for pk, _ in candidates])
    for pk, order_id in candidates:
        if pk in live:
            result.skipped_live_job.append(str(order_id))
            continue
        with transaction.atomic():
            order = (
                Order.objects.select_for_update(of=("self",), skip_locked=True)
                .filter(stale_q(), pk=pk)
                .first()
            )
            if order is None:
                continue
            if live_stage_job_order_pks([pk]):
                result.skipped_live_job.append(str(order.order_id))
                continue
            if order.recovery_count >= settings.STALE_MAX_RECOVERIES:
                _move(
                    target=Status.FAILED,
                    actor=actor,
                    order_pk=pk,
                    expected_status=order.status,
                    reason=f"stale in {order.status}: no progress after "
                    f"{order.recovery_count} recoveries",
                )
                result.failed.append(str(order.order_id))
                continue
            order.recovery_count += 1
            order.version += 1
            order.save(update_fields=["recovery_count", "version"])
            defer_stage_jobs([(pk, order.status)], delayed=False)
            result.redeferred.append(str(order.order_id))
    return result
