"""Domain model. Invariants that fit in the database are constraints; history is pghistory triggers."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, ClassVar

import pghistory
import pgtrigger
from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q

from fulfillment.events import EventType
from fulfillment.lifecycle import OrderPriority, OrderStatus


class Product(models.Model):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    price = models.DecimalField(max_digits=12, decimal_places=2)
    is_active = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="product_price_gte_0")
        ]
        indexes = [models.Index(fields=["name"], name="product_name_idx")]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


def default_low_stock_threshold() -> int:
    return int(settings.DEFAULT_LOW_STOCK_THRESHOLD)


def low_stock_q(prefix: str = "") -> Q:
    """Low stock, the one rule: available (on_hand - reserved) at or below the threshold.
    ``prefix`` reaches the stock level through a relation (``"stock__"`` from Product);
    :attr:`StockLevel.is_low` is the same rule on a loaded row."""
    return Q(
        **{
            f"{prefix}low_stock_threshold__gte": F(f"{prefix}on_hand") - F(f"{prefix}reserved"),
        }
    )


class StockLevel(models.Model):
    """Stock of one product. ``available = on_hand - reserved``; CHECKs are the last defence."""

    product = models.OneToOneField(Product, on_delete=models.CASCADE, related_name="stock")
    on_hand = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)
    low_stock_threshold = models.PositiveIntegerField(default=default_low_stock_threshold)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["product_id"]
        constraints = [
            models.CheckConstraint(condition=Q(on_hand__gte=0), name="stock_on_hand_gte_0"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="stock_reserved_gte_0"),
            models.CheckConstraint(
                condition=Q(reserved__lte=F("on_hand")), name="stock_reserved_lte_on_hand"
            ),
        ]

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved

    @property
    def is_low(self) -> bool:
        """:func:`low_stock_q` on this row."""
        return self.available <= self.low_stock_threshold

    def __str__(self) -> str:
        return (
            f"stock of product {self.product_id}: {self.on_hand} on hand, {self.reserved} reserved"
        )


class AppendOnlyQuerySet(models.QuerySet["StockMovement"]):
    def update(self, **kwargs: Any) -> int:
        raise TypeError("stock movements are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise TypeError("stock movements are append-only")


class StockMovement(models.Model):
    """Append-only inventory ledger: one row per change of on_hand or reserved.

    Invariant: per product, on_hand == sum(on_hand_delta) and reserved == sum(reserved_delta).
    A database trigger refuses UPDATE and DELETE, so the ledger cannot be rewritten.
    """

    class Kind(models.TextChoices):
        RECEIVE = "receive"
        ADJUST = "adjust"
        COUNT = "count"
        RESERVE = "reserve"
        RELEASE = "release"
        SHIP = "ship"
        RETURN = "return"

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="movements")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    on_hand_delta = models.IntegerField()
    reserved_delta = models.IntegerField()
    on_hand_after = models.IntegerField()
    reserved_after = models.IntegerField()
    order = models.ForeignKey(
        "Order", null=True, blank=True, on_delete=models.PROTECT, related_name="movements"
    )
    reason = models.CharField(max_length=255, blank=True, default="")
    actor = models.CharField(max_length=128, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["product", "-id"], name="movement_product_idx")]
        triggers: ClassVar[list[pgtrigger.Trigger]] = [
            pgtrigger.Protect(name="append_only", operation=pgtrigger.Update | pgtrigger.Delete)
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise TypeError("stock movements are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise TypeError("stock movements are append-only")


class Order(models.Model):
    """An order; its statuses and the moves between them are defined in ``fulfillment.lifecycle``."""

    Status = OrderStatus
    Priority = OrderPriority

    order_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    customer_name = models.CharField(max_length=200)
    customer_email = models.EmailField()
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.NORMAL)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    version = models.PositiveIntegerField(default=1)
    total_amount = models.DecimalField(max_digits=14, decimal_places=2, default=0)
    shipping_address = models.CharField(max_length=255, blank=True, default="")
    shipping_city = models.CharField(max_length=100, blank=True, default="")
    shipping_postal_code = models.CharField(max_length=20, blank=True, default="")
    shipping_country = models.CharField(max_length=2, blank=True, default="")
    tracking_number = models.CharField(max_length=64, blank=True, default="")
    failure_reason = models.CharField(max_length=255, blank=True, default="")
    # The Idempotency-Key the order was created with, as information for operators. Not unique:
    # keys are scoped to the caller and expire (``IdempotencyRecord`` enforces both).
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    recovery_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    processing_at = models.DateTimeField(null=True, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "status_changed_at"], name="order_status_changed_idx"),
            # A status filter walks its own status, newest first: O(page) at any table size.
            models.Index(fields=["status", "-created_at", "-id"], name="order_status_created_idx"),
            models.Index(fields=["-created_at", "-id"], name="order_created_idx"),
            models.Index(fields=["customer_email", "-created_at"], name="order_customer_idx"),
            models.Index(fields=["priority", "-created_at"], name="order_priority_idx"),
        ]

    def __str__(self) -> str:
        return f"order {self.order_id} ({self.status})"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "product"], name="orderline_one_per_product"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="orderline_quantity_gt_0"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x product {self.product_id}"


# Audit: trigger-based history (insert and update events) with request/job context.
pghistory.track(pghistory.InsertEvent(), pghistory.UpdateEvent())(Product)
pghistory.track(pghistory.InsertEvent(), pghistory.UpdateEvent())(StockLevel)
pghistory.track(pghistory.InsertEvent(), pghistory.UpdateEvent())(Order)
pghistory.track(pghistory.InsertEvent(), pghistory.UpdateEvent())(OrderLine)


class IdempotencyRecord(models.Model):
    """The stored response of a request made with an ``Idempotency-Key`` header.

    Unique on (owner, scope, key): a key belongs to the caller that sent it (its API key or user),
    so two callers never see each other's responses. The first request inserts the row inside its
    own transaction, so a concurrent retry blocks on the unique index until that transaction ends,
    then reads the committed response (or, if the first one rolled back, takes over). A record
    older than ``IDEMPOTENCY_RETENTION_HOURS`` is expired: a request with its key runs as new.
    """

    owner = models.CharField(max_length=64, default="")
    key = models.CharField(max_length=255)
    scope = models.CharField(max_length=64)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True)
    body = models.JSONField(null=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "scope", "key"], name="idempotency_owner_scope_key_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"idempotency {self.owner} {self.scope}:{self.key}"


class DailyReport(models.Model):
    """One row per day, written by the midnight job (re-running it replaces the row)."""

    date = models.DateField(unique=True)
    orders_created = models.PositiveIntegerField(default=0)
    counts_by_status = models.JSONField(default=dict)
    revenue = models.DecimalField(max_digits=16, decimal_places=2, default=0)
    avg_seconds_to_processing = models.FloatField(null=True, blank=True)
    avg_seconds_to_shipped = models.FloatField(null=True, blank=True)
    avg_seconds_to_delivered = models.FloatField(null=True, blank=True)
    generated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-date"]

    def __str__(self) -> str:
        return f"daily report {self.date}"


class ReconciliationRun(models.Model):
    """The result of one inventory reconciliation (hourly job); /health/ shows the latest."""

    ok = models.BooleanField()
    products_checked = models.PositiveIntegerField(default=0)
    drift_count = models.PositiveIntegerField(default=0)
    drifts = models.JSONField(default=list)
    duration_ms = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"reconciliation {self.created_at:%Y-%m-%d %H:%M} ({'ok' if self.ok else 'drift'})"


# A request rate as THROTTLE_RATE_KEY spells it: "<requests>/<s|sec|m|min|h|hour|d|day>".
THROTTLE_RATE_PATTERN = r"^[1-9][0-9]{0,11}/(s|sec|m|min|h|hour|d|day)$"
API_KEY_PREFIX = "of"


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_lookup_prefix(raw_key: str) -> str | None:
    """The lookup prefix of a well-formed key (``of_<prefix>_<secret>``), else None."""
    parts = raw_key.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


class ApiKey(models.Model):
    """A client's API key. Only a hash of the secret is stored; the key is shown once at creation.

    A key reads ``of_<prefix>_<secret>``: ``prefix`` (unique, not secret) finds the row in one
    index lookup, then the SHA-256 of the whole key is compared in constant time. The secret has
    256 bits of entropy, so a fast hash is enough (no password-style stretching on each request).
    """

    class Role(models.TextChoices):
        VIEWER = "viewer"
        OPERATOR = "operator"
        ADMIN = "admin"

    name = models.CharField(max_length=100, unique=True)
    role = models.CharField(max_length=16, choices=Role.choices)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    hashed_secret = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # This key's own limit (e.g. a load-test key's, which must not measure the throttle).
    throttle_rate = models.CharField(
        max_length=32,
        blank=True,
        default="",
        validators=[RegexValidator(THROTTLE_RATE_PATTERN, "a rate such as 1200/min")],
        help_text="requests allowed to this key, e.g. 1200/min; empty: THROTTLE_RATE_KEY",
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"
        constraints = [
            models.CheckConstraint(
                condition=Q(role__in=["viewer", "operator", "admin"]), name="apikey_role_valid"
            ),
            models.CheckConstraint(
                condition=Q(throttle_rate="") | Q(throttle_rate__regex=THROTTLE_RATE_PATTERN),
                name="apikey_throttle_rate_valid",
            ),
        ]

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def __str__(self) -> str:
        return f"{self.name} ({self.role}{', revoked' if self.revoked_at else ''})"


# Key lifecycle (created, role or rate changed, renamed, revoked), with who did it; not the secret's hash
# nor the last-used stamp, which changes on use.
pghistory.track(
    pghistory.InsertEvent(),
    pghistory.UpdateEvent(
        condition=pghistory.AnyChange("name", "role", "revoked_at", "throttle_rate")
    ),
    exclude=["hashed_secret", "last_used_at"],
)(ApiKey)


# ----- analytics rollups ------------------------------------------------------------------------
# Aggregates that the ``analytics_refresh`` job keeps up to date (services/analytics.py) so that
# the analytics endpoints read a few thousand rows instead of millions of orders. Orders are
# rolled up by the hour (UTC) they were created in, stock movements by the day they happened in.


class OrderHourRollup(models.Model):
    """Orders created in one hour that are now in one status, and their total amount."""

    hour = models.DateTimeField()
    status = models.CharField(max_length=16, choices=OrderStatus.choices)
    orders = models.PositiveIntegerField(default=0)
    amount = models.DecimalField(max_digits=18, decimal_places=2, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "status"], name="order_hour_rollup_uniq")
        ]


class StageHourRollup(models.Model):
    """Orders created in one hour, per pipeline stage: how many entered the stage, completed it,
    failed in it, and a histogram of the seconds spent in it (``buckets[i]`` counts the
    durations up to ``STAGE_BUCKET_BOUNDS[i]``, above the previous bound; the last counts the
    rest)."""

    hour = models.DateTimeField()
    stage = models.CharField(max_length=16)
    entered = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    seconds_sum = models.FloatField(default=0)
    buckets = ArrayField(models.IntegerField(), default=list)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "stage"], name="stage_hour_rollup_uniq")
        ]


class CustomerDayRollup(models.Model):
    """One customer's orders created on one day and their revenue: cancelled and failed orders
    count in ``orders`` but not in ``revenue_cents`` nor ``revenue_orders``."""

    day = models.DateField()
    # A 64-bit hash of the email (PostgreSQL's hashtextextended): windows group by it, which is
    # several times cheaper than grouping by the text.
    customer_key = models.BigIntegerField()
    customer_email = models.CharField(max_length=254)
    orders = models.PositiveIntegerField(default=0)
    revenue_orders = models.PositiveIntegerField(default=0)
    # In cents: a window sums tens of thousands of rows, and integers sum faster than numerics.
    revenue_cents = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # Covering: a window's figures come from an index-only scan.
            models.UniqueConstraint(
                fields=["day", "customer_key"],
                include=["orders", "revenue_orders", "revenue_cents"],
                name="customer_day_rollup_uniq",
            )
        ]
        indexes = [models.Index(fields=["customer_key"], name="customer_day_rollup_key_idx")]


class ProductDayRollup(models.Model):
    """One product's stock movements on one day: units shipped and the net change of on-hand."""

    day = models.DateField()
    product = models.ForeignKey(Product, on_delete=models.CASCADE, db_constraint=False)
    units_shipped = models.PositiveIntegerField(default=0)
    on_hand_delta = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "product"], name="product_day_rollup_uniq")
        ]


class RollupState(models.Model):
    """When the rollups were last refreshed (one row, ``name="analytics"``)."""

    name = models.CharField(max_length=32, unique=True)
    refreshed_at = models.DateTimeField()
    duration_ms = models.FloatField(default=0)


# Upper bounds (seconds) of the stage-duration histogram buckets of ``StageHourRollup``; a last
# bucket above them counts the rest.
STAGE_BUCKET_BOUNDS: tuple[float, ...] = (
    0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400,
)  # fmt: skip
# ----- events out: the outbox, webhook endpoints and their deliveries ---------------------------


class Event(models.Model):
    """An event of the outbox, written by the same statement or transaction as the change it
    reports. ``id`` is set by the database (``fulfillment.events.EVENT_ID_SQL``): monotonic in
    the writing transaction's id, which is what makes the feed gap-free."""

    id = models.BigIntegerField(primary_key=True, editable=False)
    type = models.CharField(max_length=32, choices=EventType.choices)
    occurred_at = models.DateTimeField()
    data = models.JSONField(default=dict)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["type", "id"], name="event_type_idx"),
            models.Index(fields=["occurred_at"], name="event_occurred_idx"),
        ]

    def __str__(self) -> str:
        return f"event {self.id} {self.type}"


class WebhookEndpoint(models.Model):
    """A receiver subscribed to event types (``["*"]``: all). The signing secret is stored as
    written (``whsec_<base64>``) because signing needs it; the API shows it only once."""

    url = models.URLField(max_length=2000)
    event_types = ArrayField(models.CharField(max_length=32), default=list)
    description = models.CharField(max_length=500, blank=True, default="")
    secret = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    # Failing since (the first failure after the last success); drives automatic disabling.
    failing_since = models.DateTimeField(null=True, blank=True)
    # No delivery to this endpoint before this time (the backoff of its oldest pending delivery).
    paused_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"webhook {self.pk} {self.url}"


class WebhookDelivery(models.Model):
    """One event to one endpoint: pending until a 2xx (succeeded) or the retry schedule ran
    out (failed). ``event_id`` is not a foreign key: events expire on their own schedule."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_id = models.BigIntegerField()
    event_type = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-event_id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="delivery_one_per_event")
        ]
        indexes = [
            models.Index(
                fields=["endpoint", "event_id"],
                name="delivery_pending_idx",
                condition=Q(status="pending"),
            ),
            models.Index(fields=["created_at"], name="delivery_created_idx"),
        ]

    def __str__(self) -> str:
        return f"delivery of event {self.event_id} to webhook {self.endpoint_id}"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery: its answer (or error) and how long it took."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="tries")
    number = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    error = models.CharField(max_length=255, blank=True, default="")
    succeeded = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["delivery_id", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}"


class WebhookDispatchState(models.Model):
    """One row: the id of the last event the dispatcher turned into deliveries."""

    last_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"dispatched up to event {self.last_event_id}"
