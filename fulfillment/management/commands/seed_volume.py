"""Fill the database with a large, consistent data set: ``seed_volume --orders N``.

Set-based SQL only (``INSERT ... SELECT`` over ``generate_series``), one transaction per chunk of
orders, with a progress bar on stderr. After every chunk the data set is consistent on its own:

- products (``VOL-`` SKUs) with a stock level and a ``receive`` ledger row each;
- orders over a year of ``created_at``: the oldest ones finished (mostly delivered, some cancelled
  or failed, from pending or from processing), the newest ``--jobs`` ones in flight (pending,
  processing, shipped, changed within the last few minutes, so none is stale);
- one to three lines per order, the ledger rows of every stock effect (reserve at intake, ship,
  release) with their running balances, and stock levels equal to the ledger sums, so
  ``reconcile_inventory`` passes;
- audit history equal to what the triggers write (an insert event per product, stock level,
  order and line, an update event per status change of an order; a stock level gets one update
  event per chunk with its new totals, from its trigger, rather than one per movement: the ledger
  rows carry the balance after every change). The pghistory insert triggers of orders and lines are disabled inside
  each chunk's transaction (``ALTER TABLE ... DISABLE TRIGGER``, undone at commit), and the
  events are written set-based: a row trigger per line would make the load several times slower.
- one waiting stage job per order in flight, through ``fulfillment.queue``: ``--due-fraction``
  of them due now, the others scheduled within the next day.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connection, transaction

from fulfillment import queue
from fulfillment.audit import AuditedCommand

# Triggers disabled while a chunk loads (their events are written set-based instead).
_HISTORY_TRIGGERS = {
    "fulfillment_order": "pgtrigger_insert_insert_c999a",
    "fulfillment_orderline": "pgtrigger_insert_insert_6d1a7",
}

_PRODUCTS_SQL = """
WITH p AS (
    INSERT INTO fulfillment_product
        (sku, name, description, price, is_active, version, created_at, updated_at)
    SELECT 'VOL-' || %(run)s || '-' || lpad(g::text, 6, '0'), 'Volume product ' || g, '',
           (5 + (g * 37) %% 195)::numeric(12, 2), true, 1,
           now() - interval '400 days', now() - interval '400 days'
    FROM generate_series(1, %(products)s) g
    RETURNING id, created_at
), s AS (
    INSERT INTO fulfillment_stocklevel
        (product_id, on_hand, reserved, low_stock_threshold, version, updated_at)
    -- one product in twenty sits at or under its threshold: the low-stock list has rows
    SELECT id, %(receive)s, 0, CASE WHEN id %% 20 = 0 THEN %(receive)s ELSE 10 END, 1, created_at
    FROM p
    RETURNING product_id
)
INSERT INTO fulfillment_stockmovement (product_id, kind, on_hand_delta, reserved_delta,
    on_hand_after, reserved_after, order_id, reason, actor, created_at)
SELECT p.id, 'receive', %(receive)s, 0, %(receive)s, 0, NULL, 'volume data set', %(actor)s,
       p.created_at
FROM p JOIN s ON s.product_id = p.id
ORDER BY p.id
RETURNING product_id
"""

# The lines of a chunk: one to three per order (40/40/20 %), distinct products per order.
_LINES_TEMP_SQL = """
CREATE TEMP TABLE vol_lines ON COMMIT DROP AS
SELECT %(base)s + g AS order_id, pr.id AS product_id,
       1 + ((g * 13 + j * 7) %% 3) AS quantity, pr.price AS unit_price
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
CROSS JOIN LATERAL generate_series(1, 1 + (g * 7919) %% 10 / 4) j
JOIN vol_products pr ON pr.n = ((g * 7 + j * 31) %% %(products)s)
"""

_ORDERS_SQL = """
WITH src AS (
    SELECT g, %(base)s + g AS id, random() AS r, random() AS r2,
           g > %(total)s - %(inflight)s AS inflight,
           CASE WHEN g > %(total)s - %(inflight)s
                THEN now() - ((%(total)s - g)::float8 / greatest(%(inflight)s, 1))
                             * interval '4 minutes'
                ELSE now() - interval '5 minutes'
                     - ((%(total)s - %(inflight)s - g)::float8
                        / greatest(%(total)s - %(inflight)s, 1)) * interval '365 days'
           END AS created_at
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
), st AS (
    SELECT *, now() - created_at AS age,
           CASE WHEN inflight THEN CASE WHEN r < 0.4 THEN 'pending'
                                        WHEN r < 0.7 THEN 'processing' ELSE 'shipped' END
                ELSE CASE WHEN r < 0.92 THEN 'delivered'
                          WHEN r < 0.96 THEN 'cancelled' ELSE 'failed' END
           END AS status
    FROM src
), ts AS (
    SELECT *,
        CASE WHEN status IN ('processing', 'shipped', 'delivered')
                  OR (status IN ('cancelled', 'failed') AND r2 < 0.5)
             THEN created_at + CASE WHEN inflight THEN age / 3
                                    ELSE least(interval '5 seconds', age / 10) END
        END AS processing_at,
        CASE WHEN status IN ('shipped', 'delivered')
             THEN created_at + CASE WHEN inflight THEN age * 2 / 3
                                    ELSE least(interval '6 hours', age / 5) END
        END AS shipped_at,
        CASE WHEN status = 'delivered' THEN created_at + least(interval '2 days', age / 2)
        END AS delivered_at,
        CASE WHEN status IN ('cancelled', 'failed')
             THEN created_at + least(interval '1 hour', age / 4) END AS ended_at
    FROM st
)
INSERT INTO fulfillment_order (id, order_id, customer_name, customer_email, priority, status,
    version, total_amount, shipping_address, shipping_city, shipping_postal_code,
    shipping_country, tracking_number, failure_reason, idempotency_key, recovery_count,
    created_at, processing_at, shipped_at, delivered_at, cancelled_at, failed_at,
    status_changed_at)
SELECT ts.id, gen_random_uuid(), 'Customer ' || (ts.id %% %(customers)s),
       'customer' || (ts.id %% %(customers)s) || '@example.com',
       CASE WHEN (r2 * 1000)::int %% 10 = 0 THEN 'high'
            WHEN (r2 * 1000)::int %% 10 < 3 THEN 'low' ELSE 'normal' END,
       status,
       1 + (processing_at IS NOT NULL)::int + (shipped_at IS NOT NULL)::int
         + (delivered_at IS NOT NULL)::int + (ended_at IS NOT NULL)::int,
       tot.amount, ts.id || ' Volume Street', 'Springfield', lpad((ts.id %% 99999)::text, 5, '0'),
       'US',
       CASE WHEN shipped_at IS NOT NULL THEN 'TRK' || lpad(ts.id::text, 12, '0') ELSE '' END,
       CASE WHEN status = 'failed' THEN 'simulated failure' ELSE '' END,
       NULL, 0, created_at, processing_at, shipped_at, delivered_at,
       CASE WHEN status = 'cancelled' THEN ended_at END,
       CASE WHEN status = 'failed' THEN ended_at END,
       coalesce(ended_at, delivered_at, shipped_at, processing_at, created_at)
FROM ts
JOIN (SELECT order_id, sum(quantity * unit_price) AS amount FROM vol_lines GROUP BY order_id) tot
  ON tot.order_id = ts.id
"""

_ORDER_LINES_SQL = """
INSERT INTO fulfillment_orderline (order_id, product_id, quantity, unit_price)
SELECT order_id, product_id, quantity, unit_price FROM vol_lines ORDER BY order_id, product_id
"""

# Every stock effect of the chunk's orders, in (order, phase) order, with running balances that
# continue from vol_balance (the product's totals before the chunk).
_MOVEMENTS_SQL = """
WITH eff AS (
    SELECT l.product_id, l.order_id, 1 AS phase, 'reserve' AS kind, 0 AS dh,
           l.quantity AS dr, o.created_at AS at
    FROM fulfillment_orderline l JOIN fulfillment_order o ON o.id = l.order_id
    WHERE o.id BETWEEN %(lo_id)s AND %(hi_id)s
    UNION ALL
    SELECT l.product_id, l.order_id, 2,
           CASE WHEN o.shipped_at IS NOT NULL THEN 'ship' ELSE 'release' END,
           CASE WHEN o.shipped_at IS NOT NULL THEN -l.quantity ELSE 0 END,
           -l.quantity, coalesce(o.shipped_at, o.cancelled_at, o.failed_at)
    FROM fulfillment_orderline l JOIN fulfillment_order o ON o.id = l.order_id
    WHERE o.id BETWEEN %(lo_id)s AND %(hi_id)s
      AND o.status NOT IN ('pending', 'processing')
), run AS (
    SELECT e.*, b.on_hand + sum(dh) OVER w AS oh_after, b.reserved + sum(dr) OVER w AS rs_after
    FROM eff e JOIN vol_balance b ON b.product_id = e.product_id
    WINDOW w AS (PARTITION BY e.product_id ORDER BY e.order_id, e.phase)
)
INSERT INTO fulfillment_stockmovement (product_id, kind, on_hand_delta, reserved_delta,
    on_hand_after, reserved_after, order_id, reason, actor, created_at)
SELECT product_id, kind, dh, dr, oh_after, rs_after, order_id, '', %(actor)s, at
FROM run ORDER BY order_id, phase, product_id
"""

_BALANCE_SQL = """
WITH d AS (
    SELECT product_id, sum(on_hand_delta) AS dh, sum(reserved_delta) AS dr, max(created_at) AS at
    FROM fulfillment_stockmovement
    WHERE order_id BETWEEN %(lo_id)s AND %(hi_id)s
    GROUP BY product_id
), b AS (
    UPDATE vol_balance b SET on_hand = b.on_hand + d.dh, reserved = b.reserved + d.dr
    FROM d WHERE d.product_id = b.product_id
    RETURNING b.*
)
UPDATE fulfillment_stocklevel s SET on_hand = b.on_hand, reserved = b.reserved,
    version = s.version + 1, updated_at = now()
FROM b WHERE b.product_id = s.product_id
"""

_ORDER_COLUMNS = (
    "cancelled_at, created_at, customer_email, customer_name, delivered_at, failed_at, "
    "failure_reason, id, idempotency_key, order_id, priority, processing_at, recovery_count, "
    "shipped_at, shipping_address, shipping_city, shipping_country, shipping_postal_code, "
    "status, status_changed_at, total_amount, tracking_number, version"
)

# The order's insert event (as pending) and one update event per status it moved to.
_ORDER_EVENTS_SQL = f"""
INSERT INTO fulfillment_orderevent (pgh_created_at, pgh_label, pgh_obj_id, pgh_context_id,
    {_ORDER_COLUMNS})
SELECT coalesce(CASE p.step WHEN 'processing' THEN o.processing_at
                            WHEN 'shipped' THEN o.shipped_at
                            WHEN 'delivered' THEN o.delivered_at
                            WHEN 'cancelled' THEN o.cancelled_at
                            WHEN 'failed' THEN o.failed_at END, o.created_at),
       CASE WHEN p.ord = 1 THEN 'insert' ELSE 'update' END, o.id, %(context)s,
       CASE WHEN p.step = 'cancelled' THEN o.cancelled_at END, o.created_at, o.customer_email,
       o.customer_name,
       CASE WHEN p.step = 'delivered' THEN o.delivered_at END,
       CASE WHEN p.step = 'failed' THEN o.failed_at END,
       CASE WHEN p.step = 'failed' THEN o.failure_reason ELSE '' END,
       o.id, o.idempotency_key, o.order_id, o.priority,
       CASE WHEN p.ord > 1 THEN o.processing_at END, o.recovery_count,
       CASE WHEN p.step IN ('shipped', 'delivered') THEN o.shipped_at END,
       o.shipping_address, o.shipping_city, o.shipping_country, o.shipping_postal_code,
       p.step,
       coalesce(CASE p.step WHEN 'processing' THEN o.processing_at
                            WHEN 'shipped' THEN o.shipped_at
                            WHEN 'delivered' THEN o.delivered_at
                            WHEN 'cancelled' THEN o.cancelled_at
                            WHEN 'failed' THEN o.failed_at END, o.created_at),
       o.total_amount,
       CASE WHEN p.step IN ('shipped', 'delivered') THEN o.tracking_number ELSE '' END,
       p.ord
FROM fulfillment_order o
CROSS JOIN LATERAL unnest(
    CASE o.status
        WHEN 'pending' THEN ARRAY['pending']
        WHEN 'processing' THEN ARRAY['pending', 'processing']
        WHEN 'shipped' THEN ARRAY['pending', 'processing', 'shipped']
        WHEN 'delivered' THEN ARRAY['pending', 'processing', 'shipped', 'delivered']
        ELSE CASE WHEN o.processing_at IS NULL THEN ARRAY['pending', o.status]
                  ELSE ARRAY['pending', 'processing', o.status] END
    END) WITH ORDINALITY AS p(step, ord)
WHERE o.id BETWEEN %(lo_id)s AND %(hi_id)s
ORDER BY o.id, p.ord
"""

_LINE_EVENTS_SQL = """
INSERT INTO fulfillment_orderlineevent (pgh_created_at, pgh_label, pgh_obj_id, pgh_context_id,
    id, order_id, product_id, quantity, unit_price)
SELECT o.created_at, 'insert', l.id, %(context)s, l.id, l.order_id, l.product_id, l.quantity,
       l.unit_price
FROM fulfillment_orderline l JOIN fulfillment_order o ON o.id = l.order_id
WHERE l.order_id BETWEEN %(lo_id)s AND %(hi_id)s
ORDER BY l.id
"""

# The chunk's orders in flight, each with its stage job: due now or within the next day.
_JOBS_SELECT = """
SELECT o.id AS order_pk, o.status AS expected_status,
       CASE WHEN random() < %(due)s THEN o.status_changed_at
            ELSE now() + random() * interval '1 day' END AS scheduled_at
FROM fulfillment_order o
WHERE o.id BETWEEN %(lo_id)s AND %(hi_id)s AND o.status IN ('pending', 'processing', 'shipped')
ORDER BY o.id
"""


class Progress:
    """``done/total``, rate, ETA on one stderr line, redrawn in place."""

    def __init__(self, total: int, label: str, stream: Any = None) -> None:
        self.total, self.label, self.stream = total, label, stream or sys.stderr
        self.started = time.monotonic()

    def update(self, done: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate else 0.0
        width = 30
        filled = int(width * done / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {done:,}/{self.total:,} {rate:,.0f}/s "
            f"elapsed {elapsed:,.0f}s ETA {eta:,.0f}s "
        )
        self.stream.flush()

    def finish(self) -> float:
        elapsed = time.monotonic() - self.started
        self.stream.write("\n")
        self.stream.flush()
        return elapsed


class Command(AuditedCommand):
    help = (
        "Add a large consistent data set (products, orders over a year, lines, ledger, stock, "
        "audit history, waiting stage jobs), set-based, with a progress bar on stderr."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, required=True, help="orders to add")
        parser.add_argument("--products", type=int, default=1000, help="products to add")
        parser.add_argument(
            "--jobs",
            type=int,
            default=None,
            help="orders in flight, each with a waiting stage job (default: a tenth of the "
            "orders, at most 1,000,000)",
        )
        parser.add_argument(
            "--due-fraction",
            type=float,
            default=0.5,
            help="share of the waiting jobs that are due now (the rest run within a day)",
        )
        parser.add_argument("--chunk", type=int, default=250_000, help="orders per transaction")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **opts: Any) -> None:
        total = opts["orders"]
        products = opts["products"]
        inflight = opts["jobs"] if opts["jobs"] is not None else min(total // 10, 1_000_000)
        if total < 1 or products < 100:
            raise CommandError("--orders must be >= 1 and --products >= 100")
        if not 0 <= inflight <= total:
            raise CommandError("--jobs must be between 0 and --orders")
        if not 0.0 <= opts["due_fraction"] <= 1.0:
            raise CommandError("--due-fraction must be between 0 and 1")
        chunk = max(1000, opts["chunk"])
        self._timings: dict[str, float] = {}
        actor = "command:seed_volume"
        started = time.monotonic()

        with transaction.atomic(), connection.cursor() as cur:
            run = str(int(time.time()))
            # Enough stock that no product runs out whatever the mix of lines.
            receive = 1000 + (total * 10) // products
            cur.execute(
                _PRODUCTS_SQL,
                {"run": run, "products": products, "receive": receive, "actor": actor},
            )
            product_ids = sorted(r[0] for r in cur.fetchall())
            cur.execute(
                "INSERT INTO pghistory_context (id, created_at, updated_at, metadata) "
                "VALUES (gen_random_uuid(), now(), now(), %s) RETURNING id",
                ['{"command": "seed_volume", "actor": "command:seed_volume"}'],
            )
            context = cur.fetchone()[0]
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            fast = bool(cur.fetchone()[0])

        progress = None if opts["quiet"] else Progress(total, "seed_volume orders")
        done = jobs = 0
        while done < total:
            lo, hi = done + 1, min(done + chunk, total)
            jobs += self._chunk(
                lo=lo,
                hi=hi,
                total=total,
                inflight=inflight,
                product_ids=product_ids,
                context=context,
                actor=actor,
                due=opts["due_fraction"],
                fast=fast,
            )
            done = hi
            if progress:
                progress.update(done)
        if progress:
            progress.finish()
        with connection.cursor() as cur:
            for table in (
                "fulfillment_order",
                "fulfillment_orderline",
                "fulfillment_stockmovement",
                "fulfillment_orderevent",
                "fulfillment_orderlineevent",
                "procrastinate_jobs",
            ):
                cur.execute(f"ANALYZE {table}")
        if opts["verbosity"] >= 2:
            for name, seconds in self._timings.items():
                self.stderr.write(f"  {name}: {seconds:,.1f}s")
        self.stdout.write(
            f"seed_volume: {total:,} orders, {len(product_ids):,} products, {jobs:,} waiting "
            f"jobs in {time.monotonic() - started:,.1f}s"
        )

    def _chunk(
        self,
        *,
        lo: int,
        hi: int,
        total: int,
        inflight: int,
        product_ids: list[int],
        context: Any,
        actor: str,
        due: float,
        fast: bool,
    ) -> int:
        """Load orders ``lo..hi`` (1-based positions in the data set) in one transaction."""
        with transaction.atomic(), connection.cursor() as cur:
            # Foreign keys checked at each statement, not queued to the commit: a queue of
            # millions of pending checks, and ALTER TABLE refuses a table with pending events.
            cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for table, trigger in _HISTORY_TRIGGERS.items():
                cur.execute(f'ALTER TABLE {table} DISABLE TRIGGER "{trigger}"')
            if fast:
                # A superuser may skip every trigger, foreign-key checks included, for the rows
                # this chunk writes: they are consistent by construction (the tests check it).
                cur.execute("SET LOCAL session_replication_role = replica")
            # Order ids continue the sequence: take a block of hi - lo + 1 of them.
            count = hi - lo + 1
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('fulfillment_order', 'id'), "
                "nextval(pg_get_serial_sequence('fulfillment_order', 'id')) + %s - 1)",
                [count],
            )
            first_id = int(cur.fetchone()[0]) - count + 1
            base = first_id - lo
            cur.execute(
                "CREATE TEMP TABLE vol_products ON COMMIT DROP AS "
                "SELECT n - 1 AS n, p.id, p.price FROM unnest(%s::bigint[]) WITH ORDINALITY "
                "AS u(id, n) JOIN fulfillment_product p ON p.id = u.id",
                [product_ids],
            )
            cur.execute(
                "CREATE TEMP TABLE vol_balance ON COMMIT DROP AS "
                "SELECT product_id, on_hand::bigint, reserved::bigint "
                "FROM fulfillment_stocklevel WHERE product_id = ANY(%s)",
                [product_ids],
            )
            cur.execute("CREATE UNIQUE INDEX ON vol_balance (product_id)")
            params = {
                "base": base,
                "lo": lo,
                "hi": hi,
                "total": total,
                "inflight": inflight,
                "products": len(product_ids),
                "customers": max(total // 5, 1),
                "lo_id": base + lo,
                "hi_id": base + hi,
                "actor": actor,
                "context": context,
            }
            for name, sql in (
                ("lines", _LINES_TEMP_SQL),
                ("orders", _ORDERS_SQL),
                ("order lines", _ORDER_LINES_SQL),
                ("ledger", _MOVEMENTS_SQL),
                ("stock", _BALANCE_SQL),
                ("order events", _ORDER_EVENTS_SQL),
                ("line events", _LINE_EVENTS_SQL),
            ):
                t = time.monotonic()
                cur.execute(sql, params)
                self._timings[name] = self._timings.get(name, 0.0) + time.monotonic() - t
            if fast:  # the jobs go in as usual, with Procrastinate's own triggers
                cur.execute("SET LOCAL session_replication_role = origin")
            t = time.monotonic()
            deferred = queue.defer_stage_jobs_from_query(
                _JOBS_SELECT, {"due": due, "lo_id": base + lo, "hi_id": base + hi}
            )
            self._timings["jobs"] = self._timings.get("jobs", 0.0) + time.monotonic() - t
            for table, trigger in _HISTORY_TRIGGERS.items():
                cur.execute(f'ALTER TABLE {table} ENABLE TRIGGER "{trigger}"')
            # Dropped here too: inside an outer transaction (tests) ON COMMIT comes too late.
            cur.execute("DROP TABLE vol_lines, vol_products, vol_balance")
        return deferred
