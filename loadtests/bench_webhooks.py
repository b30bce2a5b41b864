"""Webhook delivery benchmark: a loopback receiver subscribed to every event type, orders
arriving at a steady rate through the intake statement with the default stage delays, the
pipeline worker and the webhooks worker as ``make run`` starts them. Reports whether every event
was delivered (and how many twice), and the delivery lag: receipt by the receiver minus the
event's ``occurred_at``.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from loadtests.benchlib import ROOT, Bench, percentile
from loadtests.pipeline_harness import close_connections, make_products, reset, setup, sql


class _Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.received.append((self.headers["webhook-id"], time.time()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def _workers() -> Iterator[None]:
    from config.devstack.launcher import WEBHOOK_WORKER_COMMAND, WORKER_COMMAND

    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "LOG_LEVEL": "WARNING",
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",
        "STALE_CHECK_CRON": "0 0 1 1 *",
        "STALLED_JOBS_CRON": "0 0 1 1 *",
        "RECONCILIATION_CRON": "0 0 1 1 *",
    }
    procs = [
        subprocess.Popen([sys.executable, *cmd[1:]], cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        for cmd in (WORKER_COMMAND, WEBHOOK_WORKER_COMMAND)
    ]
    try:
        deadline = time.monotonic() + 60
        while sql("SELECT count(*) FROM procrastinate_workers")[0][0] < len(procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("workers did not start")
            time.sleep(0.05)
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def webhook_delivery(
    *, arrival_per_s: float = 50.0, seconds: float = 30.0, drain: float = 60.0
) -> dict[str, Any]:
    """Orders at ``arrival_per_s`` for ``seconds`` (one intake statement each), then up to
    ``drain`` seconds for the last stages and deliveries."""
    setup()
    reset()
    sql(
        "TRUNCATE fulfillment_webhookattempt, fulfillment_webhookdelivery, "
        "fulfillment_webhookendpoint, fulfillment_event, fulfillment_webhookdispatchstate"
    )
    from fulfillment.services.intake import order_create
    from fulfillment.services.receipts import OrderDraft
    from fulfillment.services.webhooks import webhook_endpoint_create

    receiver = _Receiver()
    rng = random.Random(3)
    try:
        from django.test import override_settings

        with override_settings(WEBHOOK_ALLOW_PRIVATE_NETWORKS=True):
            webhook_endpoint_create(url=receiver.url, event_types=["*"])
        # after the endpoint, so their events (initial stock) are delivered as well
        products = make_products()
        with _workers():
            started = time.perf_counter()
            sent = 0
            while (now := time.perf_counter()) - started < seconds:
                due = int(arrival_per_s * (now - started)) - sent
                for _ in range(max(due, 0)):
                    items = rng.sample(products, rng.randint(1, 3))
                    order_create(
                        draft=OrderDraft(
                            customer_name="bench",
                            customer_email="bench@example.com",
                            items=[(pid, rng.randint(1, 3)) for pid, _ in items],
                        ),
                        actor="bench",
                    )
                sent += max(due, 0)
                time.sleep(0.01)
            # then every order finishes its stages (their events too) and every event is
            # delivered, or ``drain`` runs out (what is missing then is reported)
            deadline = time.monotonic() + drain
            while time.monotonic() < deadline:
                flying, pending = sql(
                    "SELECT (SELECT count(*) FROM fulfillment_order WHERE status IN "
                    "('pending', 'processing', 'shipped')), (SELECT count(*) FROM "
                    "fulfillment_event e WHERE NOT EXISTS (SELECT 1 FROM "
                    "fulfillment_webhookdelivery d WHERE d.event_id = e.id AND d.status = "
                    "'succeeded'))"
                )[0]
                if flying == 0 and pending == 0:
                    break
                time.sleep(0.5)
            window = time.perf_counter() - started
        events = {
            f"evt_{r[0]}": float(r[1])
            for r in sql("SELECT id, EXTRACT(EPOCH FROM occurred_at) FROM fulfillment_event")
        }
    finally:
        receiver.close()
        close_connections()
    counts = Counter(wid for wid, _ in receiver.received)
    first_receipt: dict[str, float] = {}
    for wid, at in receiver.received:
        first_receipt.setdefault(wid, at)
    lags = sorted(first_receipt[w] - events[w] for w in first_receipt if w in events)
    return {
        "arrival_per_s": arrival_per_s,
        "orders": sent,
        "events": len(events),
        "delivered": len([w for w in events if w in first_receipt]),
        "undelivered": len([w for w in events if w not in first_receipt]),
        "delivered_twice": sum(1 for c in counts.values() if c > 1),
        "events_per_s": round(len(events) / window, 1),
        "lag_p50_s": round(percentile(lags, 50), 3) if lags else None,
        "lag_p99_s": round(percentile(lags, 99), 3) if lags else None,
        "lag_max_s": round(lags[-1], 3) if lags else None,
    }


def bench_webhook_delivery(bench: Bench) -> dict[str, Any]:
    """:func:`webhook_delivery` at 50 orders/s (``--quick``: shorter)."""
    quick = bench.delay_seconds < 30
    return webhook_delivery(arrival_per_s=50.0, seconds=10.0 if quick else 40.0)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    rate = float(args[0]) if args else 50.0
    seconds = float(args[1]) if len(args) > 1 else 30.0
    print(json.dumps(webhook_delivery(arrival_per_s=rate, seconds=seconds), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
