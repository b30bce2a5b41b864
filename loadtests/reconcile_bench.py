"""Benchmark of the inventory reconciliation: 10,000 products with 100,000 ledger movements.

Builds the data set set-based in the database the settings point at (the dev stack by default:
start it with ``make stack-start``), once: rerunning reuses the ``BENCH-`` products. Then times
``inventory_reconcile()`` several times and prints the numbers.

    .venv/bin/python loadtests/reconcile_bench.py [--products 10000] [--movements-per-product 10]
                                                  [--runs 5]

Not part of the test suite: speed is measured here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

import pghistory  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from fulfillment.services.reconciliation import inventory_reconcile  # noqa: E402

# Movements per product: alternating receives and adjustments whose running sum stays >= 0;
# the stock level is then the sum of the ledger, so the data set reconciles cleanly.
BUILD_SQL = """
INSERT INTO fulfillment_product (sku, name, description, price, is_active, version,
                                 created_at, updated_at)
SELECT %(prefix)s || lpad(g::text, 6, '0'), 'Bench product ' || g, '', (g %% 500) + 0.99, true, 1,
       now(), now()
FROM generate_series(1, %(products)s) AS g;

INSERT INTO fulfillment_stockmovement (product_id, kind, on_hand_delta, reserved_delta,
                                       on_hand_after, reserved_after, order_id, reason, actor,
                                       created_at)
SELECT product_id, kind, delta, 0,
       SUM(delta) OVER (PARTITION BY product_id ORDER BY n), 0, NULL, 'bench',
       'command:reconcile_bench', now()
FROM (
    SELECT p.id AS product_id, m.n,
           CASE WHEN m.n %% 2 = 1 THEN 'receive' ELSE 'adjust' END AS kind,
           CASE WHEN m.n %% 2 = 1 THEN 10 + (p.id + m.n) %% 20 ELSE -(1 + (p.id + m.n) %% 5) END
               AS delta
    FROM fulfillment_product p
    CROSS JOIN generate_series(1, %(per_product)s) AS m(n)
    WHERE p.sku LIKE %(like)s
) AS gen
ORDER BY product_id, n;

INSERT INTO fulfillment_stocklevel (product_id, on_hand, reserved, low_stock_threshold,
                                    version, updated_at)
SELECT m.product_id, SUM(m.on_hand_delta), 0, 10, 1 + COUNT(*), now()
FROM fulfillment_stockmovement m
JOIN fulfillment_product p ON p.id = m.product_id AND p.sku LIKE %(like)s
GROUP BY m.product_id;
"""


def build(products: int, per_product: int, prefix: str = "BENCH-") -> None:
    like = prefix.replace("%", r"\%").replace("_", r"\_") + "%"
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM fulfillment_product WHERE sku LIKE %s", [like])
        existing = cur.fetchone()[0]
    if existing:
        print(f"reusing {existing} {prefix} products already in the database")
        return
    started = time.perf_counter()
    params: dict[str, int | str] = {
        "products": products,
        "per_product": per_product,
        "prefix": prefix,
        "like": like,
    }
    with (
        transaction.atomic(),
        pghistory.context(command="reconcile_bench"),
        connection.cursor() as cur,
    ):
        cur.execute(BUILD_SQL, params)
    with connection.cursor() as cur:
        cur.execute("ANALYZE fulfillment_product")
        cur.execute("ANALYZE fulfillment_stocklevel")
        cur.execute("ANALYZE fulfillment_stockmovement")
    print(
        f"built {products} products x {per_product} movements in "
        f"{time.perf_counter() - started:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--movements-per-product", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    build(args.products, args.movements_per_product)

    inventory_reconcile()  # warm-up: caches, plan
    timings, result = [], None
    for _ in range(args.runs):
        result = inventory_reconcile()
        timings.append(result.duration_ms)
    assert result is not None
    print(
        f"reconciliation of {result.products_checked} products / {result.movements_checked} "
        f"movements: ok={result.ok}, drifts={len(result.drifts)}"
    )
    print(
        f"duration over {args.runs} runs: min {min(timings):.1f} ms, "
        f"median {statistics.median(timings):.1f} ms, max {max(timings):.1f} ms"
    )


if __name__ == "__main__":
    main()
