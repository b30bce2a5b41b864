"""Correctness gates after a load test: run against the same database the server used.

    python loadtests/gates.py --csv-prefix loadtests/reports/locust

Checks: no 5xx and no 429 (throttled) in the Locust results, no stock row outside its invariants, ledger reconciliation
clean (on_hand / reserved equal the ledger sums and reserved equals open-order units), and for
every product the units of accepted orders (not cancelled or failed) equal its reservations plus
its shipments (the units shipped on the ledger, which must be those of shipped/delivered orders).
Exit code 0 when every gate passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def server_errors(csv_prefix: str | None) -> tuple[int, int, int]:
    """(requests made, 5xx/connection failures, 429s) from Locust's CSV files."""
    if not csv_prefix:
        return 0, 0, 0
    requests = 0
    with open(f"{csv_prefix}_stats.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["Name"] == "Aggregated":
                requests = int(row["Request Count"])
    errors = throttled = 0
    failures = Path(f"{csv_prefix}_failures.csv")
    if failures.exists():
        with failures.open(newline="") as fh:
            for row in csv.DictReader(fh):
                if "server error" in row["Error"] or "ConnectionRefused" in row["Error"]:
                    errors += int(row["Occurrences"])
                elif "throttled 429" in row["Error"]:
                    throttled += int(row["Occurrences"])
    return requests, errors, throttled


# Per product, in one snapshot: the units of accepted orders that still hold stock (neither
# cancelled nor failed) must equal the units reserved now plus the units shipped on the ledger,
# and the shipped units must equal the units of shipped/delivered orders.
ACCEPTED_MISMATCH_SQL = """
WITH accepted AS (
    SELECT l.product_id, SUM(l.quantity) AS units,
           SUM(l.quantity) FILTER (WHERE o.status IN ('shipped', 'delivered')) AS shipped_orders
    FROM fulfillment_orderline l JOIN fulfillment_order o ON o.id = l.order_id
    WHERE o.status IN ('pending', 'processing', 'shipped', 'delivered')
    GROUP BY l.product_id
), shipped AS (
    SELECT product_id, -SUM(on_hand_delta) AS units
    FROM fulfillment_stockmovement WHERE kind = 'ship' GROUP BY product_id
)
SELECT s.product_id, COALESCE(a.units, 0) AS accepted, s.reserved,
       COALESCE(sh.units, 0) AS shipped, COALESCE(a.shipped_orders, 0) AS shipped_orders
FROM fulfillment_stocklevel s
LEFT JOIN accepted a ON a.product_id = s.product_id
LEFT JOIN shipped sh ON sh.product_id = s.product_id
WHERE COALESCE(a.units, 0) <> s.reserved + COALESCE(sh.units, 0)
   OR COALESCE(a.shipped_orders, 0) <> COALESCE(sh.units, 0)
ORDER BY s.product_id
"""

BAD_STOCK_SQL = """
SELECT count(*) FROM fulfillment_stocklevel
WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand
"""


def run_gates(csv_prefix: str | None = None) -> list[tuple[str, bool, str]]:
    from django.db import connection

    from fulfillment.services.reconciliation import inventory_reconcile

    results: list[tuple[str, bool, str]] = []
    if csv_prefix:
        requests, errors, throttled = server_errors(csv_prefix)
        results.append(("requests were made", requests > 0, f"{requests} requests"))
        results.append(("no 5xx responses", errors == 0, f"{errors} server errors"))
        results.append(
            (
                "no 429 (throttled) responses",
                throttled == 0,
                f"{throttled} throttled",
            )
        )
    with connection.cursor() as cur:
        cur.execute(BAD_STOCK_SQL)
        bad = cur.fetchone()[0]
        cur.execute(ACCEPTED_MISMATCH_SQL)
        mismatched = cur.fetchall()
    results.append(("stock never negative, reserved <= on hand", bad == 0, f"{bad} bad rows"))
    rec = inventory_reconcile()
    results.append(
        (
            "ledger reconciliation clean",
            rec.ok,
            f"{rec.products_checked} products, {len(rec.drifts)} drifts",
        )
    )
    results.append(
        (
            "accepted units = reservations + shipments",
            not mismatched,
            f"{len(mismatched)} products differ" + (f": {mismatched[:5]}" if mismatched else ""),
        )
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv-prefix", help="Locust --csv prefix whose results to check")
    args = parser.parse_args(argv)
    _setup_django()
    results = run_gates(args.csv_prefix)
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}  ({detail})")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
