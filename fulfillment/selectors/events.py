"""Read side of events and webhooks: the gap-free feed, endpoints, deliveries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import QuerySet

from fulfillment.errors import NotFound
from fulfillment.events import VISIBLE_BELOW_SQL
from fulfillment.models import WebhookDelivery, WebhookEndpoint

# Events past ``after`` that may be handed out: only those written by transactions older than
# the oldest one still in flight. Such a transaction has ended, so no event can later commit
# below a position handed out here. One statement, so the bound and the rows come from the
# same snapshot. Always on the primary (a replica's snapshot is its own).
FEED_SQL = f"""
SELECT id, type, occurred_at, data FROM fulfillment_event
WHERE id > %(after)s AND id < {VISIBLE_BELOW_SQL}
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
ORDER BY id
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class FeedPage:
    items: list[dict[str, Any]]
    next_after: int | None


def event_feed(*, after: int, type_: str | None, limit: int) -> FeedPage:
    with connections[DEFAULT_DB_ALIAS].cursor() as cur:
        cur.execute(FEED_SQL, {"after": after, "type": type_, "limit": limit})
        rows = cur.fetchall()
    # Django's connection hands jsonb over as text.
    items = [
        {"id": r[0], "type": r[1], "occurred_at": r[2], "data": json.loads(r[3])} for r in rows
    ]
    return FeedPage(items, items[-1]["id"] if items else None)


def webhook_list() -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.using(DEFAULT_DB_ALIAS).order_by("id")


def webhook_get(*, endpoint_id: int) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.using(DEFAULT_DB_ALIAS).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound("webhook", endpoint_id)
    return endpoint


def delivery_list(*, endpoint_id: int, status: str | None) -> QuerySet[WebhookDelivery]:
    """An endpoint's deliveries, newest event first, each with its attempts (one query for
    all of a page's attempts)."""
    webhook_get(endpoint_id=endpoint_id)
    qs = WebhookDelivery.objects.using(DEFAULT_DB_ALIAS).filter(endpoint_id=endpoint_id)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-event_id").prefetch_related("tries")
