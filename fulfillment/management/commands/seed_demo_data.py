"""Idempotent demo data: products with stock (initial stock on the ledger)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from django.core.management.base import CommandParser

from fulfillment.audit import AuditedCommand
from fulfillment.models import Product
from fulfillment.services.products import product_create

WORDS = [
    "Widget",
    "Gadget",
    "Gizmo",
    "Sprocket",
    "Bracket",
    "Cable",
    "Adapter",
    "Sensor",
    "Valve",
    "Bearing",
    "Panel",
    "Switch",
    "Filter",
    "Hinge",
    "Clamp",
    "Lamp",
]
TONES = ["Red", "Blue", "Steel", "Mini", "Pro", "Max", "Eco", "Ultra"]


class Command(AuditedCommand):
    help = "Create demo products with stock (idempotent: existing SKUs are left alone)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--products", type=int, default=50, help="how many products (default 50)"
        )
        parser.add_argument("--seed", type=int, default=42, help="random seed for repeatable data")

    def handle(self, *args: Any, **opts: Any) -> None:
        rng = random.Random(opts["seed"])
        count = opts["products"]
        existing = set(
            Product.objects.filter(sku__startswith="DEMO-").values_list("sku", flat=True)
        )
        created = 0
        for i in range(1, count + 1):
            sku = f"DEMO-{i:05d}"
            name = f"{rng.choice(TONES)} {rng.choice(WORDS)} {i}"
            price = Decimal(rng.randrange(199, 49999)) / 100
            stock = rng.randrange(50, 1000)
            if sku in existing:
                continue
            product_create(
                sku=sku,
                name=name,
                price=price,
                initial_stock=stock,
                low_stock_threshold=20,
                actor=self.actor,
                description=f"Demo product {i}",
            )
            created += 1
            if created % 100 == 0:
                self.stdout.write(f"  {created} products created...")
        self.stdout.write(
            self.style.SUCCESS(
                f"demo data: {created} product(s) created, {len(existing)} already present"
            )
        )
