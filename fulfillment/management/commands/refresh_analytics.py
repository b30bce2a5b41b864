"""Refresh the analytics rollups now (the job the worker runs every minute), or rebuild them."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from fulfillment.services.analytics import analytics_rollups_refresh


class Command(BaseCommand):
    help = (
        "Bring the analytics rollups up to date with the orders and the stock ledger; "
        "--full rebuilds every period (after a bulk load or a restore)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--full", action="store_true", help="rebuild every period")

    def handle(self, *args: Any, **opts: Any) -> None:
        result = analytics_rollups_refresh(full=opts["full"])
        self.stdout.write(json.dumps(asdict(result), default=str))
