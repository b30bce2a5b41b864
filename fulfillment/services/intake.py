"""Single-order intake: one SQL statement reserves the stock, writes the order and defers its
first stage job.

Why raw SQL: an order is the hot path of the API. Done with the ORM it takes one round trip per
step (lock, reserve, insert order, lines, ledger, job) with the stock rows locked across all of
them; as one statement the locks are held only until the commit that follows, and a rejected
order costs one round trip too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import F

from fulfillment import queue
from fulfillment.errors import InsufficientStock, ProductUnavailable, Shortage
from fulfillment.events import EventType
from fulfillment.lifecycle import OrderStatus, sql_literal
from fulfillment.models import StockLevel
from fulfillment.rules import validate_order_items
from fulfillment.services.events import order_created_data_sql
from fulfillment.services.inventory import stock_change_ctes
from fulfillment.services.receipts import LineReceipt, OrderDraft, OrderReceipt
from fulfillment.services.simulation import stage_delay

# One statement for the whole order: look up the active products, lock their stock rows in
# primary-key order and reserve every line with one conditional UPDATE (the inventory service's
# ``stock_change_ctes``, so the stock rules are the same as everywhere), then insert the order
# (only when every product was found and every line reserved), its lines with prices copied and
# one ledger row per line. When a line is short or a product unavailable, the order is not
# inserted and ``fulfillment_order_rejected`` raises, which undoes the reservations of the other
# lines. ``ev`` writes the ``order.created`` event (from ``o``: none for a rejected order), and
# ``stock_change_ctes`` the ``stock.low`` / ``stock.out`` ones. The statement also defers the first stage job (``queue.defer_job_sql``: the same job as
# ``queue.defer_stage_jobs`` writes; a test compares the two).
_PENDING = sql_literal(OrderStatus.PENDING)
CREATE_SQL = (
    """
WITH items AS (
    SELECT * FROM unnest(%(pids)s::bigint[], %(qtys)s::int[]) WITH ORDINALITY
        AS i(product_id, quantity, n)
), p AS (
    SELECT i.product_id, i.quantity, i.n, pr.price, pr.sku, pr.name
    FROM items i JOIN fulfillment_product pr ON pr.id = i.product_id AND pr.is_active
), deltas AS (
    SELECT product_id, 0 AS oh, quantity AS rs FROM p
), """
    + stock_change_ctes(deltas="deltas")
    + f""", o AS (
    INSERT INTO fulfillment_order
        (order_id, customer_name, customer_email, priority, status, version, total_amount,
         shipping_address, shipping_city, shipping_postal_code, shipping_country,
         tracking_number, failure_reason, idempotency_key, recovery_count,
         created_at, status_changed_at)
    SELECT %(order_id)s, %(name)s, %(email)s, %(priority)s, {_PENDING}, 1,
           (SELECT sum(p.price * p.quantity) FROM p),
           %(addr)s, %(city)s, %(postal)s, %(country)s, '', '', %(ikey)s, 0, now(), now()
    WHERE (SELECT count(*) FROM p) = %(n)s AND (SELECT count(*) FROM upd) = %(n)s
    RETURNING id, order_id, status, priority, customer_email, created_at, total_amount
), ev AS (
    INSERT INTO fulfillment_event (type, occurred_at, data)
    SELECT '{EventType.ORDER_CREATED.value}', o.created_at, {
        order_created_data_sql(
            order="o",
            items="(SELECT jsonb_agg(jsonb_build_object('product_id', p.product_id, "
            "'quantity', p.quantity) ORDER BY p.n) FROM p)",
        )
    }
    FROM o
), l AS (
    INSERT INTO fulfillment_orderline (order_id, product_id, quantity, unit_price)
    SELECT o.id, p.product_id, p.quantity, p.price FROM o CROSS JOIN p ORDER BY p.n
), m AS (
    INSERT INTO fulfillment_stockmovement
        (product_id, kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after,
         order_id, reason, actor, created_at)
    SELECT upd.product_id, 'reserve', 0, upd.rs, upd.on_hand, upd.reserved,
           o.id, '', %(actor)s, now()
    FROM o CROSS JOIN upd ORDER BY upd.product_id
), j AS (
    SELECT {
        queue.defer_job_sql(
            lock="%(job_lock)s",
            queueing_lock="%(job_qlock)s",
            args=f"jsonb_build_object('order_pk', o.id, 'expected_status', {_PENDING})",
            scheduled_at="CASE WHEN %(delay)s > 0 THEN now() + make_interval(secs => %(delay)s) END",
        )
    } AS ids
    FROM o
)
SELECT coalesce(
           (SELECT id FROM o),
           fulfillment_order_rejected(json_build_object(
               'found', (SELECT array_agg(p.product_id) FROM p),
               'reserved', (SELECT array_agg(upd.product_id) FROM upd))::text)),
       (SELECT created_at FROM o), (SELECT total_amount FROM o),
       (SELECT array_agg(p.product_id ORDER BY p.n) FROM p),
       (SELECT array_agg(p.price ORDER BY p.n) FROM p),
       (SELECT array_agg(p.sku ORDER BY p.n) FROM p),
       (SELECT array_agg(p.name ORDER BY p.n) FROM p),
       (SELECT ids[1] FROM j)
"""
)
REJECTED_MESSAGE = "fulfillment:order_rejected"


_FIRST_STAGE_JOB: dict[str, Any] = {**queue.stage_job_params(), "job_lock": None, "job_qlock": None}


def first_stage_job_params() -> dict[str, Any]:
    """The job placeholders of :data:`CREATE_SQL`: the stage job, no lock, no queueing lock."""
    return dict(_FIRST_STAGE_JOB)


def unavailable(requested: Sequence[int], found: Sequence[int], **where: Any) -> ProductUnavailable:
    missing = sorted(set(requested) - set(found))
    return ProductUnavailable(
        "product(s) %s do not exist or are not active" % ", ".join(map(str, missing)),
        product_ids=missing,
        **where,
    )


def _shortages(items: Sequence[tuple[int, int]], reserved: set[int]) -> InsufficientStock:
    """Failure path only: read the availability of the lines that could not be reserved."""
    short = [(pid, qty) for pid, qty in items if pid not in reserved]
    available = dict(
        StockLevel.objects.filter(product_id__in=[pid for pid, _ in short]).values_list(
            "product_id", F("on_hand") - F("reserved")
        )
    )
    return InsufficientStock([Shortage(pid, qty, available.get(pid, 0)) for pid, qty in short])


def order_create(
    *, draft: OrderDraft, actor: str, idempotency_key: str | None = None
) -> OrderReceipt:
    """Create one pending order with its stock reserved and its first pipeline job deferred.

    One SQL statement (:data:`CREATE_SQL`): stock rows locked in primary-key order, every line
    reserved by one conditional UPDATE, order + lines + ledger rows inserted and the first
    pipeline job deferred. Outside a transaction it is its own transaction, so the stock locks
    last only as long as the statement; inside one (idempotent requests, callers' atomic blocks)
    a savepoint keeps a rejection from aborting the caller's transaction. InsufficientStock
    (every short line) / ProductUnavailable: the statement is undone, nothing is written.
    """
    validate_order_items(draft.items)
    pids = [pid for pid, _ in draft.items]
    qtys = [qty for _, qty in draft.items]
    order_uuid = uuid.uuid4()
    params = {
        "pids": pids,
        "qtys": qtys,
        "n": len(pids),
        "order_id": order_uuid,
        "name": draft.customer_name,
        "email": draft.customer_email,
        "priority": draft.priority,
        "addr": draft.shipping_address,
        "city": draft.shipping_city,
        "postal": draft.shipping_postal_code,
        "country": draft.shipping_country,
        "ikey": idempotency_key,
        "actor": actor,
        # The simulated processing delay (the pk is not known yet, so a seeded run keys the
        # delay on the order's UUID instead).
        "delay": stage_delay(order_pk=order_uuid.int, stage=OrderStatus.PROCESSING),
        **_FIRST_STAGE_JOB,
    }
    try:
        if connection.in_atomic_block:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(CREATE_SQL, params)
                row = cur.fetchone()
        else:
            with connection.cursor() as cur:
                cur.execute(CREATE_SQL, params)
                row = cur.fetchone()
    except DatabaseError as exc:
        detail = _rejection(exc)
        if detail is None:
            raise
        found, reserved = detail.get("found") or [], detail.get("reserved") or []
        if len(found) != len(pids):
            raise unavailable(pids, found) from None
        raise _shortages(draft.items, set(reserved)) from None
    pk, created_at, total, f_pids, f_prices, f_skus, f_names, _ = row
    return OrderReceipt.of(
        draft,
        pk=pk,
        order_id=order_uuid,
        total_amount=total,
        created_at=created_at,
        lines=[
            LineReceipt(pid, sku, name, qty, price)
            for pid, qty, price, sku, name in zip(
                f_pids, qtys, f_prices, f_skus, f_names, strict=True
            )
        ],
    )


def _rejection(exc: DatabaseError) -> dict[str, Any] | None:
    """The JSON detail of ``fulfillment_order_rejected``, or None for any other error."""
    diag = getattr(exc.__cause__, "diag", None)
    if diag is None or diag.message_primary != REJECTED_MESSAGE:
        return None
    return dict(json.loads(diag.message_detail or "{}"))
