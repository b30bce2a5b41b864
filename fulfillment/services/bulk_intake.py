"""Bulk intake: up to ``BULK_MAX_ORDERS`` orders in a fixed number of set-based statements.

Why raw SQL: the ORM would insert lines and ledger rows in batches but compute nothing
set-based; these statements take arrays (``unnest``), so the number of round trips does not
grow with the number of orders. The stock change is the one every path shares
(``inventory.stock_change_ctes``).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from fulfillment.errors import InsufficientStock, ProductUnavailable, Shortage
from fulfillment.lifecycle import OrderStatus, sql_literal
from fulfillment.rules import validate_bulk_size, validate_order_items
from fulfillment.services.events import order_created_events_insert
from fulfillment.services.inventory import stock_change_ctes
from fulfillment.services.receipts import (
    BulkItemResult,
    BulkResult,
    LineReceipt,
    OrderDraft,
    OrderReceipt,
)
from fulfillment.services.stages import enqueue_first_stage

# Every stock row of the request, locked once in primary-key order, with what allocation needs.
BULK_LOCK_SQL = """
SELECT s.product_id, s.on_hand - s.reserved, p.price, p.sku, p.name, p.is_active
FROM fulfillment_stocklevel s JOIN fulfillment_product p ON p.id = s.product_id
WHERE s.product_id = ANY(%(pids)s::bigint[])
ORDER BY s.id
FOR UPDATE OF s
"""

BULK_ORDERS_SQL = f"""
INSERT INTO fulfillment_order
    (order_id, customer_name, customer_email, priority, status, version, total_amount,
     shipping_address, shipping_city, shipping_postal_code, shipping_country,
     tracking_number, failure_reason, recovery_count, created_at, status_changed_at)
SELECT u.order_id, u.name, u.email, u.priority, {sql_literal(OrderStatus.PENDING)}, 1, u.total,
       u.addr, u.city, u.postal, u.country, '', '', 0, now(), now()
FROM unnest(%(uuids)s::uuid[], %(names)s::text[], %(emails)s::text[], %(prios)s::text[],
            %(totals)s::numeric[], %(addrs)s::text[], %(cities)s::text[], %(postals)s::text[],
            %(countries)s::text[]) WITH ORDINALITY
     AS u(order_id, name, email, priority, total, addr, city, postal, country, n)
ORDER BY u.n
RETURNING id, order_id, created_at
"""

BULK_LINES_SQL = """
INSERT INTO fulfillment_orderline (order_id, product_id, quantity, unit_price)
SELECT * FROM unnest(%(opks)s::bigint[], %(pids)s::bigint[], %(qtys)s::int[], %(prices)s::numeric[])
"""

# The per-product totals go through the shared stock change (invariants, version bump); then one
# ledger row per order line with the running balance after it: the balance before the change
# (``reserved - rs``) plus the units of this product reserved by the lines up to this one.
BULK_RESERVE_SQL = (
    """
WITH d AS (
    SELECT product_id, 0 AS oh, qty AS rs
    FROM unnest(%(pids)s::bigint[], %(totals)s::int[]) AS d(product_id, qty)
), """
    + stock_change_ctes(deltas="d")
    + """, m AS (
    SELECT * FROM unnest(%(m_pids)s::bigint[], %(m_qtys)s::int[], %(m_cum)s::int[],
                         %(m_opks)s::bigint[]) WITH ORDINALITY AS m(product_id, qty, cum, opk, n)
)
INSERT INTO fulfillment_stockmovement
    (product_id, kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after,
     order_id, reason, actor, created_at)
SELECT m.product_id, 'reserve', 0, m.qty, upd.on_hand, upd.reserved - upd.rs + m.cum,
       m.opk, '', %(actor)s, now()
FROM m JOIN upd ON upd.product_id = m.product_id
ORDER BY m.n
"""
)


@transaction.atomic
def order_bulk_create(*, drafts: Sequence[OrderDraft], atomic: bool, actor: str) -> BulkResult:
    """Create up to ``BULK_MAX_ORDERS`` orders set-based: five statements whatever the count.

    One locking pass over the distinct products (stock rows in primary-key order), allocation in
    request order in Python, then bulk inserts of orders, lines and ledger rows, one stock change
    of the per-product totals and one batch of first stage jobs. ``atomic``: any rejected order
    raises (InsufficientStock / ProductUnavailable listing the orders by index) and nothing is
    written; otherwise each order is accepted or rejected on its own.
    """
    validate_bulk_size(len(drafts))
    for i, d in enumerate(drafts):
        validate_order_items(d.items, index=i)

    all_pids = sorted({pid for d in drafts for pid, _ in d.items})
    with connection.cursor() as cur:
        cur.execute(BULK_LOCK_SQL, {"pids": all_pids})
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
            error = ProductUnavailable(
                "product(s) do not exist or are not active", product_ids=missing
            )
            results.append(BulkItemResult(i, error=error))
            continue
        short = [(pid, qty) for pid, qty in d.items if qty > remaining[pid]]
        if short:
            shortages.extend(Shortage(pid, qty, remaining[pid], index=i) for pid, qty in short)
            short_error = InsufficientStock(
                [Shortage(pid, qty, remaining[pid]) for pid, qty in short]
            )
            results.append(BulkItemResult(i, error=short_error))
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
            BULK_ORDERS_SQL,
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
            BULK_LINES_SQL, {"opks": l_opk, "pids": l_pid, "qtys": l_qty, "prices": l_price}
        )
        cur.execute(
            BULK_RESERVE_SQL,
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
    enqueue_first_stage(order_pks=[r.pk for r in receipts.values()])
    order_created_events_insert(order_pks=[r.pk for r in receipts.values()])
    return receipts
