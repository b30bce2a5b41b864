"""Request throttling on the Redis cache: per API key, and per client IP for anonymous reads.

Built on django-ninja's ``SimpleRateThrottle`` (rate strings like ``"1200/min"``, ``wait()`` for
``Retry-After``, ``get_ident()`` honouring ``NINJA_NUM_PROXIES``), with one change: instead of
ninja's sliding log (a list of timestamps read, changed in Python and written back on every
request, so concurrent requests lose each other's hits and a busy key moves kilobytes per call),
each window is one Redis counter bumped atomically with ``INCR``.

Redis down fails open. With django-redis ``IGNORE_EXCEPTIONS`` the cache calls return ``None``
(``incr``/``add``) or the default (``get``) instead of raising; ninja's stock throttles then see
an empty history and let everything through. Here ``None`` means "unknown" and the request is let
through too; any other cache error is caught and logged the same way, so a misconfigured cache
can never turn into a 500.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from ninja.throttling import BaseThrottle, SimpleRateThrottle

logger = logging.getLogger("fulfillment.throttling")


class WindowThrottle(SimpleRateThrottle):
    """Fixed-window counter ``throttle:<scope>:<ident>:<window>`` with the window as its TTL.

    The rate is read from ``settings.THROTTLE_RATES[scope]`` on each request (so tests and
    operators can change it without re-creating the API); an empty rate disables the scope.
    ``rate_for`` lets a scope take the rate from the request instead (an API key's own rate).
    """

    scope = ""

    def __init__(self) -> None:  # no rate parsing at import time: see allow_request
        self._local = threading.local()

    def get_cache_key(self, request: HttpRequest) -> str | None:
        raise NotImplementedError

    def rate_for(self, request: HttpRequest) -> str | None:
        return (getattr(settings, "THROTTLE_RATES", {}) or {}).get(self.scope)

    def current_rate(self, request: HttpRequest) -> tuple[int, int] | None:
        rate = self.rate_for(request)
        if not rate:
            return None
        num, duration = self.parse_rate(rate)
        return (num, duration) if num is not None and duration else None

    def allow_request(self, request: HttpRequest) -> bool:
        self._local.wait = None
        rate = self.current_rate(request)
        ident = self.get_cache_key(request) if rate else None
        if rate is None or ident is None:
            return True
        num, duration = rate
        now = time.time()
        window = int(now // duration)
        count = self._hit(f"throttle:{self.scope}:{ident}:{window}", duration)
        if count is None:
            return True  # Redis unavailable: fail open (the health check reports Redis)
        if count <= num:
            return True
        self._local.wait = max(1, math.ceil((window + 1) * duration - now))
        request.throttle_limit = f"{num}/{duration}s"  # type: ignore[attr-defined]
        return False

    def wait(self) -> float | None:
        return getattr(self._local, "wait", None)

    @staticmethod
    def _hit(key: str, ttl: int) -> int | None:
        """Count one request in ``key``: ``INCR`` when it exists, else create it with a TTL."""
        try:
            try:
                return _as_count(cache.incr(key))
            except ValueError:  # not there yet (new window)
                added = cache.add(key, 1, timeout=ttl + 1)
                if added is None:
                    return None
                if added:
                    return 1
                try:  # someone else created it in between
                    return _as_count(cache.incr(key))
                except ValueError:  # ... and it expired already
                    return 1
        except Exception:
            logger.warning("throttle cache unavailable, failing open", exc_info=True)
            return None


def _as_count(value: Any) -> int | None:
    return value if isinstance(value, int) else None


class KeyThrottle(WindowThrottle):
    """Per API key: the key's own ``throttle_rate`` when it has one, else ``THROTTLE_RATES["key"]``."""

    scope = "key"

    def rate_for(self, request: HttpRequest) -> str | None:
        own_rate = getattr(getattr(request, "api_key", None), "throttle_rate", "")
        return str(own_rate) if own_rate else super().rate_for(request)

    def get_cache_key(self, request: HttpRequest) -> str | None:
        api_key = getattr(request, "api_key", None)
        return str(api_key.pk) if api_key is not None else None


class AnonymousThrottle(WindowThrottle):
    """Per client IP for requests without a key (``THROTTLE_RATES["anon"]``)."""

    scope = "anon"

    def get_cache_key(self, request: HttpRequest) -> str | None:
        if getattr(request, "api_key", None) is not None:
            return None
        return self.get_ident(request) or "unknown"


API_THROTTLES: list[BaseThrottle] = [KeyThrottle(), AnonymousThrottle()]
