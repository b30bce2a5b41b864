"""Input rules shared by the schemas (422 before a service runs) and the services (which never
trust their callers): one set of limits and one set of messages.

The limits that are settings (``MAX_ORDER_LINES``, ``BULK_MAX_ORDERS``) are read when a request
is checked, so a changed setting applies at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.db import models

from fulfillment.errors import ValidationFailed

# ----- orders -----------------------------------------------------------------------------------

MAX_PRODUCT_ID = 2**63 - 1
MAX_LINE_QUANTITY = 1_000_000

EMPTY_ORDER = "an order needs at least one item"
DUPLICATE_PRODUCT = "each product may appear only once per order"
QUANTITY_NOT_POSITIVE = "quantity must be positive"
EMPTY_BULK = "orders must not be empty"


def too_many_lines() -> str:
    return f"an order may have at most {settings.MAX_ORDER_LINES} lines"


def too_many_orders() -> str:
    return f"at most {settings.BULK_MAX_ORDERS} orders per request"


def order_items_problem(items: Sequence[tuple[int, int]]) -> tuple[str, str] | None:
    """``(field, message)`` of the first rule ``(product_id, quantity)`` lines break, or None."""
    if not items:
        return "items", EMPTY_ORDER
    if len(items) > settings.MAX_ORDER_LINES:
        return "items", too_many_lines()
    pids = [pid for pid, _ in items]
    if len(set(pids)) != len(pids):
        return "items", DUPLICATE_PRODUCT
    if any(qty <= 0 for _, qty in items):
        return "items.quantity", QUANTITY_NOT_POSITIVE
    return None


def validate_order_items(items: Sequence[tuple[int, int]], *, index: int | None = None) -> None:
    """Raise ValidationFailed for the first broken rule (``index``: the order in a bulk request)."""
    problem = order_items_problem(items)
    if problem is None:
        return
    field, message = problem
    where = {} if index is None else {"index": index}
    extra = {"max_lines": settings.MAX_ORDER_LINES} if message == too_many_lines() else {}
    raise ValidationFailed(message, field=field, **extra, **where)


def validate_bulk_size(count: int) -> None:
    if count == 0:
        raise ValidationFailed(EMPTY_BULK, field="orders")
    if count > settings.BULK_MAX_ORDERS:
        raise ValidationFailed(
            too_many_orders(), field="orders", max_orders=settings.BULK_MAX_ORDERS
        )


# ----- manual stock adjustments -----------------------------------------------------------------

MAX_UNITS = 1_000_000_000


class AdjustKind(models.TextChoices):
    """Ledger kinds a person may post; reserve/release/ship belong to orders and the pipeline."""

    ADJUST = "adjust"
    RECEIVE = "receive"
    RETURN = "return"
    COUNT = "count"


ADDING_KINDS = (AdjustKind.RECEIVE, AdjustKind.RETURN)


def adjustment_kind(kind: str | None, set_to: int | None) -> str:
    """The kind of an adjustment that names none: a count when it sets an absolute quantity."""
    if kind is not None:
        return str(kind)
    return AdjustKind.COUNT if set_to is not None else AdjustKind.ADJUST


def adjustment_problem(
    kind: str, quantity_change: int | None, set_to: int | None
) -> tuple[str, str] | None:
    """``(field, message)`` of the first adjustment rule broken, or None: exactly one of a signed
    ``quantity_change`` (not zero) and an absolute ``set_to`` (kind ``count`` only); receive and
    return add stock."""
    if kind not in AdjustKind.values:
        return "kind", f"kind {kind!r} is not a manual adjustment"
    if (quantity_change is None) == (set_to is None):
        return "quantity_change", "give exactly one of quantity_change and set_to"
    if quantity_change == 0:
        return "quantity_change", "quantity_change must not be zero"
    if kind == "count" and set_to is None:
        return "set_to", "kind count takes set_to (the counted quantity)"
    if kind != "count" and set_to is not None:
        return "set_to", "set_to is only valid with kind count"
    if kind in ADDING_KINDS and (quantity_change or 0) < 0:
        return "quantity_change", f"a {kind} must have a positive quantity_change"
    if set_to is not None and set_to < 0:
        return "set_to", "a count cannot be negative"
    return None


def validate_adjustment(kind: str, quantity_change: int | None, set_to: int | None) -> None:
    problem = adjustment_problem(kind, quantity_change, set_to)
    if problem is not None:
        field, message = problem
        raise ValidationFailed(message, field=field)
