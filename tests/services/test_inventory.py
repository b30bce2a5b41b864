from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection, transaction

from fulfillment.cache_keys import INVENTORY_SUMMARY as SUMMARY_CACHE_KEY
from fulfillment.errors import (
    InsufficientStock,
    InvalidStockChange,
    NotFound,
    ValidationFailed,
    VersionConflict,
)
from fulfillment.models import StockLevel, StockMovement
from fulfillment.selectors.inventory import inventory_summary, ledger_head
from fulfillment.services import inventory as inv
from fulfillment.services.inventory import (
    StockChange,
    apply_stock_changes,
    stock_adjust,
    stock_count,
    stock_receive,
    stock_reserve,
    stock_threshold_set,
)
from fulfillment.services.products import product_update
from fulfillment.services.reconciliation import inventory_reconcile
from tests.factories import make_product

pytestmark = pytest.mark.django_db


def state(pid: int) -> tuple[int, int, int]:
    level = StockLevel.objects.get(product_id=pid)
    return level.on_hand, level.reserved, level.version


def stock_release(*, lines: list[tuple[int, int]], actor: str) -> None:
    """Give reservations back through the one stock change (as a cancel's statement does)."""
    changes = [StockChange(pid, 0, -qty) for pid, qty in lines]
    apply_stock_changes(changes=changes, kind="release", actor=actor)


def stock_ship(*, lines: list[tuple[int, int]], actor: str) -> None:
    """Reserved units leave: on_hand and reserved both drop (as the shipping stage does)."""
    changes = [StockChange(pid, -qty, -qty) for pid, qty in lines]
    apply_stock_changes(changes=changes, kind="ship", actor=actor)


def last_movement(pid: int) -> StockMovement:
    return StockMovement.objects.filter(product_id=pid).order_by("-id").first()


def test_receive_adjust_count_each_write_one_movement_and_bump_version():
    pid = make_product(stock=10).pk

    stock_receive(product_id=pid, quantity=5, actor="a", reason="PO")
    assert state(pid) == (15, 0, 3)
    stock_adjust(product_id=pid, delta=-4, actor="a", reason="broken")
    assert state(pid) == (11, 0, 4)
    result = stock_count(product_id=pid, counted=20, actor="a", reason="count")

    assert state(pid) == (20, 0, 5)
    assert (result.on_hand, result.reserved, result.version) == (20, 0, 5)
    m = last_movement(pid)
    assert (m.kind, m.on_hand_delta, m.on_hand_after, m.id) == ("count", 9, 20, result.movement_id)
    assert StockMovement.objects.filter(product_id=pid).count() == 4


def test_reserve_release_ship_move_reserved_and_on_hand():
    a, b = make_product(stock=10).pk, make_product(stock=5).pk

    stock_reserve(lines=[(b, 2), (a, 3)], order_id=None, actor="o")
    assert (state(a)[:2], state(b)[:2]) == ((10, 3), (5, 2))
    stock_ship(lines=[(a, 3)], actor="o")
    stock_release(lines=[(b, 2)], actor="o")

    assert (state(a)[:2], state(b)[:2]) == ((7, 0), (5, 0))
    assert (last_movement(a).kind, last_movement(a).on_hand_delta) == ("ship", -3)
    assert (last_movement(b).kind, last_movement(b).reserved_delta) == ("release", -2)
    assert inventory_reconcile().ok


def test_reserve_short_on_one_line_writes_nothing_and_names_the_line():
    a, b = make_product(stock=10).pk, make_product(stock=1).pk
    before = StockMovement.objects.count()

    with pytest.raises(InsufficientStock) as exc:
        stock_reserve(lines=[(a, 2), (b, 3)], order_id=None, actor="o")

    assert exc.value.details["shortages"] == [{"product_id": b, "requested": 3, "available": 1}]
    assert state(a) == (10, 0, 2) and state(b) == (1, 0, 2)
    assert StockMovement.objects.count() == before


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (
            lambda pid: stock_adjust(product_id=pid, delta=-11, actor="a", reason="r"),
            InvalidStockChange,
        ),
        (
            lambda pid: stock_adjust(product_id=pid, delta=-8, actor="a", reason="r"),
            InvalidStockChange,
        ),
        (
            lambda pid: stock_adjust(product_id=pid, delta=0, actor="a", reason="r"),
            ValidationFailed,
        ),
        (
            lambda pid: stock_adjust(product_id=pid, delta=1, actor="a", reason="r", kind="ship"),
            ValidationFailed,
        ),
        (
            lambda pid: stock_count(product_id=pid, counted=2, actor="a", reason="r"),
            InvalidStockChange,
        ),
        (
            lambda pid: stock_count(product_id=pid, counted=-1, actor="a", reason="r"),
            ValidationFailed,
        ),
        (
            lambda pid: stock_count(product_id=pid, counted=10, actor="a", reason="r"),
            InvalidStockChange,
        ),
        (lambda pid: stock_receive(product_id=pid, quantity=0, actor="a"), ValidationFailed),
        (
            lambda pid: stock_adjust(
                product_id=pid, delta=1, actor="a", reason="r", expected_version=1
            ),
            VersionConflict,
        ),
        (
            lambda pid: stock_count(
                product_id=pid, counted=5, actor="a", reason="r", expected_version=9
            ),
            VersionConflict,
        ),
        (lambda pid: stock_adjust(product_id=999999, delta=1, actor="a", reason="r"), NotFound),
        (lambda pid: stock_count(product_id=999999, counted=1, actor="a", reason="r"), NotFound),
    ],
)
def test_refused_changes_raise_and_write_nothing(call, error):
    pid = make_product(stock=10).pk
    stock_reserve(lines=[(pid, 3)], order_id=None, actor="o")
    before = (state(pid), StockMovement.objects.count())

    with pytest.raises(error):
        call(pid)

    assert (state(pid), StockMovement.objects.count()) == before


def test_expected_version_matching_is_applied():
    pid = make_product(stock=10).pk

    result = stock_adjust(product_id=pid, delta=1, actor="a", reason="r", expected_version=2)

    assert result.version == 3 and state(pid) == (11, 0, 3)


def test_one_product_twice_in_one_call_is_refused():
    pid = make_product(stock=10).pk
    with pytest.raises(ValidationFailed):
        apply_stock_changes(
            changes=[StockChange(pid, 1), StockChange(pid, 1)], kind="adjust", actor="a"
        )
    assert state(pid) == (10, 0, 2)


def test_threshold_set_changes_only_the_threshold():
    pid = make_product(stock=10, threshold=5).pk

    stock_threshold_set(product_id=pid, threshold=50)

    level = StockLevel.objects.get(product_id=pid)
    assert (level.low_stock_threshold, level.on_hand, level.version) == (50, 10, 2)
    with pytest.raises(NotFound):
        stock_threshold_set(product_id=999999, threshold=1)
    with pytest.raises(ValidationFailed):
        stock_threshold_set(product_id=pid, threshold=-1)


# ----- the cached summary: tagged with the ledger head, never a Redis call on a stock write --------


def _registered_invalidations() -> int:
    return sum(1 for _, func, _ in connection.run_on_commit if func is inv._invalidate_summary)


def test_stock_writes_register_no_cache_call():
    pid = make_product(stock=10).pk
    before = _registered_invalidations()  # the enclosing test transaction never commits

    with transaction.atomic():
        stock_reserve(lines=[(pid, 1)], order_id=None, actor="o")
        stock_adjust(product_id=pid, delta=1, actor="a", reason="r")
        stock_release(lines=[(pid, 1)], actor="o")

    assert _registered_invalidations() == before


@pytest.mark.django_db(transaction=True)
def test_committed_stock_write_makes_the_next_summary_fresh_and_rolled_back_one_does_not():
    pid = make_product(stock=10).pk
    assert inventory_summary()["cached"] is False
    assert cache.get(SUMMARY_CACHE_KEY)["ledger_head"] == ledger_head()

    with pytest.raises(RuntimeError), transaction.atomic():
        stock_adjust(product_id=pid, delta=1, actor="a", reason="r")
        raise RuntimeError("rollback")
    assert inventory_summary()["cached"] is True

    stock_reserve(lines=[(pid, 1)], order_id=None, actor="o")
    fresh = inventory_summary()
    assert (fresh["cached"], fresh["units_reserved"]) == (False, 1)
    assert inventory_summary()["cached"] is True


@pytest.mark.django_db(transaction=True)
def test_writes_without_a_ledger_row_drop_the_cached_summary():
    product = make_product(stock=10, price="2.00", threshold=5)
    assert inventory_summary()["low_stock_count"] == 0

    stock_threshold_set(product_id=product.pk, threshold=10)
    assert cache.get(SUMMARY_CACHE_KEY) is None
    assert inventory_summary()["low_stock_count"] == 1

    product_update(product_id=product.pk, actor="a", price=Decimal("3.00"))
    assert cache.get(SUMMARY_CACHE_KEY) is None
    assert inventory_summary()["stock_value"] == Decimal("30.00")

    make_product(stock=0)
    summary = inventory_summary()
    assert (summary["cached"], summary["product_count"]) == (False, 2)


# ----- concurrency: several products per call, opposite orders, no deadlock -------------------


@pytest.mark.django_db(transaction=True)
def test_multi_product_reserve_and_release_in_opposite_orders_never_deadlock():
    # given: 4 products; threads reserve and release all of them, listed in random orders
    pids = [make_product(stock=1000).pk for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(40):
                lines = [(pid, rng.randint(1, 5)) for pid in rng.sample(pids, len(pids))]
                with transaction.atomic():
                    stock_reserve(lines=lines, order_id=None, actor=f"t{seed}")
                with transaction.atomic():
                    stock_release(lines=list(reversed(lines)), actor=f"t{seed}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    # then: no deadlock (PostgreSQL would raise one), all reservations given back, ledger adds up
    assert not errors, errors
    for pid in pids:
        assert state(pid)[:2] == (1000, 0)
        assert StockMovement.objects.filter(product_id=pid).count() == 1 + 8 * 40 * 2
    assert inventory_reconcile().ok


@pytest.mark.django_db(transaction=True)
def test_product_update_of_the_threshold_changes_the_stock_level_and_drops_the_summary():
    product = make_product(stock=10, threshold=5)
    assert inventory_summary()["low_stock_count"] == 0

    product_update(product_id=product.pk, actor="a", low_stock_threshold=10)

    assert StockLevel.objects.get(product_id=product.pk).low_stock_threshold == 10
    assert cache.get(SUMMARY_CACHE_KEY) is None
    assert inventory_summary()["low_stock_count"] == 1
