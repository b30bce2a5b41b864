"""Webhook endpoints (admin role): subscribe, change, rotate the secret, ping, deliveries."""

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router
from ninja.pagination import LimitOffsetPagination, paginate

from fulfillment.models import WebhookDelivery, WebhookEndpoint
from fulfillment.schemas import ErrorOut
from fulfillment.schemas.events import (
    DeliveryOut,
    DeliveryParams,
    PingOut,
    WebhookIn,
    WebhookOut,
    WebhookPatchIn,
    WebhookSecretOut,
)
from fulfillment.selectors import events as selectors
from fulfillment.services import webhooks as services

router = Router(tags=["webhooks"])
ERRORS = {404: ErrorOut, 422: ErrorOut}


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> dict[str, Any]:
    return {**WebhookOut.model_validate(endpoint).model_dump(), "secret": secret}


@router.post("/", response={201: WebhookSecretOut, 422: ErrorOut})
def create_webhook(request: HttpRequest, payload: WebhookIn) -> tuple[int, dict[str, Any]]:
    """Subscribe a URL; the answer carries the signing secret, shown only this once."""
    endpoint, secret = services.webhook_endpoint_create(
        url=payload.url, event_types=list(payload.event_types), description=payload.description
    )
    return 201, _with_secret(endpoint, secret)


@router.get("/", response=list[WebhookOut])
@paginate(LimitOffsetPagination)
def list_webhooks(request: HttpRequest):  # type: ignore[no-untyped-def]
    return selectors.webhook_list()


@router.get("/{int:endpoint_id}/", response={200: WebhookOut, **ERRORS})
def get_webhook(request: HttpRequest, endpoint_id: int) -> WebhookEndpoint:
    return selectors.webhook_get(endpoint_id=endpoint_id)


@router.patch("/{int:endpoint_id}/", response={200: WebhookOut, **ERRORS})
def update_webhook(
    request: HttpRequest, endpoint_id: int, payload: WebhookPatchIn
) -> WebhookEndpoint:
    """Change the URL, the event types, the description or ``is_active`` (re-activating clears
    the disabled reason; pending deliveries then go out)."""
    fields = payload.dict(exclude_unset=True)
    return services.webhook_endpoint_update(endpoint_id=endpoint_id, **fields)


@router.delete("/{int:endpoint_id}/", response={204: None, **ERRORS})
def delete_webhook(request: HttpRequest, endpoint_id: int) -> tuple[int, None]:
    services.webhook_endpoint_delete(endpoint_id=endpoint_id)
    return 204, None


@router.post("/{int:endpoint_id}/rotate_secret/", response={200: WebhookSecretOut, **ERRORS})
def rotate_secret(request: HttpRequest, endpoint_id: int) -> dict[str, Any]:
    """A new signing secret, shown only this once; the old one stops at once."""
    endpoint, secret = services.webhook_secret_rotate(endpoint_id=endpoint_id)
    return _with_secret(endpoint, secret)


@router.post("/{int:endpoint_id}/ping/", response={200: PingOut, **ERRORS})
def ping_webhook(request: HttpRequest, endpoint_id: int) -> PingOut:
    """Send a signed ``webhook.ping`` message now and report the receiver's answer."""
    result = services.webhook_ping(endpoint_id=endpoint_id)
    return PingOut(
        ok=result.ok,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error=result.error,
    )


@router.get("/{int:endpoint_id}/deliveries/", response={200: list[DeliveryOut], **ERRORS})
@paginate(LimitOffsetPagination)
def list_deliveries(  # type: ignore[no-untyped-def]
    request: HttpRequest, endpoint_id: int, params: Query[DeliveryParams]
):
    """Deliveries, newest event first, with every attempt (status, latency, error)."""
    return selectors.delivery_list(endpoint_id=endpoint_id, status=params.status)


@router.post(
    "/{int:endpoint_id}/deliveries/{int:event_id}/retry/", response={200: DeliveryOut, **ERRORS}
)
def retry_delivery(request: HttpRequest, endpoint_id: int, event_id: int) -> WebhookDelivery:
    """Send one delivery again, whatever its state (at the next dispatch, within a second)."""
    return services.delivery_retry(endpoint_id=endpoint_id, event_id=event_id)
