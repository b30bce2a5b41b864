"""Check that every stock level equals the sum of its ledger; exit code 1 when anything drifts."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import CommandParser

from fulfillment.audit import AuditedCommand
from fulfillment.services.reconciliation import inventory_reconcile


class Command(AuditedCommand):
    help = (
        "Reconcile stock levels with the inventory ledger (and open order reservations). "
        "Exit code 0 when everything adds up, 1 when any product drifts."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the result as JSON")
        parser.add_argument(
            "--max-drifts", type=int, default=1000, help="report at most this many products"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        result = inventory_reconcile(max_drifts=opts["max_drifts"])
        if opts["json"]:
            self.stdout.write(json.dumps(result.as_dict()))
        else:
            for d in result.drifts:
                self.stdout.write(
                    f"DRIFT product {d.product_id} ({d.sku}): on_hand {d.on_hand} vs ledger "
                    f"{d.ledger_on_hand} ({d.on_hand_diff:+d}); reserved {d.reserved} vs ledger "
                    f"{d.ledger_reserved} ({d.reserved_diff:+d}), open orders "
                    f"{d.open_order_reserved}"
                )
            summary = (
                f"{result.products_checked} product(s), {result.movements_checked} movement(s) "
                f"checked in {result.duration_ms} ms: "
            )
            if result.ok:
                self.stdout.write(self.style.SUCCESS(summary + "no drift"))
            else:
                self.stderr.write(self.style.ERROR(summary + f"{len(result.drifts)} drifting"))
        if not result.ok:
            sys.exit(1)
