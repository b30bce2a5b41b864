from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from fulfillment.models import Order, OrderLine, Product, StockLevel, StockMovement


class StockInline(admin.StackedInline):
    model = StockLevel
    can_delete = False
    readonly_fields = ("on_hand", "reserved", "version")
    fields = ("on_hand", "reserved", "low_stock_threshold", "version")


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("id", "sku", "name", "price", "is_active", "updated_at")
    list_filter = ("is_active",)
    search_fields = ("sku", "name")
    readonly_fields = ("version", "created_at", "updated_at")
    inlines = [StockInline]


@admin.register(StockLevel)
class StockLevelAdmin(admin.ModelAdmin):
    list_display = (
        "product",
        "on_hand",
        "reserved",
        "available",
        "low_stock_threshold",
        "low_stock",
        "version",
    )
    list_select_related = ("product",)
    search_fields = ("product__sku", "product__name")
    readonly_fields = ("product", "on_hand", "reserved", "version", "updated_at")

    @admin.display(boolean=True, description="low stock")
    def low_stock(self, obj: StockLevel) -> bool:
        return obj.is_low

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StockMovement)
class StockMovementAdmin(admin.ModelAdmin):
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
    list_filter = ("kind",)
    list_select_related = ("product", "order")
    search_fields = ("product__sku", "reason", "actor")
    raw_id_fields = ("product", "order")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    readonly_fields = ("product", "quantity", "unit_price")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    """Read-only: status changes go through the services (API, pipeline), never a form."""

    list_display = ("order_id", "customer_name", "status", "priority", "total_amount", "created_at")
    list_filter = ("status", "priority")
    search_fields = ("order_id", "customer_email", "customer_name")
    inlines = [OrderLineInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
