"""The order lifecycle, defined once: statuses, priorities, allowed moves, what each move does.

pending --> processing --> shipped --> delivered
   |             |
   +--> cancelled (before shipping)
   +--> failed    (simulated failure, retries exhausted, stale timeout)

Everything else reads it from here: the model's choices, the schemas' literals, the stage
statement (sources, timestamp column, stock effect), the stage jobs (``NEXT_STAGE``), the
reports and the stale-order definition. This module imports nothing of the application.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class OrderStatus(models.TextChoices):
    PENDING = "pending"
    PROCESSING = "processing"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    FAILED = "failed"


class OrderPriority(models.TextChoices):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


Status = OrderStatus

# Each status an order may move to from each non-terminal status.
ALLOWED: dict[str, frozenset[str]] = {
    Status.PENDING: frozenset({Status.PROCESSING, Status.CANCELLED, Status.FAILED}),
    Status.PROCESSING: frozenset({Status.SHIPPED, Status.CANCELLED, Status.FAILED}),
    Status.SHIPPED: frozenset({Status.DELIVERED}),
}
TERMINAL: frozenset[str] = frozenset(set(Status.values) - set(ALLOWED))
# The statuses that hold a stock reservation (released on cancel/failure, shipped on shipping).
OPEN: frozenset[str] = frozenset({Status.PENDING, Status.PROCESSING})
# Not reached by the normal flow: counted out of revenue.
UNSUCCESSFUL: frozenset[str] = frozenset({Status.CANCELLED, Status.FAILED})

# Each status a target can be reached from (the stage statement's ``status = ANY(sources)``).
SOURCES: dict[str, list[str]] = {}
for _source, _targets in ALLOWED.items():
    for _target in sorted(_targets):
        SOURCES.setdefault(_target, []).append(_source)

# The stage a job moves an order into, keyed by the status the job expects.
NEXT_STAGE: dict[str, str] = {
    Status.PENDING: Status.PROCESSING,
    Status.PROCESSING: Status.SHIPPED,
    Status.SHIPPED: Status.DELIVERED,
}

# The timestamp column each status sets when an order reaches it (in lifecycle order).
STAGE_TIMESTAMPS: dict[str, str] = {
    Status.PENDING: "created_at",
    Status.PROCESSING: "processing_at",
    Status.SHIPPED: "shipped_at",
    Status.DELIVERED: "delivered_at",
    Status.CANCELLED: "cancelled_at",
    Status.FAILED: "failed_at",
}

# The stock effect of reaching each target: (ledger kind, sign of the on_hand change per unit);
# reserved always drops by the line quantity. The kinds are ``StockMovement.Kind`` values.
STOCK_EFFECT: dict[str, tuple[str, int]] = {
    Status.SHIPPED: ("ship", -1),
    Status.CANCELLED: ("release", 0),
    Status.FAILED: ("release", 0),
}


def can_move(current: str, target: str) -> bool:
    """Whether an order in ``current`` may move to ``target``."""
    return target in ALLOWED.get(current, frozenset())


def sql_literal(status: str) -> str:
    """A status as an SQL string literal, for the raw statements (values are plain words)."""
    assert status in Status.values and status.isalpha()
    return f"'{status}'"


# ----- stale orders ---------------------------------------------------------------------------


def stale_thresholds() -> dict[str, timedelta]:
    """How long an order may stay in each non-terminal status before it counts as stale."""
    seconds: dict[str, int] = settings.STALE_AFTER_SECONDS
    return {status: timedelta(seconds=s) for status, s in seconds.items()}


def stale_q() -> Q:
    """A filter on Order matching the stale orders now: a non-terminal order whose
    ``status_changed_at`` is older than the threshold of its status. Used by the stale-order
    job, ``check_stale`` and ``GET /orders/?stale_only=true``."""
    now = timezone.now()
    q = Q(pk__in=[])
    for status, threshold in stale_thresholds().items():
        q |= Q(status=status, status_changed_at__lt=now - threshold)
    return q
