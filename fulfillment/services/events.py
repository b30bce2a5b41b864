"""Writing events: the SQL fragments that the write paths embed, so that an event exists if and
only if the change that caused it committed (a transactional outbox).

The one-statement paths (single-order intake, the stage statement) carry an ``INSERT INTO
fulfillment_event`` CTE that inserts only from the rows the statement changed: a rejected order
or a stage that found nothing to do writes no event. ``stock.low`` / ``stock.out`` come with every
stock change (``inventory.stock_change_ctes``); bulk intake and manual stock changes write theirs
in their own transaction. The id is the database's (``fulfillment.events.EVENT_ID_SQL``).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

from fulfillment.events import EventType

STOCK_ADJUST_KINDS = ("adjust", "receive", "return", "count")


def order_created_data_sql(*, order: str, items: str) -> str:
    """The payload of ``order.created`` from an inserted order row aliased ``order`` (columns
    order_id, status, priority, customer_email, total_amount, created_at) and ``items``, an SQL
    expression giving the jsonb array of ``{"product_id", "quantity"}``."""
    return (
        f"jsonb_build_object('order_id', {order}.order_id, 'status', {order}.status, "
        f"'priority', {order}.priority, 'customer_email', {order}.customer_email, "
        f"'total_amount', {order}.total_amount::text, 'items', {items})"
    )


def stock_events_cte(*, upd: str = "upd") -> str:
    """``stock.low`` and ``stock.out`` for the rows of a stock change CTE ``upd`` (columns
    product_id, on_hand, reserved, oh, rs, low_stock_threshold): only a change that crosses down
    (available above the threshold before, at or below after; above 0 before, 0 after)."""
    return f"""stock_events AS (
    INSERT INTO fulfillment_event (type, occurred_at, data)
    SELECT t.type, now(), jsonb_build_object(
               'product_id', x.product_id, 'available', x.after, 'on_hand', x.on_hand,
               'reserved', x.reserved, 'low_stock_threshold', x.low_stock_threshold)
    FROM (SELECT {upd}.*, {upd}.on_hand - {upd}.reserved AS after,
                 ({upd}.on_hand - {upd}.oh) - ({upd}.reserved - {upd}.rs) AS before
          FROM {upd}) x
    CROSS JOIN LATERAL (VALUES
        ('{EventType.STOCK_LOW.value}',
         x.before > x.low_stock_threshold AND x.after <= x.low_stock_threshold),
        ('{EventType.STOCK_OUT.value}', x.before > 0 AND x.after <= 0)
    ) AS t(type, hit)
    WHERE t.hit
    ORDER BY x.product_id, t.type
)"""


def stock_adjusted_cte(*, upd: str = "upd") -> str:
    """``stock.adjusted`` per changed row of ``upd`` when the ``%(kind)s`` placeholder is a
    manual kind (adjust, receive, return, count); the reason and actor placeholders too."""
    kinds = ", ".join(f"'{k}'" for k in STOCK_ADJUST_KINDS)
    return f"""adjusted_events AS (
    INSERT INTO fulfillment_event (type, occurred_at, data)
    SELECT '{EventType.STOCK_ADJUSTED.value}', now(), jsonb_build_object(
               'product_id', {upd}.product_id, 'kind', %(kind)s::text,
               'on_hand_delta', {upd}.oh, 'on_hand', {upd}.on_hand, 'reserved', {upd}.reserved,
               'available', {upd}.on_hand - {upd}.reserved, 'version', {upd}.version,
               'reason', %(reason)s::text, 'actor', %(actor)s::text)
    FROM {upd}
    WHERE %(kind)s::text IN ({kinds})
    ORDER BY {upd}.product_id
)"""


BULK_ORDER_EVENTS_SQL = f"""
INSERT INTO fulfillment_event (type, occurred_at, data)
SELECT '{EventType.ORDER_CREATED.value}', o.created_at, {
    order_created_data_sql(
        order="o",
        items="(SELECT jsonb_agg(jsonb_build_object('product_id', l.product_id, "
        "'quantity', l.quantity) ORDER BY l.id) FROM fulfillment_orderline l "
        "WHERE l.order_id = o.id)",
    )
}
FROM fulfillment_order o
WHERE o.id = ANY(%(pks)s::bigint[])
ORDER BY o.id
"""


def order_created_events_insert(*, order_pks: Sequence[int]) -> None:
    """``order.created`` for orders inserted in the caller's transaction (bulk intake): one
    statement for all, in order id order."""
    if order_pks:
        with connection.cursor() as cur:
            cur.execute(BULK_ORDER_EVENTS_SQL, {"pks": list(order_pks)})
