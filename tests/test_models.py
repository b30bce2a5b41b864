from __future__ import annotations

import pytest
from django.db import IntegrityError, ProgrammingError, connection, transaction
from pghistory.models import Events

from fulfillment.models import StockLevel, StockMovement
from tests.factories import make_product

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("on_hand", "reserved"),
    [(-1, 0), (5, -1), (5, 6)],
)
def test_check_constraints_reject_impossible_stock_at_database_level(on_hand, reserved):
    product = make_product(stock=5)

    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "UPDATE fulfillment_stocklevel SET on_hand = %s, reserved = %s WHERE product_id = %s",
            [on_hand, reserved, product.pk],
        )

    level = StockLevel.objects.get(product=product)
    assert (level.on_hand, level.reserved) == (5, 0)


def test_pghistory_records_price_change_with_context():
    import pghistory

    product = make_product(price="5.00")

    with pghistory.context(request_id="req-1", actor="tester"):
        product.price = "6.00"
        product.save()

    events = list(Events.objects.tracks(product))
    assert sorted(e.pgh_label for e in events) == ["insert", "update"]
    update = next(e for e in events if e.pgh_label == "update")
    assert str(update.pgh_data["price"]) in ("6.00", "6.0")
    assert update.pgh_context["request_id"] == "req-1"
    assert update.pgh_context["actor"] == "tester"


def test_ledger_rows_cannot_be_updated_or_deleted():
    make_product(stock=3)
    movement = StockMovement.objects.get()

    with pytest.raises(TypeError):
        StockMovement.objects.all().update(reason="x")
    with pytest.raises(TypeError):
        movement.delete()
    with (
        pytest.raises(ProgrammingError, match="Cannot update or delete rows"),
        transaction.atomic(),
        connection.cursor() as cur,
    ):
        cur.execute("DELETE FROM fulfillment_stockmovement")
    assert StockMovement.objects.count() == 1
