"""The event types, defined once: the SQL that writes events, the feed's filter, the webhook
subscriptions and the docs' catalogue all read them from here. Imports nothing of the app.

An event id is monotonic in the id of the transaction that wrote it (:data:`EVENT_ID_SQL`): the
transaction id times 2**20 plus a sequence number. The feed hands out only ids below the oldest
transaction still in flight (:data:`VISIBLE_BELOW_SQL`), so no event can later commit below a
position already handed out.
"""

from __future__ import annotations

from django.db import models


class EventType(models.TextChoices):
    ORDER_CREATED = "order.created"
    ORDER_PROCESSING = "order.processing"
    ORDER_SHIPPED = "order.shipped"
    ORDER_DELIVERED = "order.delivered"
    ORDER_FAILED = "order.failed"
    ORDER_CANCELLED = "order.cancelled"
    STOCK_ADJUSTED = "stock.adjusted"
    STOCK_LOW = "stock.low"
    STOCK_OUT = "stock.out"


EVENT_TYPES: tuple[str, ...] = tuple(EventType.values)
# A subscription to every type.
ALL_TYPES = "*"

# The low bits of an event id: a sequence number within the transaction's slot.
ID_SHIFT = 2**20

# The id column's default: transaction id (xid8, epoch included) times 2**20 plus the sequence.
EVENT_ID_SQL = (
    f"(pg_current_xact_id()::text::bigint * {ID_SHIFT} "
    f"+ nextval('fulfillment_event_seq') % {ID_SHIFT})"
)
# The first id the feed may NOT hand out yet: every transaction below the oldest one in flight
# has ended, so every event below this bound that will ever exist is already visible.
VISIBLE_BELOW_SQL = f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint * {ID_SHIFT})"


def order_event_type(status: str) -> str:
    """The event type of an order reaching ``status``."""
    return f"order.{status}"
