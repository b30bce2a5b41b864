"""Schemas of the event feed and the webhook endpoints."""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal

from ninja import Schema
from pydantic import ConfigDict, Field, StrictBool

from fulfillment.events import ALL_TYPES, EventType
from fulfillment.schemas.common import NO_NUL, StrictIn

# Ids of events: below 2**62 (transaction id times 2**20 plus a sequence number).
MAX_EVENT_ID = 2**62

# Either ["*"] (every type) or distinct event types.
EventTypes = Annotated[
    Annotated[list[Literal["*"]], Field(min_length=1, max_length=1)]
    | Annotated[
        list[EventType],
        Field(min_length=1, max_length=len(EventType), json_schema_extra={"uniqueItems": True}),
    ],
    Field(description=f'["{ALL_TYPES}"] for every event type, or distinct event types'),
]
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)"
# http or https, a host (a name or an IPv4 address; IPv6 literals are not accepted), an optional
# port, no credentials. Loopback, private, link-local and reserved addresses are refused (422) unless
# WEBHOOK_ALLOW_PRIVATE_NETWORKS is on, and checked again on the resolved address at delivery.
URL_PATTERN = rf"^https?://[^\s\x00/?#@\[\]:]+(:{_PORT})?([/?#][^\s\x00]*)?$"
Url = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2000,
        pattern=URL_PATTERN,
        description="http(s) URL; no credentials; private addresses only where allowed",
    ),
]
Description = Annotated[str, Field(max_length=500, pattern=NO_NUL)]


class FeedParams(Schema):
    model_config = ConfigDict(extra="forbid")

    after: int = Field(0, ge=0, le=MAX_EVENT_ID, description="the last event id already seen")
    type: EventType | None = Field(None, description="only events of this type")
    limit: int = Field(100, ge=1, le=1000)


class EventOut(Schema):
    id: int
    type: str
    occurred_at: datetime.datetime
    data: dict[str, Any]


class FeedOut(Schema):
    items: list[EventOut]
    next_after: int | None = Field(
        description="pass as ``after`` for the next page; null: nothing new yet, keep ``after``"
    )


class WebhookIn(StrictIn):
    url: Url
    event_types: EventTypes
    description: Description = ""


class WebhookPatchIn(StrictIn):
    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    is_active: StrictBool | None = None


class WebhookOut(Schema):
    id: int
    url: str
    event_types: list[str]
    description: str
    is_active: bool
    disabled_reason: str
    disabled_at: datetime.datetime | None
    failing_since: datetime.datetime | None
    paused_until: datetime.datetime | None
    created_at: datetime.datetime
    updated_at: datetime.datetime


class WebhookSecretOut(WebhookOut):
    secret: str = Field(description="the signing secret (whsec_...); shown only this once")


class PingOut(Schema):
    ok: bool
    status_code: int | None
    latency_ms: float
    error: str


class AttemptOut(Schema):
    number: int
    status_code: int | None
    latency_ms: float | None
    error: str
    succeeded: bool
    created_at: datetime.datetime


class DeliveryOut(Schema):
    event_id: int
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime.datetime | None
    created_at: datetime.datetime
    delivered_at: datetime.datetime | None
    tries: list[AttemptOut] = Field(description="every attempt, oldest first")


class DeliveryParams(Schema):
    model_config = ConfigDict(extra="forbid")

    status: Literal["pending", "succeeded", "failed"] | None = None
