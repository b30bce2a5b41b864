"""Prometheus series of the application: every name is defined here, and the code records them
through the small functions below (one call after the statement that did the work returns).

Processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (``make run``, the compose stack) every process
(each gunicorn worker, the Procrastinate worker) writes its counters and histograms to files in
that directory, and ``GET /metrics`` on any web process serves the sum of all of them
(prometheus-client's multiprocess mode). Without it a process keeps its series in memory and
serves only its own. The Procrastinate worker can also serve its own series on
``METRICS_WORKER_PORT`` (a worker on another host than the web processes).

The gauges that need a query (orders in status, queue depth, workers, low stock, drift) are not
here: ``fulfillment.api.metrics`` computes them when ``/metrics`` is scraped.

``METRICS_ENABLED=0`` turns every function here into a no-op and removes the HTTP middleware.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
if MULTIPROC_DIR:
    # prometheus-client writes one file per process and metric there from the first series.
    os.makedirs(MULTIPROC_DIR, exist_ok=True)

from prometheus_client import (  # noqa: E402 - after the directory exists
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector  # noqa: E402

logger = logging.getLogger("fulfillment.metrics")

# Stage lags and job durations: from a few milliseconds (zero delays) to minutes (a backlog).
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

ORDER_SOURCES = ("single", "bulk")
STAGE_TARGETS = ("processing", "shipped", "delivered", "failed", "cancelled")
WEBHOOK_OUTCOMES = ("succeeded", "retry", "gave_up", "disabled")

ORDERS_ACCEPTED = Counter(
    "fulfillment_orders_accepted",
    "Orders accepted (stock reserved, order stored), by intake source.",
    ["source"],
)
ORDERS_REJECTED = Counter(
    "fulfillment_orders_rejected",
    "Orders refused by intake, by reason (the error code: insufficient_stock, validation, ...).",
    ["reason"],
)
STAGE_TRANSITIONS = Counter(
    "fulfillment_stage_transitions",
    "Committed order status changes, by the status moved to.",
    ["to"],
)
STAGE_LAG = Histogram(
    "fulfillment_stage_lag_seconds",
    "A stage job's start minus the time it was scheduled for.",
    buckets=_LAG_BUCKETS,
)
JOB_DURATION = Histogram(
    "fulfillment_job_duration_seconds",
    "Run time of Procrastinate jobs, by task and outcome (succeeded or failed).",
    ["task", "outcome"],
    buckets=_LAG_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "fulfillment_webhook_deliveries",
    "Webhook delivery attempts, by outcome.",
    ["outcome"],
)
WEBHOOK_DELIVERY_LAG = Histogram(
    "fulfillment_webhook_delivery_lag_seconds",
    "Time from the event to the delivery attempt of its webhook.",
    buckets=_LAG_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "fulfillment_http_requests",
    "HTTP requests, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "fulfillment_http_request_duration_seconds",
    "HTTP request latency in the application (middleware to middleware), by route template "
    "and method.",
    ["route", "method"],
    buckets=_REQUEST_BUCKETS,
)

# Series with a known label set exist from the start (at 0), so rate() and alerts see them.
for _source in ORDER_SOURCES:
    ORDERS_ACCEPTED.labels(source=_source)
for _to in STAGE_TARGETS:
    STAGE_TRANSITIONS.labels(to=_to)
for _outcome in WEBHOOK_OUTCOMES:
    WEBHOOK_DELIVERIES.labels(outcome=_outcome)


def enabled() -> bool:
    return bool(settings.METRICS_ENABLED)


def order_accepted(source: str, count: int = 1) -> None:
    if count and enabled():
        ORDERS_ACCEPTED.labels(source=source).inc(count)


def order_rejected(reason: str, count: int = 1) -> None:
    if count and enabled():
        ORDERS_REJECTED.labels(reason=reason).inc(count)


def stage_transition(to: str) -> None:
    if enabled():
        STAGE_TRANSITIONS.labels(to=to).inc()


def stage_lag(seconds: float) -> None:
    if enabled():
        STAGE_LAG.observe(max(seconds, 0.0))


def stage_lag_since(scheduled_at: datetime | None) -> None:
    """Observe the lag of a job starting now that was scheduled for ``scheduled_at`` (jobs
    deferred without a time have none)."""
    if scheduled_at is not None and enabled():
        STAGE_LAG.observe(max((datetime.now(UTC) - scheduled_at).total_seconds(), 0.0))


def job_finished(task: str, outcome: str, seconds: float) -> None:
    if enabled():
        JOB_DURATION.labels(task=task, outcome=outcome).observe(seconds)


def webhook_delivery(outcome: str, lag_seconds: float | None) -> None:
    """One recorded webhook delivery attempt: ``outcome`` (one of :data:`WEBHOOK_OUTCOMES`) and,
    for a delivered one, the time from the event to its receipt."""
    if enabled():
        WEBHOOK_DELIVERIES.labels(outcome=outcome).inc()
        if lag_seconds is not None:
            WEBHOOK_DELIVERY_LAG.observe(max(lag_seconds, 0.0))


# ----- HTTP --------------------------------------------------------------------------------------

# Intake routes (the resolved URL pattern) and the source their accepted orders count under.
INTAKE_ROUTES = {"api/v1/orders/": "single", "api/v1/orders/bulk_create/": "bulk"}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"
# Reasons under another name than their error code.
_REJECTION_REASON = {"validation_error": "validation"}


def route_of(request: HttpRequest) -> str:
    """The URL pattern that served the request (``api/v1/orders/<uuidstr:order_id>/``), never the
    raw path: one series per route, whatever the ids."""
    match = request.resolver_match
    return match.route if match is not None and match.route else UNMATCHED_ROUTE


def rejection_reason(code: str) -> str:
    """The ``reason`` label of an error code."""
    return _REJECTION_REASON.get(code, code)


def intake_rejected(request: HttpRequest, code: str) -> None:
    """Count an error answer to an intake request as a rejected order (every error answer of
    the API goes through the one function that calls this, with its error code)."""
    if request.method == "POST" and enabled() and route_of(request) in INTAKE_ROUTES:
        ORDERS_REJECTED.labels(reason=rejection_reason(code)).inc()


class HttpMetricsMiddleware:
    """Requests by route template, method and status, and their latency."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if not enabled():
            raise MiddlewareNotUsed
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        route = route_of(request)
        method = request.method if request.method in _METHODS else "other"
        HTTP_REQUESTS.labels(route=route, method=method, status=str(response.status_code)).inc()
        HTTP_REQUEST_DURATION.labels(route=route, method=method).observe(elapsed)
        return response


# ----- exposition --------------------------------------------------------------------------------


class _ProcessSeries(Collector):
    """The series of this process (the default registry), for a registry of its own."""

    def collect(self) -> Iterable[Any]:
        return REGISTRY.collect()


def exposition(*extra: Collector) -> bytes:
    """The text exposition of every process's series (multiprocess mode) or of this process's,
    followed by the series of ``extra`` collectors."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROC_DIR:
        multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    else:
        registry.register(_ProcessSeries())
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


def token_matches(authorization: str) -> bool:
    """True when ``authorization`` is ``Bearer <METRICS_TOKEN>`` and a token is configured."""
    token = str(settings.METRICS_TOKEN)
    scheme, _, given = authorization.partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


# ----- the worker's own port ---------------------------------------------------------------------


def _worker_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    if environ.get("PATH_INFO", "/") not in ("/", "/metrics"):
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return iter([b"not found\n"])
    if settings.METRICS_TOKEN and not token_matches(environ.get("HTTP_AUTHORIZATION", "")):
        start_response(
            "401 Unauthorized",
            [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
        )
        return iter([b"Authorization: Bearer <METRICS_TOKEN> required\n"])
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
    return iter([exposition()])


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def serve_worker_metrics(port: int, host: str = "0.0.0.0") -> WSGIServer:  # noqa: S104
    """Serve this process's series (or the multiprocess directory's) on ``host:port`` in a
    daemon thread: the Procrastinate worker's ``/metrics`` when it runs on its own host. Same
    bearer token as the web ``/metrics`` when ``METRICS_TOKEN`` is set."""
    server = make_server(host, port, _worker_app, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    logger.info("worker metrics on %s:%s/metrics", host, server.server_port)
    return server
