"""Order intake: single and bulk creation with atomic stock reservation, and cancellation.

Single orders are one SQL statement (``_CREATE_SQL``): stock rows locked in primary-key order,
every line reserved by one conditional UPDATE, order, lines, ledger rows and the first pipeline
job inserted, all or nothing. Bulk intake is a fixed number of set-based statements for any
number of orders: one locking pass over the distinct products in primary-key order, allocation
in request order, bulk inserts, one stock UPDATE, one ledger INSERT and one ``batch_defer``.
Both apply the same stock rules as ``services.inventory.apply_stock_changes`` (reserved may never
exceed on_hand), written inline to save round trips on the hot path. Cancellation goes through
``pipeline.order_transition``.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F

from fulfillment.errors import (
    InsufficientStock,
    ProductUnavailable,
    Shortage,
    ValidationFailed,
)
from fulfillment.models import Order, StockLevel
from fulfillment.services import inventory, pipeline

Status = Order.Status


@dataclass(frozen=True)
class OrderDraft:
    """A validated order request: ``items`` are ``(product_id, quantity)`` pairs."""

    customer_name: str
    customer_email: str
    items: Sequence[tuple[int, int]]
    priority: str = Order.Priority.NORMAL
    shipping_address: str = ""
    shipping_city: str = ""
    shipping_postal_code: str = ""
    shipping_country: str = ""


@dataclass(frozen=True)
class LineReceipt:
    product_id: int
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


@dataclass
class OrderReceipt:
    """What intake wrote, enough to answer without reading the order back."""

    pk: int
    order_id: UUID
    customer_name: str
    customer_email: str
    priority: str
    total_amount: Decimal
    created_at: datetime
    shipping_address: str = ""
    shipping_city: str = ""
    shipping_postal_code: str = ""
    shipping_country: str = ""
    status: str = Status.PENDING
    version: int = 1
    lines: list[LineReceipt] = field(default_factory=list)

    @property
    def status_changed_at(self) -> datetime:
        return self.created_at

    @classmethod
    def of(
        cls,
        draft: OrderDraft,
        *,
        pk: int,
        order_id: UUID,
        total_amount: Decimal,
        created_at: datetime,
        lines: list[LineReceipt],
    ) -> OrderReceipt:
        """The receipt of a new order written from ``draft``."""
        return cls(
            pk=pk,
            order_id=order_id,
            customer_name=draft.customer_name,
            customer_email=draft.customer_email,
            priority=draft.priority,
            total_amount=total_amount,
            created_at=created_at,
            shipping_address=draft.shipping_address,
            shipping_city=draft.shipping_city,
            shipping_postal_code=draft.shipping_postal_code,
            shipping_country=draft.shipping_country,
            lines=lines,
        )


@dataclass
class BulkItemResult:
    index: int
    order: OrderReceipt | None = None
    error: dict[str, Any] | None = None


@dataclass
class BulkResult:
    atomic: bool
    results: list[BulkItemResult]

    @property
    def created(self) -> int:
        return sum(1 for r in self.results if r.order is not None)

    @property
    def rejected(self) -> int:
        return len(self.results) - self.created


def validate_items(items: Sequence[tuple[int, int]], *, index: int | None = None) -> None:
    """Shape rules of an order's lines (the schemas check them too; services never trust callers)."""
    where = {} if index is None else {"index": index}
    if not items:
        raise ValidationFailed("an order needs at least one item", field="items", **where)
    if len(items) > settings.MAX_ORDER_LINES:
        raise ValidationFailed(
            f"an order may have at most {settings.MAX_ORDER_LINES} lines",
            field="items",
            max_lines=settings.MAX_ORDER_LINES,
            **where,
        )
    pids = [pid for pid, _ in items]
    if len(set(pids)) != len(pids):
        raise ValidationFailed(
            "each product may appear only once per order", field="items", **where
        )
    bad = [qty for _, qty in items if qty <= 0]
    if bad:
        raise ValidationFailed("quantity must be positive", field="items.quantity", **where)


# One statement for the whole order: look up the active products, lock their stock rows in
# primary-key order and reserve every line with one conditional UPDATE (the inventory service's
# ``stock_change_ctes``, so the stock rules are the same as everywhere), then insert the order
# (only when every product was found and every line reserved), its lines with prices copied and
# one ledger row per line. When a line is short or a product unavailable, the order is not
# inserted and the caller raises, which rolls back the reservations of the other lines. Taking
# the stock locks inside this statement keeps them held only until the commit that follows,
# never across a round trip to Python. The statement also defers the first pipeline
# job, exactly as ``pipeline.enqueue_first_stage`` would (same task, queue, priority, locks and
# arguments; a test compares the two), through Procrastinate's own SQL function.
_CREATE_SQL = (
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
    + inventory.stock_change_ctes(deltas="deltas")
    + """, o AS (
    INSERT INTO fulfillment_order
        (order_id, customer_name, customer_email, priority, status, version, total_amount,
         shipping_address, shipping_city, shipping_postal_code, shipping_country,
         tracking_number, failure_reason, idempotency_key, recovery_count,
         created_at, status_changed_at)
    SELECT %(order_id)s, %(name)s, %(email)s, %(priority)s, 'pending', 1,
           (SELECT sum(p.price * p.quantity) FROM p),
           %(addr)s, %(city)s, %(postal)s, %(country)s, '', '', %(ikey)s, 0, now(), now()
    WHERE (SELECT count(*) FROM p) = %(n)s AND (SELECT count(*) FROM upd) = %(n)s
    RETURNING id, created_at, total_amount
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
    SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(
        %(job_queue)s, %(job_task)s, %(job_priority)s, %(job_lock)s, %(job_qlock)s,
        jsonb_build_object('order_pk', o.id, 'expected_status', 'pending'),
        CASE WHEN %(delay)s > 0 THEN now() + make_interval(secs => %(delay)s) END
    )::procrastinate_job_to_defer_v1]) AS ids
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


def _unavailable(
    requested: Sequence[int], found: Sequence[int], **where: Any
) -> ProductUnavailable:
    missing = sorted(set(requested) - set(found))
    return ProductUnavailable(
        "product(s) %s do not exist or are not active" % ", ".join(map(str, missing)),
        product_ids=missing,
        **where,
    )


@functools.cache
def _first_stage_job() -> dict[str, Any]:
    """The job options ``enqueue_first_stage`` uses (the task's defaults), read once."""
    from fulfillment.tasks import advance_order

    job = advance_order.configure().job
    return {
        "job_queue": job.queue,
        "job_task": job.task_name,
        "job_priority": job.priority,
        "job_lock": job.lock,
        "job_qlock": job.queueing_lock,
    }


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

    One SQL statement (``_CREATE_SQL``): stock rows locked in primary-key order, every line
    reserved by one conditional UPDATE, order + lines + ledger rows inserted and the first
    pipeline job deferred. Outside a transaction it is its own transaction, so the stock locks
    last only as long as the statement; inside one (idempotent requests, callers' atomic blocks)
    a savepoint keeps a rejection from aborting the caller's transaction. InsufficientStock
    (every short line) / ProductUnavailable: the statement is undone, nothing is written.
    """
    validate_items(draft.items)
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
        # The simulated processing delay, as ``enqueue_first_stage`` schedules it (the pk is not
        # known yet, so a seeded run keys the delay on the order's UUID instead).
        "delay": pipeline.stage_delay(order_pk=order_uuid.int, stage=Status.PROCESSING),
        **_first_stage_job(),
    }
    try:
        if connection.in_atomic_block:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(_CREATE_SQL, params)
                row = cur.fetchone()
        else:
            with connection.cursor() as cur:
                cur.execute(_CREATE_SQL, params)
                row = cur.fetchone()
    except DatabaseError as exc:
        detail = _rejection(exc)
        if detail is None:
            raise
        found, reserved = detail.get("found") or [], detail.get("reserved") or []
        if len(found) != len(pids):
            raise _unavailable(pids, found) from None
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
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    if diag is None or diag.message_primary != "fulfillment:order_rejected":
        return None
    return dict(json.loads(diag.message_detail or "{}"))


# ----- bulk ------------------------------------------------------------------------------------

_BULK_LOCK_SQL = """
SELECT s.product_id, s.on_hand - s.reserved, p.price, p.sku, p.name, p.is_active
FROM fulfillment_stocklevel s JOIN fulfillment_product p ON p.id = s.product_id
WHERE s.product_id = ANY(%(pids)s::bigint[])
ORDER BY s.id
FOR UPDATE OF s
"""

_BULK_ORDERS_SQL = """
INSERT INTO fulfillment_order
    (order_id, customer_name, customer_email, priority, status, version, total_amount,
     shipping_address, shipping_city, shipping_postal_code, shipping_country,
     tracking_number, failure_reason, recovery_count, created_at, status_changed_at)
SELECT u.order_id, u.name, u.email, u.priority, 'pending', 1, u.total,
       u.addr, u.city, u.postal, u.country, '', '', 0, now(), now()
FROM unnest(%(uuids)s::uuid[], %(names)s::text[], %(emails)s::text[], %(prios)s::text[],
            %(totals)s::numeric[], %(addrs)s::text[], %(cities)s::text[], %(postals)s::text[],
            %(countries)s::text[]) WITH ORDINALITY
     AS u(order_id, name, email, priority, total, addr, city, postal, country, n)
ORDER BY u.n
RETURNING id, order_id, created_at
"""

_BULK_LINES_SQL = """
INSERT INTO fulfillment_orderline (order_id, product_id, quantity, unit_price)
SELECT * FROM unnest(%(opks)s::bigint[], %(pids)s::bigint[], %(qtys)s::int[], %(prices)s::numeric[])
"""

# The stock rows are already locked (first statement of the transaction); this applies the
# per-product totals where the invariants still hold and writes one ledger row per order line with
# the running balance after it.
_BULK_RESERVE_SQL = """
WITH d AS (
    SELECT * FROM unnest(%(pids)s::bigint[], %(totals)s::int[]) AS d(product_id, qty)
), upd AS (
    UPDATE fulfillment_stocklevel s
    SET reserved = s.reserved + d.qty, version = s.version + 1, updated_at = now()
    FROM d
    WHERE s.product_id = d.product_id AND s.reserved + d.qty <= s.on_hand
    RETURNING s.product_id, s.on_hand, s.reserved - d.qty AS reserved_before
), m AS (
    SELECT * FROM unnest(%(m_pids)s::bigint[], %(m_qtys)s::int[], %(m_cum)s::int[],
                         %(m_opks)s::bigint[]) WITH ORDINALITY AS m(product_id, qty, cum, opk, n)
)
INSERT INTO fulfillment_stockmovement
    (product_id, kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after,
     order_id, reason, actor, created_at)
SELECT m.product_id, 'reserve', 0, m.qty, upd.on_hand, upd.reserved_before + m.cum,
       m.opk, '', %(actor)s, now()
FROM m JOIN upd ON upd.product_id = m.product_id
ORDER BY m.n
"""


@transaction.atomic
def order_bulk_create(*, drafts: Sequence[OrderDraft], atomic: bool, actor: str) -> BulkResult:
    """Create up to ``BULK_MAX_ORDERS`` orders set-based: five statements whatever the count.

    One locking pass over the distinct products (stock rows in primary-key order), allocation in
    request order in Python, then bulk inserts of orders, lines and ledger rows, one UPDATE of the
    per-product totals and one ``batch_defer``. ``atomic``: any rejected order raises
    (InsufficientStock / ProductUnavailable listing the orders by index) and nothing is written;
    otherwise each order is accepted or rejected on its own.
    """
    if not drafts:
        raise ValidationFailed("orders must not be empty", field="orders")
    if len(drafts) > settings.BULK_MAX_ORDERS:
        raise ValidationFailed(
            f"at most {settings.BULK_MAX_ORDERS} orders per request",
            field="orders",
            max_orders=settings.BULK_MAX_ORDERS,
        )
    for i, d in enumerate(drafts):
        validate_items(d.items, index=i)

    all_pids = sorted({pid for d in drafts for pid, _ in d.items})
    with connection.cursor() as cur:
        cur.execute(_BULK_LOCK_SQL, {"pids": all_pids})
        stock = {row[0]: row[1:] for row in cur.fetchall()}

    remaining = {pid: s[0] for pid, s in stock.items() if s[4]}
    results: list[BulkItemResult] = []
    accepted: list[tuple[int, OrderDraft]] = []
    shortages: list[Shortage] = []
    unavailable: list[dict[str, Any]] = []
    for i, d in enumerate(drafts):
        missing = sorted(pid for pid, _ in d.items if pid not in remaining)
        if missing:
            unavailable.append({"index": i, "product_ids": missing})
            results.append(
                BulkItemResult(
                    i,
                    error={
                        "code": ProductUnavailable.code,
                        "message": "product(s) do not exist or are not active",
                        "details": {"product_ids": missing},
                    },
                )
            )
            continue
        short = [
            Shortage(pid, qty, remaining[pid], index=i)
            for pid, qty in d.items
            if qty > remaining[pid]
        ]
        if short:
            shortages.extend(short)
            results.append(
                BulkItemResult(
                    i,
                    error={
                        "code": InsufficientStock.code,
                        "message": "not enough stock for %d line(s)" % len(short),
                        "details": {
                            "shortages": [
                                {
                                    "product_id": s.product_id,
                                    "requested": s.requested,
                                    "available": s.available,
                                }
                                for s in short
                            ]
                        },
                    },
                )
            )
            continue
        for pid, qty in d.items:
            remaining[pid] -= qty
        accepted.append((i, d))
        results.append(BulkItemResult(i))

    if atomic and unavailable:
        raise ProductUnavailable(
            "%d order(s) name products that do not exist or are not active" % len(unavailable),
            orders=unavailable,
        )
    if atomic and shortages:
        raise InsufficientStock(shortages)
    if not accepted:
        return BulkResult(atomic=atomic, results=results)

    receipts = _bulk_insert(accepted, stock, actor)
    for r in results:
        if r.error is None:
            r.order = receipts[r.index]
    return BulkResult(atomic=atomic, results=results)


def _bulk_insert(
    accepted: list[tuple[int, OrderDraft]],
    stock: dict[int, tuple[Any, ...]],
    actor: str,
) -> dict[int, OrderReceipt]:
    uuids = [uuid.uuid4() for _ in accepted]
    totals = [sum((stock[pid][1] * qty for pid, qty in d.items), Decimal(0)) for _, d in accepted]
    with connection.cursor() as cur:
        cur.execute(
            _BULK_ORDERS_SQL,
            {
                "uuids": uuids,
                "names": [d.customer_name for _, d in accepted],
                "emails": [d.customer_email for _, d in accepted],
                "prios": [d.priority for _, d in accepted],
                "totals": totals,
                "addrs": [d.shipping_address for _, d in accepted],
                "cities": [d.shipping_city for _, d in accepted],
                "postals": [d.shipping_postal_code for _, d in accepted],
                "countries": [d.shipping_country for _, d in accepted],
            },
        )
        inserted = {row[1]: (row[0], row[2]) for row in cur.fetchall()}

        l_opk: list[int] = []
        l_pid: list[int] = []
        l_qty: list[int] = []
        l_price: list[Decimal] = []
        cum: dict[int, int] = defaultdict(int)
        m_cum: list[int] = []
        receipts: dict[int, OrderReceipt] = {}
        for (i, d), u, total in zip(accepted, uuids, totals, strict=True):
            pk, created_at = inserted[u]
            lines = []
            for pid, qty in d.items:
                _, price, sku, name, _ = stock[pid]
                l_opk.append(pk)
                l_pid.append(pid)
                l_qty.append(qty)
                l_price.append(price)
                cum[pid] += qty
                m_cum.append(cum[pid])
                lines.append(LineReceipt(pid, sku, name, qty, price))
            receipts[i] = OrderReceipt.of(
                d, pk=pk, order_id=u, total_amount=total, created_at=created_at, lines=lines
            )
        cur.execute(
            _BULK_LINES_SQL, {"opks": l_opk, "pids": l_pid, "qtys": l_qty, "prices": l_price}
        )
        cur.execute(
            _BULK_RESERVE_SQL,
            {
                "pids": list(cum),
                "totals": list(cum.values()),
                "m_pids": l_pid,
                "m_qtys": l_qty,
                "m_cum": m_cum,
                "m_opks": l_opk,
                "actor": actor,
            },
        )
        if cur.rowcount != len(l_pid):
            # Cannot happen while the rows stay locked; refuse rather than write a wrong ledger.
            raise RuntimeError("bulk reservation did not apply to every line")
    pipeline.enqueue_first_stage(order_pks=[r.pk for r in receipts.values()])
    return receipts


# ----- cancel ----------------------------------------------------------------------------------


def order_cancel(
    *, order_id: UUID, actor: str, expected_version: int | None = None, reason: str = ""
) -> Order:
    """Cancel an order before shipping; releases its reservation (ledger rows) exactly once.

    ``pipeline.order_transition`` locks the order row, checks the status (InvalidTransition
    otherwise) and ``expected_version`` (VersionConflict), then releases the stock in pk order.
    """
    return pipeline.order_transition(
        target=Status.CANCELLED,
        order_id=order_id,
        actor=actor,
        expected_version=expected_version,
        reason=reason or "cancelled",
    )
