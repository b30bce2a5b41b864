"""The lifecycle table is consistent with itself and with the models it drives."""

from __future__ import annotations

from fulfillment import lifecycle
from fulfillment.lifecycle import OrderStatus
from fulfillment.models import Order, StockMovement


def test_moves_follow_the_documented_lifecycle():
    assert lifecycle.can_move(OrderStatus.PENDING, OrderStatus.PROCESSING)
    assert lifecycle.can_move(OrderStatus.PROCESSING, OrderStatus.CANCELLED)
    assert not lifecycle.can_move(OrderStatus.SHIPPED, OrderStatus.CANCELLED)
    assert not lifecycle.can_move(OrderStatus.DELIVERED, OrderStatus.FAILED)
    assert {OrderStatus.DELIVERED, OrderStatus.CANCELLED, OrderStatus.FAILED} == lifecycle.TERMINAL
    assert all(lifecycle.can_move(s, t) for s, t in lifecycle.NEXT_STAGE.items())
    for target, sources in lifecycle.SOURCES.items():
        assert sorted(sources) == sorted(
            s for s in lifecycle.ALLOWED if lifecycle.can_move(s, target)
        )


def test_every_status_has_a_timestamp_column_and_every_stock_effect_a_ledger_kind():
    fields = {f.name for f in Order._meta.get_fields()}
    assert set(lifecycle.STAGE_TIMESTAMPS) == set(OrderStatus.values)
    assert set(lifecycle.STAGE_TIMESTAMPS.values()) <= fields
    assert {kind for kind, _ in lifecycle.STOCK_EFFECT.values()} <= set(StockMovement.Kind.values)
    assert set(lifecycle.ALLOWED) - {OrderStatus.SHIPPED} == lifecycle.OPEN
    assert Order.Status is OrderStatus
