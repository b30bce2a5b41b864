"""Webhooks: endpoints (create, change, rotate the secret, ping), the dispatcher that turns new
events into deliveries, and the delivery of one endpoint's pending events.

Flow: the dispatcher (a periodic job, every second by default) reads the events past its own
checkpoint that the feed may hand out (below the oldest transaction in flight, so none is ever
skipped), inserts one delivery row per subscribed active endpoint, advances the checkpoint, and
defers one delivery job per endpoint with pending deliveries and no live job, all in one
transaction. A delivery job (one at a time per endpoint: the job's lock) sends the endpoint's
pending deliveries in event order, one request per event, each outside any transaction, and
records each attempt in its own transaction (:func:`delivery_attempt_record`). A failure pauses
the endpoint until the retry time of its oldest delivery, so order holds and a dead receiver
costs one request per retry, not one per event. A worker killed mid-request leaves the delivery
pending: the job is retried and the event sent again (at least once; ``webhook-id`` lets the
receiver drop the duplicate).
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from fulfillment import metrics, queue
from fulfillment.errors import NotFound, ValidationFailed
from fulfillment.events import ALL_TYPES, EVENT_TYPES, VISIBLE_BELOW_SQL
from fulfillment.models import (
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDispatchState,
    WebhookEndpoint,
)
from fulfillment.services import webhook_http
from fulfillment.services.webhook_http import SendResult

logger = structlog.get_logger("fulfillment.webhooks")

PING_TYPE = "webhook.ping"
# Deliveries read per round of a delivery job, and how long one job delivers before it yields
# its worker slot (the next dispatch defers it again if deliveries are left).
DELIVERY_BATCH = 200
# Successes recorded together (one transaction) at most this many at a time.
SUCCESS_FLUSH = 50
DELIVERY_JOB_SECONDS = 30.0
# Events turned into deliveries per dispatch.
DISPATCH_BATCH = 5000

Status = WebhookDelivery.Status


# ----- endpoints --------------------------------------------------------------------------------


def _check(url: str | None, event_types: list[str] | None) -> None:
    if url is not None:
        problem = webhook_http.url_problem(url)
        if problem:
            raise ValidationFailed(problem, field="url")
    if event_types is not None:
        if not event_types:
            raise ValidationFailed("subscribe to at least one event type", field="event_types")
        unknown = sorted(set(event_types) - {*EVENT_TYPES, ALL_TYPES})
        if unknown:
            raise ValidationFailed(
                "unknown event type(s): %s" % ", ".join(unknown), field="event_types"
            )
        if ALL_TYPES in event_types and len(event_types) > 1:
            raise ValidationFailed('"*" stands alone', field="event_types")
        if len(set(event_types)) != len(event_types):
            raise ValidationFailed("each event type may appear once", field="event_types")


def webhook_endpoint_create(
    *, url: str, event_types: list[str], description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """A new active endpoint and its signing secret (returned here, never shown again)."""
    _check(url, event_types)
    secret = webhook_http.new_secret()
    endpoint = WebhookEndpoint.objects.create(
        url=url, event_types=event_types, description=description, secret=secret
    )
    return endpoint, secret


def _get(endpoint_id: int, *, lock: bool = False) -> WebhookEndpoint:
    qs = WebhookEndpoint.objects.select_for_update() if lock else WebhookEndpoint.objects.all()
    endpoint = qs.filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound("webhook", endpoint_id)
    return endpoint


@transaction.atomic
def webhook_endpoint_update(
    *,
    endpoint_id: int,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
) -> WebhookEndpoint:
    """Change the given fields under the row lock. Activating an endpoint clears its disabled
    reason and failure state: its pending deliveries go out at the next dispatch."""
    _check(url, event_types)
    endpoint = _get(endpoint_id, lock=True)
    if url is not None:
        endpoint.url = url
    if event_types is not None:
        endpoint.event_types = event_types
    if description is not None:
        endpoint.description = description
    if is_active is True and not endpoint.is_active:
        endpoint.is_active = True
        endpoint.disabled_reason = ""
        endpoint.disabled_at = None
        endpoint.failing_since = None
        endpoint.paused_until = None
    elif is_active is False and endpoint.is_active:
        endpoint.is_active = False
        endpoint.disabled_reason = "disabled by an administrator"
        endpoint.disabled_at = timezone.now()
    endpoint.save()
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, endpoint_id: int) -> None:
    """Delete an endpoint with its deliveries and attempts (set-based, however many)."""
    _get(endpoint_id, lock=True)
    with connection.cursor() as cur:
        cur.execute(
            "DELETE FROM fulfillment_webhookattempt WHERE delivery_id IN "
            "(SELECT id FROM fulfillment_webhookdelivery WHERE endpoint_id = %s)",
            [endpoint_id],
        )
        cur.execute("DELETE FROM fulfillment_webhookdelivery WHERE endpoint_id = %s", [endpoint_id])
        cur.execute("DELETE FROM fulfillment_webhookendpoint WHERE id = %s", [endpoint_id])


@transaction.atomic
def webhook_secret_rotate(*, endpoint_id: int) -> tuple[WebhookEndpoint, str]:
    """A new signing secret (returned here, never shown again); the old one stops at once."""
    endpoint = _get(endpoint_id, lock=True)
    endpoint.secret = webhook_http.new_secret()
    endpoint.save(update_fields=["secret", "updated_at"])
    return endpoint, endpoint.secret


def webhook_ping(*, endpoint_id: int) -> SendResult:
    """Send a signed ``webhook.ping`` message now (not recorded as a delivery)."""
    endpoint = _get(endpoint_id)
    body = webhook_http.message_body(
        type_=PING_TYPE, timestamp=_iso(timezone.now()), data={"endpoint_id": endpoint.pk}
    )
    return webhook_http.send(
        url=endpoint.url,
        secret=endpoint.secret,
        msg_id=f"ping_{secrets.token_hex(12)}",
        body=body,
    )


# ----- the dispatcher ---------------------------------------------------------------------------

DISPATCH_SQL = f"""
WITH cur AS (
    SELECT last_event_id FROM fulfillment_webhookdispatchstate WHERE id = 1 FOR UPDATE
), batch AS (
    SELECT e.id, e.type, e.occurred_at FROM fulfillment_event e, cur
    WHERE e.id > cur.last_event_id AND e.id < {VISIBLE_BELOW_SQL}
    ORDER BY e.id
    LIMIT %(limit)s
), ins AS (
    INSERT INTO fulfillment_webhookdelivery
        (endpoint_id, event_id, event_type, status, attempts, next_attempt_at, created_at)
    SELECT w.id, b.id, b.type, '{Status.PENDING.value}', 0, NULL, now()
    FROM batch b JOIN fulfillment_webhookendpoint w
      ON w.is_active AND w.created_at <= b.occurred_at
     AND (b.type = ANY(w.event_types) OR '{ALL_TYPES}' = ANY(w.event_types))
    ORDER BY b.id, w.id
    ON CONFLICT DO NOTHING
    RETURNING 1
), adv AS (
    UPDATE fulfillment_webhookdispatchstate
    SET last_event_id = (SELECT max(id) FROM batch), updated_at = now()
    WHERE id = 1 AND EXISTS (SELECT 1 FROM batch)
)
SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM ins)
"""

DUE_ENDPOINTS_SQL = f"""
SELECT w.id FROM fulfillment_webhookendpoint w
WHERE w.is_active AND (w.paused_until IS NULL OR w.paused_until <= now())
  AND EXISTS (SELECT 1 FROM fulfillment_webhookdelivery d
              WHERE d.endpoint_id = w.id AND d.status = '{Status.PENDING.value}')
ORDER BY w.id
"""


@dataclass(frozen=True)
class DispatchResult:
    events: int
    deliveries: int
    jobs: int


@transaction.atomic
def events_dispatch(*, limit: int = DISPATCH_BATCH) -> DispatchResult:
    """One dispatch: new visible events -> delivery rows -> delivery jobs, one transaction.

    The checkpoint row is locked for the transaction, so two dispatches never hand out the same
    events twice (the unique delivery per endpoint and event guards it as well)."""
    WebhookDispatchState.objects.get_or_create(pk=1)
    with connection.cursor() as cur:
        cur.execute(DISPATCH_SQL, {"limit": limit})
        events, deliveries = cur.fetchone()
        cur.execute(DUE_ENDPOINTS_SQL)
        due = [row[0] for row in cur.fetchall()]
    jobs = queue.defer_delivery_jobs(due)
    return DispatchResult(events, deliveries, len(jobs))


# ----- delivering -------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def message_id(event_id: int) -> str:
    """The ``webhook-id`` of an event: the same for every attempt and every endpoint."""
    return f"evt_{event_id}"


def event_body(event: Event) -> bytes:
    return webhook_http.message_body(
        type_=event.type, timestamp=_iso(event.occurred_at), data=event.data
    )


def endpoint_deliver(*, endpoint_id: int, max_seconds: float = DELIVERY_JOB_SECONDS) -> int:
    """Send an endpoint's pending deliveries in event order until none is left, one fails or
    ``max_seconds`` have passed; how many succeeded. No transaction is open during a request;
    successes are recorded a batch at a time (:func:`deliveries_succeeded_record`), a failure at
    once (:func:`delivery_attempt_record`). A success not yet recorded when the worker dies is
    sent again: at least once."""
    deadline = time.monotonic() + max_seconds
    delivered = 0
    while time.monotonic() < deadline:
        endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
        if endpoint is None or not endpoint.is_active:
            break
        if endpoint.paused_until is not None and endpoint.paused_until > timezone.now():
            break
        batch = list(
            WebhookDelivery.objects.filter(endpoint_id=endpoint_id, status=Status.PENDING).order_by(
                "event_id"
            )[:DELIVERY_BATCH]
        )
        if not batch:
            break
        events = Event.objects.in_bulk([d.event_id for d in batch])
        succeeded: list[tuple[WebhookDelivery, SendResult, datetime]] = []
        for delivery in batch:
            event = events.get(delivery.event_id)
            if event is None:
                result = SendResult(None, 0.0, "the event has expired")
            else:
                result = webhook_http.send(
                    url=endpoint.url,
                    secret=endpoint.secret,
                    msg_id=message_id(event.pk),
                    body=event_body(event),
                )
            if result.ok and event is not None:
                succeeded.append((delivery, result, event.occurred_at))
                if len(succeeded) >= SUCCESS_FLUSH:
                    delivered += deliveries_succeeded_record(
                        endpoint_id=endpoint_id, succeeded=succeeded
                    )
                    succeeded = []
                if time.monotonic() >= deadline:
                    break
                continue
            delivered += deliveries_succeeded_record(endpoint_id=endpoint_id, succeeded=succeeded)
            succeeded = []
            outcome = delivery_attempt_record(
                endpoint_id=endpoint_id,
                delivery_id=delivery.pk,
                result=result,
                occurred_at=event.occurred_at if event else None,
                final=event is None,
            )
            if outcome != "gave_up":
                return delivered
            if time.monotonic() >= deadline:
                break
        delivered += deliveries_succeeded_record(endpoint_id=endpoint_id, succeeded=succeeded)
    return delivered


_SUCCEEDED_SQL = f"""
UPDATE fulfillment_webhookdelivery
SET status = '{Status.SUCCEEDED.value}', attempts = attempts + 1, delivered_at = %(now)s,
    next_attempt_at = NULL
WHERE id = ANY(%(ids)s::bigint[])
"""


@transaction.atomic
def deliveries_succeeded_record(
    *, endpoint_id: int, succeeded: list[tuple[WebhookDelivery, SendResult, datetime]]
) -> int:
    """Record a run of 2xx attempts of one endpoint: attempt rows, deliveries ``succeeded``, the
    endpoint's failure state cleared (under its row lock, as every attempt record)."""
    if not succeeded:
        return 0
    now = timezone.now()
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    WebhookAttempt.objects.bulk_create(
        WebhookAttempt(
            delivery=d,
            number=d.attempts + 1,
            status_code=r.status_code,
            latency_ms=r.latency_ms,
            error="",
            succeeded=True,
        )
        for d, r, _ in succeeded
    )
    with connection.cursor() as cur:
        cur.execute(_SUCCEEDED_SQL, {"now": now, "ids": [d.pk for d, _, _ in succeeded]})
    if endpoint.failing_since is not None or endpoint.paused_until is not None:
        endpoint.failing_since = None
        endpoint.paused_until = None
        endpoint.save(update_fields=["failing_since", "paused_until", "updated_at"])
    for d, r, occurred_at in succeeded:
        d.attempts += 1
        attempt_recorded(d, r, "succeeded", (now - occurred_at).total_seconds())
    return len(succeeded)


def retry_delay(attempt: int) -> float | None:
    """Seconds before the retry after failed attempt number ``attempt`` (jittered +-20 %), or
    None when the schedule is exhausted."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempt > len(schedule):
        return None
    return float(schedule[attempt - 1]) * random.uniform(0.8, 1.2)


def _disable(endpoint: WebhookEndpoint, reason: str, now: datetime) -> None:
    endpoint.is_active = False
    endpoint.disabled_reason = reason[:255]
    endpoint.disabled_at = now
    endpoint.paused_until = None
    logger.warning("webhook endpoint disabled", endpoint_id=endpoint.pk, reason=reason)


@transaction.atomic
def delivery_attempt_record(
    *,
    endpoint_id: int,
    delivery_id: int,
    result: SendResult,
    occurred_at: datetime | None = None,
    final: bool = False,
) -> str:
    """Record one attempt (a failure, or a single success) and what follows from it.

    Locks the endpoint row, then the delivery row. 2xx: delivered, the endpoint's failure state
    cleared. 410: the endpoint is disabled. Otherwise the delivery is retried after the next
    step of ``WEBHOOK_RETRY_SCHEDULE`` (the endpoint paused until then) or, past its end, given
    up; an endpoint failing for ``WEBHOOK_DISABLE_AFTER_HOURS`` is disabled. Returns
    ``succeeded``, ``retry``, ``gave_up`` or ``disabled``."""
    now = timezone.now()
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
    delivery.attempts += 1
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error=result.error,
        succeeded=result.ok,
    )
    if result.ok:
        outcome = "succeeded"
        delivery.status = Status.SUCCEEDED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        endpoint.failing_since = None
        endpoint.paused_until = None
    else:
        endpoint.failing_since = endpoint.failing_since or now
        delay = None if final else retry_delay(delivery.attempts)
        if result.status_code == 410:
            outcome = "disabled"
            delivery.next_attempt_at = None
            _disable(endpoint, "the receiver answered 410 Gone", now)
        elif delay is None:
            outcome = "gave_up"
            delivery.status = Status.FAILED
            delivery.next_attempt_at = None
            endpoint.paused_until = None
        else:
            outcome = "retry"
            delivery.next_attempt_at = now + timedelta(seconds=delay)
            endpoint.paused_until = delivery.next_attempt_at
        limit = timedelta(hours=float(settings.WEBHOOK_DISABLE_AFTER_HOURS))
        if endpoint.is_active and now - endpoint.failing_since >= limit:
            outcome = "disabled"
            _disable(
                endpoint,
                f"failing for more than {settings.WEBHOOK_DISABLE_AFTER_HOURS:g} hours",
                now,
            )
    delivery.save()
    endpoint.save()
    lag = (now - occurred_at).total_seconds() if occurred_at and result.ok else None
    attempt_recorded(delivery, result, outcome, lag)
    return outcome


def attempt_recorded(
    delivery: WebhookDelivery, result: SendResult, outcome: str, lag: float | None
) -> None:
    """Called once per recorded attempt, success or failure: the one place that sees each
    attempt's outcome, latency and (on success) the lag from the event to its receipt. Logs it."""
    logger.info(
        "webhook delivery",
        endpoint_id=delivery.endpoint_id,
        event_id=delivery.event_id,
        attempt=delivery.attempts,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        lag_s=lag,
        outcome=outcome,
        error=result.error,
    )
    metrics.webhook_delivery(outcome, lag)


@transaction.atomic
def delivery_retry(*, endpoint_id: int, event_id: int) -> WebhookDelivery:
    """Send one delivery again (whatever its state): pending now, the endpoint unpaused; the
    next dispatch defers its job."""
    endpoint = _get(endpoint_id, lock=True)
    delivery = (
        WebhookDelivery.objects.select_for_update()
        .filter(endpoint=endpoint, event_id=event_id)
        .first()
    )
    if delivery is None:
        raise NotFound("delivery", event_id)
    delivery.status = Status.PENDING
    delivery.next_attempt_at = None
    delivery.save(update_fields=["status", "next_attempt_at"])
    endpoint.paused_until = None
    endpoint.save(update_fields=["paused_until", "updated_at"])
    return delivery


# ----- retention --------------------------------------------------------------------------------


def events_delete_expired(*, now: datetime) -> tuple[int, int]:
    """Delete events older than ``EVENT_RETENTION_DAYS`` and the deliveries (with attempts)
    created before the same cutoff; (events, deliveries) deleted. Set-based."""
    cutoff = now - timedelta(days=settings.EVENT_RETENTION_DAYS)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "DELETE FROM fulfillment_webhookattempt WHERE delivery_id IN "
            "(SELECT id FROM fulfillment_webhookdelivery WHERE created_at < %s)",
            [cutoff],
        )
        cur.execute("DELETE FROM fulfillment_webhookdelivery WHERE created_at < %s", [cutoff])
        deliveries = cur.rowcount
        cur.execute("DELETE FROM fulfillment_event WHERE occurred_at < %s", [cutoff])
        events = cur.rowcount
    return events, deliveries
