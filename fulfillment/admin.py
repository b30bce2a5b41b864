from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from fulfillment.models import (
    ApiKey,
    DailyReport,
    Event,
    IdempotencyRecord,
    Order,
    OrderLine,
    Product,
    ReconciliationRun,
    StockLevel,
    StockMovement,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from fulfillment.selectors.inventory import LOW_STOCK
from fulfillment.services import webhooks
from fulfillment.services.api_keys import new_key_material
from fulfillment.services.inventory import stock_threshold_set


class NoWritesAdmin(admin.ModelAdmin):
    """Rows that only the services write: viewable by staff, never added, edited or deleted from
    a form."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StockInline(admin.StackedInline):
    """Read-only here: numbers change through the inventory services, the threshold through the
    stock level page (a whole-row save from a form could overwrite concurrent stock changes)."""

    model = StockLevel
    can_delete = False
    fields = readonly_fields = ("on_hand", "reserved", "low_stock_threshold", "version")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LowStockFilter(admin.SimpleListFilter):
    title = "low stock"
    parameter_name = "low_stock"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Low stock"), ("no", "Enough stock")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(LOW_STOCK)
        if self.value() == "no":
            return queryset.exclude(LOW_STOCK)
        return queryset


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("id", "sku", "name", "price", "is_active", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("sku", "name")
    readonly_fields = ("version", "created_at", "updated_at")
    inlines = [StockInline]


@admin.register(StockLevel)
class StockLevelAdmin(admin.ModelAdmin):
    """Stock levels with available and low-stock flags. Only the threshold is editable, and it is
    saved through ``stock_threshold_set`` (one column), never as a whole-row save."""

    list_display = (
        "product",
        "on_hand",
        "reserved",
        "available_units",
        "low_stock_threshold",
        "low_stock",
        "version",
        "updated_at",
    )
    list_select_related = ("product",)
    list_filter = (LowStockFilter, "product__is_active")
    search_fields = ("product__sku", "product__name")
    readonly_fields = ("product", "on_hand", "reserved", "available_units", "version", "updated_at")
    fields = ("product", "on_hand", "reserved", "available_units", "low_stock_threshold", "version")

    def get_queryset(self, request: HttpRequest) -> QuerySet[StockLevel]:
        return super().get_queryset(request).annotate(available_db=F("on_hand") - F("reserved"))

    @admin.display(description="available", ordering="available_db")
    def available_units(self, obj: StockLevel) -> int:
        return obj.available

    @admin.display(boolean=True, description="low stock")
    def low_stock(self, obj: StockLevel) -> bool:
        return obj.is_low

    def save_model(self, request: HttpRequest, obj: StockLevel, form: Any, change: bool) -> None:
        stock_threshold_set(product_id=obj.product_id, threshold=obj.low_stock_threshold)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StockMovement)
class StockMovementAdmin(NoWritesAdmin):
    """The ledger is append-only: readable here, never editable."""

    list_display = (
        "id",
        "created_at",
        "product",
        "kind",
        "on_hand_delta",
        "reserved_delta",
        "on_hand_after",
        "reserved_after",
        "order",
        "actor",
        "reason",
    )
    list_filter = ("kind", "created_at")
    list_select_related = ("product", "order")
    date_hierarchy = "created_at"
    search_fields = ("product__sku", "reason", "actor")
    raw_id_fields = ("product", "order")


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    readonly_fields = ("product", "quantity", "unit_price")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(NoWritesAdmin):
    """Read-only: status changes go through the services (API, pipeline), never a form."""

    list_display = ("order_id", "customer_name", "status", "priority", "total_amount", "created_at")
    list_filter = ("status", "priority")
    search_fields = ("order_id", "customer_email", "customer_name")
    inlines = [OrderLineInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created here or with ``manage.py create_api_key``; the raw key is shown once."""

    list_display = ("name", "role", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("role",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = ["name", "role", "throttle_rate"]
        return fields if obj is None else [*fields, *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            obj.prefix, raw_key, obj.hashed_secret = new_key_material()
            super().save_model(request, obj, form, change)
            messages.warning(
                request, f"API key for {obj.name!r}: {raw_key}  (shown only now; copy it)"
            )
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} API key(s) revoked.")


class ReadOnlyAdmin(NoWritesAdmin):
    """Records that jobs and requests write: viewable by staff, never added, edited or deleted
    from a form (every field is shown read-only)."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f.name for f in self.model._meta.get_fields() if f.concrete]


@admin.register(DailyReport)
class DailyReportAdmin(ReadOnlyAdmin):
    """Written by the daily report job; the API serves the same rows."""

    list_display = (
        "date",
        "orders_created",
        "revenue",
        "avg_seconds_to_processing",
        "avg_seconds_to_shipped",
        "avg_seconds_to_delivered",
        "generated_at",
    )
    date_hierarchy = "date"


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    """Inventory reconciliation results; a run with drift lists each product's difference."""

    list_display = ("created_at", "ok", "products_checked", "drift_count", "duration_ms")
    list_filter = ("ok", "created_at")
    date_hierarchy = "created_at"


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    """Stored responses of requests sent with an ``Idempotency-Key`` header."""

    list_display = ("key", "scope", "status_code", "created_at")
    list_filter = ("status_code", "created_at")
    search_fields = ("key", "scope")
    date_hierarchy = "created_at"


# ----- events and webhooks ----------------------------------------------------------------------


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """The outbox: what the feed serves and the webhooks deliver (written by the services)."""

    list_display = ("id", "type", "occurred_at")
    list_filter = ("type",)
    date_hierarchy = "occurred_at"


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdmin):
    """Subscribed receivers, their state and why one was disabled. Created through the API
    (which shows the signing secret once); enabled, disabled and re-keyed here."""

    list_display = (
        "id",
        "url",
        "event_types",
        "is_active",
        "disabled_reason",
        "failing_since",
        "paused_until",
    )
    list_filter = ("is_active",)
    search_fields = ("url", "description")
    exclude = ("secret",)
    actions = ["enable", "disable", "rotate_secret"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f for f in super().get_readonly_fields(request, obj) if f != "secret"]

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Any], active: bool) -> None:
        for pk in queryset.values_list("pk", flat=True):
            webhooks.webhook_endpoint_update(endpoint_id=pk, is_active=active)
        self.message_user(request, f"{queryset.count()} endpoint(s) updated.")

    @admin.action(description="Enable the selected endpoints (pending deliveries go out)")
    def enable(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_active(request, queryset, True)

    @admin.action(description="Disable the selected endpoints")
    def disable(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._set_active(request, queryset, False)

    @admin.action(description="Rotate the signing secret (shown once)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for pk in queryset.values_list("pk", flat=True):
            _, secret = webhooks.webhook_secret_rotate(endpoint_id=pk)
            messages.warning(request, f"webhook {pk}: new secret {secret}  (shown only now)")


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ("number", "status_code", "latency_ms", "error", "succeeded", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """One event to one endpoint, with every attempt; "retry" sends it again."""

    list_display = (
        "event_id",
        "event_type",
        "endpoint",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
    )
    list_filter = ("status", "event_type")
    list_select_related = ("endpoint",)
    inlines = [WebhookAttemptInline]
    actions = ["retry"]

    @admin.action(description="Send the selected deliveries again")
    def retry(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        rows = list(queryset.values_list("endpoint_id", "event_id"))
        for endpoint_id, event_id in rows:
            webhooks.delivery_retry(endpoint_id=endpoint_id, event_id=event_id)
        self.message_user(request, f"{len(rows)} delivery(ies) will be sent again.")


# The admin index links to the operations page (/ops/).
admin.site.index_template = "admin/fulfillment_index.html"
