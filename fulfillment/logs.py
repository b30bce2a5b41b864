"""Structured logs (structlog): one JSON line per request and per job.

Every standard ``logging`` record goes through the same JSON renderer, so Django's, ninja's and
Procrastinate's lines are JSON too, and carry the request id / job fields bound for the current
request or job (structlog contextvars).

Request line (``RequestLogMiddleware``), logger ``fulfillment.request``::

    {"event": "request", "request_id": "...", "api_key": "ci-bot", "method": "POST",
     "path": "/api/v1/orders/", "status": 201, "duration_ms": 12.3, ...}

Job line (``job_log`` / ``log_job``), logger ``fulfillment.job``::

    {"event": "job", "task": "fulfillment.advance_order", "job_id": 42, "order_id": "...",
     "outcome": "advanced", "duration_ms": 3.1, ...}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

_SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
]


def configure(level: str = "INFO", fmt: str = "json") -> dict[str, Any]:
    """Configure structlog and return the ``LOGGING`` dict for settings (``fmt``: json|console)."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_SHARED_PROCESSORS,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False)
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "foreign_pre_chain": _SHARED_PROCESSORS,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    renderer,
                ],
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.db.backends": {"level": "WARNING"},
            # The request line below replaces Django's own 4xx/5xx request warnings.
            "django.request": {"level": "ERROR"},
        },
    }


request_logger = structlog.get_logger("fulfillment.request")
job_logger = structlog.get_logger("fulfillment.job")


class RequestLogMiddleware:
    """Binds the request id to every log line of the request and writes one line at its end."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        # Imported here: this module is imported by settings, before ninja may read them.
        from ninja.throttling import BaseThrottle

        self.get_response = get_response
        # The client address as throttling sees it (X-Forwarded-For only with NINJA_NUM_PROXIES).
        self.client_ip = BaseThrottle().get_ident

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request_id = getattr(request, "request_id", None)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            api_key = getattr(request, "api_key", None)
            log = request_logger.error if status >= 500 else request_logger.info
            log(
                "request",
                method=request.method,
                path=request.path,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                api_key=api_key.name if api_key is not None else None,
                client_ip=self.client_ip(request),
            )
            structlog.contextvars.clear_contextvars()


def log_job(
    *,
    task: str,
    job_id: int | None,
    outcome: str,
    order_id: Any = None,
    duration_ms: float | None = None,
    **fields: Any,
) -> None:
    """Write one ``job`` line. ``outcome`` is a short word: succeeded, skipped, failed, retried..."""
    log = job_logger.error if outcome in {"error", "failed"} else job_logger.info
    log(
        "job",
        task=task,
        job_id=job_id,
        order_id=str(order_id) if order_id is not None else None,
        outcome=outcome,
        duration_ms=duration_ms,
        **fields,
    )


@contextmanager
def job_log(
    *, task: str, job_id: int | None, order_id: Any = None, **fields: Any
) -> Iterator[dict[str, Any]]:
    """Time a job, bind its fields to every log line inside, and write its ``job`` line.

    The yielded dict is the line's extra fields; set ``outcome`` (default ``succeeded``) and
    anything else worth logging. An exception is logged as outcome ``error`` and re-raised::

        with job_log(task=ctx.job.task_name, job_id=ctx.job.id, order_id=oid) as line:
            line["outcome"] = "advanced" if moved else "skipped"
    """
    started = time.perf_counter()
    bound = {"task": task, "job_id": job_id}
    if order_id is not None:
        bound["order_id"] = str(order_id)
    line: dict[str, Any] = {"outcome": "succeeded", **fields}
    with structlog.contextvars.bound_contextvars(**bound):
        try:
            yield line
        except BaseException as exc:
            line["outcome"] = "error"
            line["error"] = exc.__class__.__name__
            raise
        finally:
            log_job(
                task=task,
                job_id=job_id,
                order_id=order_id,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                **line,
            )
