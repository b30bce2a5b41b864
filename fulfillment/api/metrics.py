"""``GET /metrics``: the Prometheus text exposition of every series (``fulfillment.metrics``) and
of the gauges computed here from the database at scrape time.

Access: ``Authorization: Bearer <METRICS_TOKEN>`` or an admin API key (``Bearer`` or
``X-API-Key``); anything else is a 401 in the API's error shape. Not throttled.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fulfillment import metrics, queue
from fulfillment.hardening import error_json
from fulfillment.models import ApiKey
from fulfillment.selectors import gauges
from fulfillment.selectors.api_keys import api_key_for

# Exact counts up to this many rows per status / queue, the planner's estimate beyond.
EXACT_COUNT_CAP = 1_000
logger = logging.getLogger("fulfillment.metrics")
QUEUES = (queue.PIPELINE_QUEUE, queue.MAINTENANCE_QUEUE, queue.PROBE_QUEUE)


def _families() -> Iterator[GaugeMetricFamily]:
    statuses = gauges.orders_in_status(cap=EXACT_COUNT_CAP)
    in_status = GaugeMetricFamily(
        "fulfillment_orders_in_status",
        f"Orders per status (exact up to {EXACT_COUNT_CAP}, estimated from table statistics beyond).",
        labels=["status"],
    )
    for status, count in statuses.items():
        in_status.add_metric([status], count.value)
    yield in_status

    waiting = GaugeMetricFamily(
        "fulfillment_jobs_waiting",
        f"Jobs due and waiting per queue (exact up to {EXACT_COUNT_CAP}, estimated beyond).",
        labels=["queue"],
    )
    oldest = GaugeMetricFamily(
        "fulfillment_oldest_waiting_job_seconds",
        "How long the job at the head of each queue (the next one taken) has been due.",
        labels=["queue"],
    )
    for q in queue.waiting_by_queue(QUEUES, cap=EXACT_COUNT_CAP):
        waiting.add_metric([q.queue], q.waiting)
        oldest.add_metric([q.queue], q.head_wait_s)
    yield waiting
    yield oldest

    fresh = settings.STALLED_WORKER_SECONDS
    alive = sum(1 for _, age in queue.worker_heartbeats(limit=1000) if age <= fresh)
    yield GaugeMetricFamily(
        "fulfillment_workers_alive",
        f"Procrastinate workers with a heartbeat in the last {fresh:g} seconds.",
        value=alive,
    )
    yield GaugeMetricFamily(
        "fulfillment_low_stock_products",
        "Products whose available stock is at or below their low-stock threshold.",
        value=gauges.low_stock_products(),
    )
    yield GaugeMetricFamily(
        "fulfillment_reconciliation_drift_products",
        "Products whose stock disagreed with the ledger at the last reconciliation (0 before "
        "the first).",
        value=gauges.reconciliation_drift_products() or 0,
    )


class StateCollector(Collector):
    """Gauges read from the database when scraped; each read is bounded (``selectors.gauges``,
    ``queue.waiting_by_queue``). With the database down the scrape still answers, with the
    series of ``fulfillment.metrics`` and ``fulfillment_metrics_state_up`` at 0."""

    def collect(self) -> Iterator[Any]:
        started = time.perf_counter()
        up = 1
        try:
            families = list(_families())
        except DatabaseError as exc:
            logger.warning("metrics: database read failed: %s", exc.__class__.__name__)
            families, up = [], 0
        yield from families
        yield GaugeMetricFamily(
            "fulfillment_metrics_state_up",
            "1 when this scrape could read the gauges from the database, else 0.",
            value=up,
        )
        yield GaugeMetricFamily(
            "fulfillment_metrics_state_query_seconds",
            "Time this scrape spent reading the gauges from the database.",
            value=time.perf_counter() - started,
        )


STATE = StateCollector()


def _authorized(request: HttpRequest) -> bool:
    authorization = request.headers.get("Authorization", "")
    if metrics.token_matches(authorization):
        return True
    scheme, _, bearer = authorization.partition(" ")
    raw = bearer.strip() if scheme.lower() == "bearer" else request.headers.get("X-API-Key", "")
    api_key = api_key_for(raw_key=raw.strip()) if raw else None
    return api_key is not None and api_key.role == ApiKey.Role.ADMIN  # the top role


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not metrics.enabled():
        return error_json(404, "not_found", "metrics are turned off (METRICS_ENABLED=0)")
    if not _authorized(request):
        response = error_json(
            401,
            "unauthorized",
            "send Authorization: Bearer <METRICS_TOKEN> or an admin API key",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.exposition(STATE), content_type=CONTENT_TYPE_LATEST)
