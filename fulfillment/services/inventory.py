"""Inventory write side: the only code that changes ``StockLevel`` rows.

Every change goes through :func:`apply_stock_changes`, one SQL statement that locks the stock rows
in primary-key order, applies the deltas only where every invariant still holds (and the expected
version matches), bumps ``version`` and appends the ledger rows. If any row could not be changed,
the caller's transaction (savepoint) is rolled back and a domain error says why, so a failed
request writes nothing.

Every such change appends a ledger row, which moves the ledger head the cached inventory summary
is tagged with (``selectors.inventory.inventory_summary``): stock writes never call Redis. Only the
writes that change the summary without a ledger row drop it (:func:`invalidate_summary_on_commit`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from fulfillment.cache_keys import INVENTORY_SUMMARY
from fulfillment.errors import (
    InsufficientStock,
    InvalidStockChange,
    NotFound,
    Shortage,
    ValidationFailed,
    VersionConflict,
)
from fulfillment.models import StockLevel, StockMovement
from fulfillment.rules import validate_adjustment
from fulfillment.services.events import stock_adjusted_cte, stock_events_cte

# The largest on_hand the column stores (integer); a change beyond it is refused like any other
# broken invariant (409), computed in bigint so that the check itself cannot overflow.
MAX_ON_HAND = 2**31 - 1

Kind = StockMovement.Kind


@dataclass(frozen=True)
class StockChange:
    product_id: int
    on_hand_delta: int = 0
    reserved_delta: int = 0
    expected_version: int | None = None


@dataclass(frozen=True)
class StockResult:
    product_id: int
    on_hand: int
    reserved: int
    version: int
    movement_id: int


def stock_change_ctes(*, deltas: str, extra_condition: str = "") -> str:
    """The SQL of every stock change, as two CTEs to compose into a larger statement.

    ``deltas`` names a CTE with columns ``(product_id, oh, rs)``: the on_hand and reserved
    deltas per product. ``locked`` locks those stock rows in primary-key order (the lock order
    everywhere, so several products never deadlock); ``upd`` applies the deltas only where every
    invariant still holds (0 <= on_hand <= MAX_ON_HAND, reserved >= 0, reserved <= on_hand, and
    ``extra_condition`` on ``s`` / ``d``), bumps ``version`` and returns ``product_id, on_hand,
    reserved, version, oh, rs, low_stock_threshold`` per changed row; ``stock_events`` writes
    ``stock.low`` / ``stock.out`` for the rows that crossed down. A caller compares the rows of ``upd`` with its
    deltas: fewer means a line could not change, and it must undo the statement. Single-order
    intake and the pipeline's stage statement embed these CTEs too, so the rules live here once.
    """
    return f"""locked AS (
    SELECT s.id FROM fulfillment_stocklevel s
    WHERE s.product_id IN (SELECT product_id FROM {deltas})
    ORDER BY s.id
    FOR UPDATE
), upd AS (
    UPDATE fulfillment_stocklevel s
    SET on_hand = s.on_hand + d.oh, reserved = s.reserved + d.rs,
        version = s.version + 1, updated_at = now()
    FROM {deltas} d, locked
    WHERE s.id = locked.id AND s.product_id = d.product_id
      AND s.on_hand::bigint + d.oh BETWEEN 0 AND {MAX_ON_HAND}
      AND s.reserved::bigint + d.rs >= 0
      AND s.reserved::bigint + d.rs <= s.on_hand::bigint + d.oh
      {extra_condition}
    RETURNING s.product_id, s.on_hand, s.reserved, s.version, d.oh, d.rs, s.low_stock_threshold
), {stock_events_cte(upd="upd")}"""


_APPLY_SQL = f"""
WITH d AS (
    SELECT * FROM unnest(%(pids)s::bigint[], %(oh)s::int[], %(rs)s::int[], %(ev)s::int[])
        AS d(product_id, oh, rs, ev)
), {stock_change_ctes(deltas="d", extra_condition="AND (d.ev IS NULL OR s.version = d.ev)")},
{stock_adjusted_cte(upd="upd")}
INSERT INTO fulfillment_stockmovement
    (product_id, kind, on_hand_delta, reserved_delta, on_hand_after, reserved_after,
     order_id, reason, actor, created_at)
SELECT upd.product_id, %(kind)s, upd.oh, upd.rs, upd.on_hand, upd.reserved,
       %(order_id)s, %(reason)s, %(actor)s, now()
FROM upd
RETURNING product_id, on_hand_after, reserved_after, id,
          (SELECT version FROM upd WHERE upd.product_id = fulfillment_stockmovement.product_id)
"""


def apply_stock_changes(
    *,
    changes: Sequence[StockChange],
    kind: str,
    actor: str,
    reason: str = "",
    order_id: int | None = None,
) -> list[StockResult]:
    """Apply all ``changes`` or none; see the module docstring.

    Must run inside a transaction (the caller's ``atomic`` block): the row locks are held until
    it commits, so keep the work after this call short.
    """
    if not changes:
        return []
    pids = [c.product_id for c in changes]
    if len(set(pids)) != len(pids):
        raise ValidationFailed("each product may appear only once", product_ids=pids)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            _APPLY_SQL,
            {
                "pids": pids,
                "oh": [c.on_hand_delta for c in changes],
                "rs": [c.reserved_delta for c in changes],
                "ev": [c.expected_version for c in changes],
                "kind": kind,
                "order_id": order_id,
                "reason": reason,
                "actor": actor,
            },
        )
        rows = cur.fetchall()
        if len(rows) != len(changes):
            done = {r[0] for r in rows}
            _raise_for_failures([c for c in changes if c.product_id not in done], kind)
    return [StockResult(r[0], r[1], r[2], r[4], r[3]) for r in rows]


def _invalidate_summary() -> None:
    cache.delete(INVENTORY_SUMMARY)  # IGNORE_EXCEPTIONS: Redis down never fails a write


def invalidate_summary_on_commit() -> None:
    """Drop the cached summary once the write commits (at once in autocommit), for the writes
    that change it without appending a ledger row: the low-stock threshold, a product's price,
    a new product. Stock quantity writes need nothing: they move the ledger head."""
    transaction.on_commit(_invalidate_summary)


def _raise_for_failures(failed: list[StockChange], kind: str) -> None:
    """Explain why rows were not changed. Runs only on the failure path."""
    levels = {
        s.product_id: s
        for s in StockLevel.objects.filter(product_id__in=[c.product_id for c in failed])
    }
    missing = [c.product_id for c in failed if c.product_id not in levels]
    if missing:
        raise NotFound("product", missing[0] if len(missing) == 1 else missing)
    for c in failed:
        s = levels[c.product_id]
        if c.expected_version is not None and s.version != c.expected_version:
            raise VersionConflict("stock level", c.product_id, c.expected_version, s.version)
    if kind == Kind.RESERVE:
        raise InsufficientStock(
            [
                Shortage(c.product_id, c.reserved_delta, levels[c.product_id].available)
                for c in failed
            ]
        )
    c = failed[0]
    s = levels[c.product_id]
    raise InvalidStockChange(
        "the change would leave stock negative, above the largest storable on hand "
        f"({MAX_ON_HAND}), or reserved above on hand",
        product_id=c.product_id,
        on_hand=s.on_hand,
        reserved=s.reserved,
        on_hand_delta=c.on_hand_delta,
        reserved_delta=c.reserved_delta,
    )


# ----- single-product operations (receive / adjust / count / return) ---------------------------


def _single(
    *,
    product_id: int,
    kind: str,
    on_hand_delta: int,
    reason: str,
    actor: str,
    expected_version: int | None,
) -> StockResult:
    if on_hand_delta == 0:
        raise ValidationFailed("the change must not be zero", field="quantity_change")
    return apply_stock_changes(
        changes=[StockChange(product_id, on_hand_delta, 0, expected_version)],
        kind=kind,
        actor=actor,
        reason=reason,
    )[0]


def stock_receive(
    *,
    product_id: int,
    quantity: int,
    actor: str,
    reason: str = "",
    expected_version: int | None = None,
) -> StockResult:
    """Goods arrived: on_hand grows by ``quantity`` (> 0).

    One conditional UPDATE through :func:`apply_stock_changes` (row lock, version bump, ledger
    row); a stale ``expected_version`` raises VersionConflict and writes nothing.
    """
    if quantity <= 0:
        raise ValidationFailed("quantity must be positive", field="quantity")
    return _single(
        product_id=product_id,
        kind=Kind.RECEIVE,
        on_hand_delta=quantity,
        reason=reason,
        actor=actor,
        expected_version=expected_version,
    )


def stock_adjust(
    *,
    product_id: int,
    delta: int,
    actor: str,
    reason: str,
    kind: str = Kind.ADJUST,
    expected_version: int | None = None,
) -> StockResult:
    """Signed change of on_hand (kinds adjust, receive, return); refuses to go below reserved.

    One conditional UPDATE through :func:`apply_stock_changes`: it locks the row, applies the delta
    only if ``on_hand`` stays >= ``reserved`` >= 0 and the version matches, and appends the ledger
    row in the same statement. Otherwise InvalidStockChange / VersionConflict and nothing written.
    The input rules are ``rules.adjustment_problem``'s (those of the API's schema).
    """
    if kind == Kind.COUNT:
        raise ValidationFailed(f"kind {kind!r} is not a signed adjustment", field="kind")
    validate_adjustment(kind, delta, None)
    return _single(
        product_id=product_id,
        kind=kind,
        on_hand_delta=delta,
        reason=reason,
        actor=actor,
        expected_version=expected_version,
    )


@transaction.atomic
def stock_count(
    *, product_id: int, counted: int, actor: str, reason: str, expected_version: int | None = None
) -> StockResult:
    """Physical count: set on_hand to ``counted``; the movement records the difference.

    The row is locked first (``SELECT ... FOR UPDATE``) so the difference is computed against the
    value it replaces; the lock is held until commit. A count below ``reserved`` is refused
    (InvalidStockChange), a count equal to on_hand has nothing to record (InvalidStockChange).
    """
    validate_adjustment(Kind.COUNT, None, counted)
    level = StockLevel.objects.select_for_update().filter(product_id=product_id).first()
    if level is None:
        raise NotFound("product", product_id)
    if expected_version is not None and level.version != expected_version:
        raise VersionConflict("stock level", product_id, expected_version, level.version)
    if counted == level.on_hand:
        raise InvalidStockChange(
            f"the count equals the current on_hand ({counted}); there is no difference to record",
            field="set_to",
        )
    return _single(
        product_id=product_id,
        kind=Kind.COUNT,
        on_hand_delta=counted - level.on_hand,
        reason=reason,
        actor=actor,
        expected_version=None,
    )


@transaction.atomic
def stock_threshold_set(*, product_id: int, threshold: int) -> StockLevel:
    """Change the low-stock threshold only (never on_hand/reserved, so no ledger row).

    Updates the one column under the row lock of a plain UPDATE, so a concurrent stock write is
    never overwritten with stale numbers (as saving a whole loaded model instance would).
    """
    if threshold < 0:
        raise ValidationFailed("the threshold cannot be negative", field="low_stock_threshold")
    updated = StockLevel.objects.filter(product_id=product_id).update(
        low_stock_threshold=threshold, updated_at=timezone.now()
    )
    if not updated:
        raise NotFound("product", product_id)
    invalidate_summary_on_commit()
    return StockLevel.objects.get(product_id=product_id)


def stock_apply_adjustment(
    *,
    product_id: int,
    kind: str,
    actor: str,
    reason: str,
    quantity_change: int | None = None,
    set_to: int | None = None,
    expected_version: int | None = None,
) -> StockResult:
    """A manual adjustment as the API takes it: ``count`` sets on_hand to ``set_to``, the other
    kinds (adjust, receive, return) add the signed ``quantity_change``.

    Checked against ``rules.adjustment_problem`` (the rules the API's schema applies); locking and
    invariants are those of :func:`stock_count` and :func:`stock_adjust`.
    """
    validate_adjustment(kind, quantity_change, set_to)
    if set_to is not None:
        return stock_count(
            product_id=product_id,
            counted=set_to,
            actor=actor,
            reason=reason,
            expected_version=expected_version,
        )
    assert quantity_change is not None
    return stock_adjust(
        product_id=product_id,
        delta=quantity_change,
        actor=actor,
        reason=reason,
        kind=kind,
        expected_version=expected_version,
    )


# ----- reservation outside intake ---------------------------------------------------------------


def stock_reserve(
    *, lines: Iterable[tuple[int, int]], order_id: int | None, actor: str
) -> list[StockResult]:
    """Reserve ``(product_id, quantity)`` lines for an order written without the intake
    statement (data loaders, the pipeline benchmark); InsufficientStock lists every short line."""
    return apply_stock_changes(
        changes=[StockChange(pid, 0, qty) for pid, qty in lines],
        kind=Kind.RESERVE,
        actor=actor,
        order_id=order_id,
    )
