"""Inventory reconciliation: does every stock number add up?

For every product, ``on_hand`` must equal the sum of its ledger ``on_hand_delta`` and ``reserved``
the sum of ``reserved_delta`` (the ledger invariant of ``StockMovement``). It is also checked that
``reserved`` equals the units on the lines of open orders (``lifecycle.OPEN``), the only holders
of a reservation.

Everything is read in ONE statement: set-based (aggregates grouped by product, no per-product
round trips) and from one snapshot, so writes committing while it runs cannot show up as false
drift. It writes nothing and takes no locks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.db import connection

from fulfillment import lifecycle


@dataclass(frozen=True)
class Drift:
    product_id: int
    sku: str
    on_hand: int
    ledger_on_hand: int
    reserved: int
    ledger_reserved: int
    open_order_reserved: int = 0

    @property
    def on_hand_diff(self) -> int:
        return self.on_hand - self.ledger_on_hand

    @property
    def reserved_diff(self) -> int:
        return self.reserved - self.ledger_reserved

    def as_dict(self) -> dict[str, int | str]:
        return {
            "product_id": self.product_id,
            "sku": self.sku,
            "on_hand": self.on_hand,
            "ledger_on_hand": self.ledger_on_hand,
            "reserved": self.reserved,
            "ledger_reserved": self.ledger_reserved,
            "open_order_reserved": self.open_order_reserved,
        }


@dataclass(frozen=True)
class ReconciliationResult:
    ok: bool
    products_checked: int
    drifts: list[Drift] = field(default_factory=list)
    duration_ms: float = 0.0
    movements_checked: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "products_checked": self.products_checked,
            "movements_checked": self.movements_checked,
            "drifts": [d.as_dict() for d in self.drifts],
            "duration_ms": self.duration_ms,
        }


# Products without a stock level or without movements count as zero on that side. The totals
# row (product_id NULL) carries the counts, so one statement returns both.
_RECONCILE_SQL = """
WITH ledger AS (
    SELECT product_id, SUM(on_hand_delta)::bigint AS oh, SUM(reserved_delta)::bigint AS rs,
           COUNT(*) AS n
    FROM fulfillment_stockmovement
    GROUP BY product_id
), open_lines AS (
    SELECT l.product_id, SUM(l.quantity)::bigint AS rs
    FROM fulfillment_orderline l
    JOIN fulfillment_order o ON o.id = l.order_id
    WHERE o.status = ANY(%(open)s)
    GROUP BY l.product_id
), joined AS (
    SELECT p.id AS product_id, p.sku,
           COALESCE(s.on_hand, 0) AS on_hand, COALESCE(g.oh, 0) AS ledger_on_hand,
           COALESCE(s.reserved, 0) AS reserved, COALESCE(g.rs, 0) AS ledger_reserved,
           COALESCE(ol.rs, 0) AS open_order_reserved, COALESCE(g.n, 0) AS n
    FROM fulfillment_product p
    LEFT JOIN fulfillment_stocklevel s ON s.product_id = p.id
    LEFT JOIN ledger g ON g.product_id = p.id
    LEFT JOIN open_lines ol ON ol.product_id = p.id
)
SELECT NULL, NULL, COUNT(*), SUM(n), NULL, NULL, NULL FROM joined
UNION ALL
(SELECT product_id, sku, on_hand, ledger_on_hand, reserved, ledger_reserved, open_order_reserved
 FROM joined
 WHERE on_hand <> ledger_on_hand OR reserved <> ledger_reserved OR reserved <> open_order_reserved
 ORDER BY product_id
 LIMIT %(limit)s)
"""


def inventory_reconcile(*, max_drifts: int = 1000) -> ReconciliationResult:
    """Check the ledger invariant (and open reservations) for every product in one query.

    Reports at most ``max_drifts`` drifting products (``ok`` is False whenever there is any).
    Read-only: no locks, nothing written.
    """
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            _RECONCILE_SQL,
            {"open": sorted(lifecycle.OPEN), "limit": max_drifts},
        )
        rows = cur.fetchall()
    totals = next(r for r in rows if r[0] is None)
    drift_rows = [r for r in rows if r[0] is not None]
    drifts = [
        Drift(
            product_id=int(r[0]),
            sku=str(r[1]),
            on_hand=int(r[2]),
            ledger_on_hand=int(r[3]),
            reserved=int(r[4]),
            ledger_reserved=int(r[5]),
            open_order_reserved=int(r[6]),
        )
        for r in drift_rows
    ]
    return ReconciliationResult(
        ok=not drifts,
        products_checked=int(totals[2] or 0),
        movements_checked=int(totals[3] or 0),
        drifts=drifts,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
