"""Domain errors: each carries data and a stable ``code``; none knows about HTTP.

``config.api`` maps every code to an HTTP status and the one error shape
(``{"error": {"code", "message", "details"}}``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


class FulfillmentError(Exception):
    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(FulfillmentError):
    code = "not_found"

    def __init__(self, what: str, key: Any) -> None:
        super().__init__(f"{what} {key} not found", resource=what, id=str(key))


class ValidationFailed(FulfillmentError):
    code = "validation_error"


class Conflict(FulfillmentError):
    code = "conflict"


class ProductUnavailable(Conflict):
    """An order names a product that does not exist or is not active: the request is well formed
    but conflicts with the catalogue as it is now (409)."""

    code = "product_unavailable"


class VersionConflict(Conflict):
    code = "version_conflict"

    def __init__(self, what: str, key: Any, expected: int, current: int) -> None:
        super().__init__(
            f"{what} {key} is at version {current}, not the expected {expected}",
            resource=what,
            id=str(key),
            expected_version=expected,
            current_version=current,
        )


class InvalidStockChange(Conflict):
    """The change would break a stock invariant (negative on_hand, reserved > on_hand) or, for a
    count, records no difference from the current on_hand."""

    code = "invalid_stock_change"


@dataclass(frozen=True)
class Shortage:
    product_id: int
    requested: int
    available: int
    index: int | None = None  # position of the order in a bulk request


class InsufficientStock(Conflict):
    code = "insufficient_stock"

    def __init__(self, shortages: list[Shortage]) -> None:
        super().__init__(
            "not enough stock for %d line(s)" % len(shortages),
            shortages=[{k: v for k, v in asdict(s).items() if v is not None} for s in shortages],
        )
        self.shortages = shortages


class InvalidTransition(Conflict):
    code = "invalid_transition"

    def __init__(self, order_id: Any, current: str, target: str) -> None:
        super().__init__(
            f"order {order_id} cannot go from {current} to {target}",
            order_id=str(order_id),
            current=current,
            target=target,
        )


class IdempotencyMismatch(Conflict):
    code = "idempotency_mismatch"


class ServiceUnavailable(FulfillmentError):
    code = "service_unavailable"


class PipelineBehind(ServiceUnavailable):
    """Intake refuses new orders while the pipeline is behind (``fulfillment.backpressure``)."""

    code = "pipeline_behind"

    def __init__(self, *, lag_s: float, threshold_s: float, retry_after: int) -> None:
        super().__init__(
            "the fulfillment pipeline is behind, retry later",
            lag_s=lag_s,
            threshold_s=threshold_s,
            retry_after=retry_after,
        )
