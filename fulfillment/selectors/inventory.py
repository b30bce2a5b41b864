"""Inventory reads: stock levels, the ledger and the cached summary."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, DecimalField, F, Max, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from fulfillment.cache_keys import INVENTORY_SUMMARY
from fulfillment.errors import NotFound
from fulfillment.models import Product, StockLevel, StockMovement, low_stock_q

LOW_STOCK = low_stock_q()


def stock_list(*, low_stock: bool | None = None, search: str | None = None) -> QuerySet[StockLevel]:
    qs = StockLevel.objects.select_related("product").order_by("product_id")
    if low_stock is True:
        qs = qs.filter(LOW_STOCK)
    elif low_stock is False:
        qs = qs.exclude(LOW_STOCK)
    if search:
        qs = qs.filter(Q(product__sku__icontains=search) | Q(product__name__icontains=search))
    return qs


def stock_get(*, product_id: int) -> StockLevel:
    level = StockLevel.objects.select_related("product").filter(product_id=product_id).first()
    if level is None:
        raise NotFound("product", product_id)
    return level


def movement_list(*, product_id: int, kind: str | None = None) -> QuerySet[StockMovement]:
    """The ledger of one product, newest first (index ``movement_product_idx``)."""
    if not Product.objects.filter(pk=product_id).exists():
        raise NotFound("product", product_id)
    qs = StockMovement.objects.filter(product_id=product_id).select_related("order")
    if kind:
        qs = qs.filter(kind=kind)
    return qs.order_by("-id")


def movement_get(*, movement_id: int) -> StockMovement:
    return StockMovement.objects.select_related("order").get(pk=movement_id)


def ledger_head() -> int:
    """Id of the newest ledger row (0 for an empty ledger): one backward index-only step."""
    return StockMovement.objects.aggregate(head=Max("id"))["head"] or 0


def inventory_summary() -> dict[str, Any]:
    """Totals over all stock levels, cached for ``CACHE_TTL_SECONDS`` (cache-aside).

    Every change of ``on_hand`` or ``reserved`` appends a ledger row in the same transaction, so
    the cached totals carry the ledger head they were computed at and are used only while the
    head has not moved: stock writes (intake, the pipeline, adjustments) never call Redis, and a
    committed one is seen by the next read. The head is read before the totals, so a write that
    commits in between can only make the entry look older than it is (recomputed next time).
    Writes that change the totals without a ledger row (the low-stock threshold, a product's
    price or activation, a new product with no stock) drop the key on commit
    (``services.inventory.invalidate_summary_on_commit``). Left to the TTL: a writer whose ledger
    id is below the head when it commits (ids are taken at insert, not at commit), stale until
    the next stock write or for ``CACHE_TTL_SECONDS`` at most.
    """
    head = ledger_head()
    cached = cache.get(INVENTORY_SUMMARY)
    if cached is not None and cached["ledger_head"] == head:
        return {**cached["summary"], "cached": True}
    totals = StockLevel.objects.aggregate(
        product_count=Count("id"),
        units_on_hand=Coalesce(Sum("on_hand"), 0),
        units_reserved=Coalesce(Sum("reserved"), 0),
        stock_value=Coalesce(
            Sum(F("on_hand") * F("product__price"), output_field=DecimalField(decimal_places=2)),
            Value(Decimal("0.00")),
            output_field=DecimalField(decimal_places=2),
        ),
        low_stock_count=Count("id", filter=LOW_STOCK),
    )
    summary = {
        **totals,
        "units_available": totals["units_on_hand"] - totals["units_reserved"],
        "stock_value": Decimal(totals["stock_value"]).quantize(Decimal("0.01")),
        "generated_at": timezone.now(),
    }
    cache.set(
        INVENTORY_SUMMARY,
        {"ledger_head": head, "summary": summary},
        timeout=settings.CACHE_TTL_SECONDS,
    )
    return {**summary, "cached": False}
