"""What order intake takes and answers: the validated request and the receipts of what it wrote."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from fulfillment.errors import FulfillmentError
from fulfillment.lifecycle import OrderPriority, OrderStatus


@dataclass(frozen=True)
class OrderDraft:
    """A validated order request: ``items`` are ``(product_id, quantity)`` pairs."""

    customer_name: str
    customer_email: str
    items: Sequence[tuple[int, int]]
    priority: str = OrderPriority.NORMAL
    shipping_address: str = ""
    shipping_city: str = ""
    shipping_postal_code: str = ""
    shipping_country: str = ""


@dataclass(frozen=True)
class LineReceipt:
    product_id: int
    sku: str
    name: str
    quantity: int
    unit_price: Decimal


@dataclass
class OrderReceipt:
    """What intake wrote, enough to answer without reading the order back."""

    pk: int
    order_id: UUID
    customer_name: str
    customer_email: str
    priority: str
    total_amount: Decimal
    created_at: datetime
    shipping_address: str = ""
    shipping_city: str = ""
    shipping_postal_code: str = ""
    shipping_country: str = ""
    status: str = OrderStatus.PENDING
    version: int = 1
    lines: list[LineReceipt] = field(default_factory=list)

    @property
    def status_changed_at(self) -> datetime:
        return self.created_at

    @classmethod
    def of(
        cls,
        draft: OrderDraft,
        *,
        pk: int,
        order_id: UUID,
        total_amount: Decimal,
        created_at: datetime,
        lines: list[LineReceipt],
    ) -> OrderReceipt:
        """The receipt of a new order written from ``draft``."""
        return cls(
            pk=pk,
            order_id=order_id,
            customer_name=draft.customer_name,
            customer_email=draft.customer_email,
            priority=draft.priority,
            total_amount=total_amount,
            created_at=created_at,
            shipping_address=draft.shipping_address,
            shipping_city=draft.shipping_city,
            shipping_postal_code=draft.shipping_postal_code,
            shipping_country=draft.shipping_country,
            lines=lines,
        )


@dataclass
class BulkItemResult:
    """One order of a bulk request: its receipt, or the domain error that rejected it."""

    index: int
    order: OrderReceipt | None = None
    error: FulfillmentError | None = None


@dataclass
class BulkResult:
    atomic: bool
    results: list[BulkItemResult]

    @property
    def created(self) -> int:
        return sum(1 for r in self.results if r.order is not None)

    @property
    def rejected(self) -> int:
        return len(self.results) - self.created
