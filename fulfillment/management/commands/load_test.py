"""``python manage.py load_test --orders N --threads T --delay D``: concurrent order intake through
the service layer, then an oversell check (stock bounds, ledger sums, open reservations)."""

from __future__ import annotations

import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pghistory
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from fulfillment.errors import FulfillmentError
from fulfillment.models import Product
from fulfillment.services.intake import order_create
from fulfillment.services.receipts import OrderDraft
from fulfillment.services.reconciliation import inventory_reconcile


def percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


class Command(BaseCommand):
    help = "Create orders concurrently through the service layer and check nothing was oversold."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=100, help="orders to create in total")
        parser.add_argument("--threads", type=int, default=10, help="concurrent threads")
        parser.add_argument(
            "--delay", type=float, default=0.0, help="seconds each thread waits between orders"
        )
        parser.add_argument("--max-lines", type=int, default=3, help="lines per order (1..N)")
        parser.add_argument("--max-quantity", type=int, default=3, help="units per line (1..N)")
        parser.add_argument("--seed", type=int, default=None, help="random seed")

    def handle(self, *args: Any, **opts: Any) -> None:
        total, threads, delay = opts["orders"], opts["threads"], opts["delay"]
        if total < 1 or threads < 1 or delay < 0 or opts["max_lines"] < 1:
            raise CommandError("--orders and --threads must be >= 1, --delay >= 0")
        products = list(Product.objects.filter(is_active=True).values_list("pk", flat=True))
        if not products:
            raise CommandError("no active products: run `manage.py seed_demo_data` first")
        max_lines = min(opts["max_lines"], len(products))
        rng_seed = opts["seed"] if opts["seed"] is not None else random.randrange(1 << 30)

        counter = iter(range(total))
        lock = threading.Lock()
        latencies: list[float] = []
        rejected: dict[str, int] = {}
        errors: list[str] = []

        def next_index() -> int | None:
            with lock:
                return next(counter, None)

        def worker(w: int) -> None:
            rng = random.Random(rng_seed + w)
            try:
                with pghistory.context(command="load_test", thread=w):
                    while (i := next_index()) is not None:
                        items = [
                            (pid, rng.randint(1, opts["max_quantity"]))
                            for pid in rng.sample(products, rng.randint(1, max_lines))
                        ]
                        draft = OrderDraft(
                            customer_name=f"Load test {i}",
                            customer_email=f"load{i}@example.com",
                            priority=rng.choice(["low", "normal", "high"]),
                            items=items,
                        )
                        started = time.perf_counter()
                        try:
                            order_create(draft=draft, actor="command:load_test")
                            with lock:
                                latencies.append(time.perf_counter() - started)
                        except FulfillmentError as exc:
                            with lock:
                                rejected[exc.code] = rejected.get(exc.code, 0) + 1
                        except Exception as exc:  # reported, and fails the command
                            with lock:
                                errors.append(f"{type(exc).__name__}: {exc}")
                        if delay:
                            time.sleep(delay)
            finally:
                connection.close()

        self.stdout.write(
            f"load_test: {total} orders, {threads} threads, delay {delay}s, "
            f"{len(products)} products, seed {rng_seed}"
        )
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(worker, range(threads)))
        elapsed = time.perf_counter() - started

        lat = sorted(x * 1000 for x in latencies)
        accepted = len(latencies)
        self.stdout.write(f"elapsed        {elapsed:.2f} s")
        self.stdout.write(f"throughput     {accepted / elapsed:.1f} accepted orders/s")
        self.stdout.write(
            f"latency ms     p50 {percentile(lat, 50):.1f}  p95 {percentile(lat, 95):.1f}  p99 {percentile(lat, 99):.1f}  mean {statistics.fmean(lat) if lat else 0.0:.1f}"
        )
        self.stdout.write(f"accepted       {accepted}")
        self.stdout.write(
            f"rejected       {sum(rejected.values())}"
            + (
                " (" + ", ".join(f"{k}: {v}" for k, v in sorted(rejected.items())) + ")"
                if rejected
                else ""
            )
        )
        self.stdout.write(f"errors         {len(errors)}")
        for e in errors[:5]:
            self.stdout.write(f"  {e}")

        # The CHECK constraints keep every row within bounds; the reconciliation proves the
        # ledger sums and that reservations equal the units of open orders.
        check = inventory_reconcile()
        if check.ok:
            self.stdout.write(
                self.style.SUCCESS(
                    f"oversell check OK: {check.products_checked} products, ledger reconciles, "
                    "reservations match open orders"
                )
            )
        else:
            drifts = [d.as_dict() for d in check.drifts[:10]]
            self.stdout.write(self.style.ERROR(f"oversell check FAILED: {drifts}"))
        if errors or not check.ok:
            raise CommandError("load test found errors or stock drift")
