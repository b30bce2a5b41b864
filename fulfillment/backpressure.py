"""Backpressure: is the pipeline behind, and should intake refuse new orders?

The pipeline is *behind* when the oldest due job has waited longer than
``BACKPRESSURE_LAG_SECONDS`` past its scheduled time (``queue.oldest_due_job_age``, a bounded
index read). ``/health/`` reports the lag and the flag. With ``BACKPRESSURE_REJECT_INTAKE`` on
(off by default), ``POST /orders/`` and ``POST /orders/bulk_create/`` answer 503 with
``Retry-After`` while the pipeline is behind, instead of accepting orders it cannot fulfil in time.

The lag is read at most once per ``BACKPRESSURE_CACHE_SECONDS`` per process (a module-level
cache), so intake adds no query per request; with rejection off intake never reads it at all.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from fulfillment import queue
from fulfillment.errors import PipelineBehind


@dataclass(frozen=True)
class Lag:
    lag_s: float
    threshold_s: float

    @property
    def behind(self) -> bool:
        return self.lag_s > self.threshold_s


_lock = threading.Lock()
_cached: tuple[float, float] | None = None  # (monotonic time read, lag seconds)


def queue_lag(*, fresh: bool = False) -> Lag:
    """The queue lag, read from the database at most once per ``BACKPRESSURE_CACHE_SECONDS``
    (``fresh`` reads it now)."""
    global _cached
    now = time.monotonic()
    with _lock:
        cached = _cached
    if fresh or cached is None or now - cached[0] >= settings.BACKPRESSURE_CACHE_SECONDS:
        lag = queue.oldest_due_job_age()
        with _lock:
            _cached = (now, lag)
    else:
        lag = cached[1]
    return Lag(lag_s=lag, threshold_s=settings.BACKPRESSURE_LAG_SECONDS)


def forget() -> None:
    """Drop the cached lag (tests, and after a setting changes)."""
    global _cached
    with _lock:
        _cached = None


def refuse_intake_if_behind() -> None:
    """Raise :class:`PipelineBehind` when rejection is on and the pipeline is behind."""
    if not settings.BACKPRESSURE_REJECT_INTAKE:
        return
    lag = queue_lag()
    if lag.behind:
        # Ask the client to come back after about the time the queue needs to catch up.
        retry_after = max(1, min(60, math.ceil(lag.lag_s - lag.threshold_s)))
        raise PipelineBehind(
            lag_s=round(lag.lag_s, 1), threshold_s=lag.threshold_s, retry_after=retry_after
        )
