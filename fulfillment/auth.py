"""Who may call what: API keys, roles and the one policy table for every endpoint.

The NinjaAPI has ``auth=API_AUTH`` globally, so routers need to know nothing about it. A request
is let through by the first of:

1. ``Authorization: Bearer <key>``  (OpenAPI scheme ``ApiKeyBearer``)
2. ``X-API-Key: <key>``             (OpenAPI scheme ``ApiKeyHeader``)
3. a staff user logged into the admin site (browser use of the docs; CSRF enforced on writes),
   who acts with the ``admin`` role and is the actor as ``user:<username>``;
4. no key at all, when ``ALLOW_ANONYMOUS_READS`` is on and the operation needs only ``viewer``.

A key that is unknown, malformed or revoked is 401 (even when anonymous reads are on: a client
that sends a key must send a valid one); a valid key whose role is below what ``POLICY``
requires is 403. Health, docs and the OpenAPI schema are not ninja operations and stay public.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import pghistory
from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from ninja.errors import AuthenticationError, AuthorizationError
from ninja.security import APIKeyHeader, HttpBearer
from ninja.utils import check_csrf

from fulfillment.models import ApiKey
from fulfillment.selectors.api_keys import api_key_for
from fulfillment.services.api_keys import api_key_mark_used

VIEWER: str = ApiKey.Role.VIEWER.value
OPERATOR: str = ApiKey.Role.OPERATOR.value
ADMIN: str = ApiKey.Role.ADMIN.value
ROLE_RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Rule:
    methods: frozenset[str]
    path: re.Pattern[
        str
    ]  # matched against the path below the API root, e.g. "orders/<uuid>/cancel/"
    role: str


def _rule(methods: str, path: str, role: str) -> Rule:
    return Rule(frozenset(methods.split()), re.compile(path), role)


# First match wins. Anything not listed: reads need ``viewer``, every other write needs ``admin``,
# so a new write endpoint is admin-only until it is listed here.
POLICY: tuple[Rule, ...] = (
    _rule("POST", r"orders/", OPERATOR),
    _rule("POST", r"orders/bulk_create/", OPERATOR),
    _rule("POST", r"orders/check_stale/", ADMIN),
    _rule("POST", r"orders/[^/]+/cancel/", OPERATOR),
    _rule("POST PUT PATCH DELETE", r"products/.*", ADMIN),
    _rule("POST", r"inventory/[^/]+/adjust/", ADMIN),
    # Webhook endpoints are admin-only, reads included (URLs and delivery logs).
    _rule("GET HEAD OPTIONS POST PUT PATCH DELETE", r"webhooks/.*", ADMIN),
)


@cache
def _api_root() -> str:
    return reverse("api:api-root")


def api_path(request: HttpRequest) -> str:
    """The request path below the API root (``/api/v1/orders/`` -> ``orders/``)."""
    root = _api_root()
    path = request.path
    return path[len(root) :] if path.startswith(root) else path.lstrip("/")


def required_role(method: str, path: str) -> str:
    for rule in POLICY:
        if method in rule.methods and rule.path.fullmatch(path):
            return rule.role
    return VIEWER if method in SAFE_METHODS else ADMIN


def role_allows(role: str, needed: str) -> bool:
    return ROLE_RANK.get(role, 0) >= ROLE_RANK[needed]


@dataclass(frozen=True)
class Anonymous:
    """The principal of an anonymous read (``ALLOW_ANONYMOUS_READS``)."""

    def __str__(self) -> str:
        return "anonymous"


ANONYMOUS = Anonymous()


def authorize(request: HttpRequest, raw_key: str | None) -> ApiKey:
    """Authenticate ``raw_key`` and check its role against ``POLICY``; raises 401 / 403."""
    api_key = api_key_for(raw_key=raw_key or "")
    if api_key is None:
        raise AuthenticationError(message="invalid or revoked API key")
    request.api_key = api_key  # type: ignore[attr-defined]  # read by actor_of() and the logs
    needed = required_role(request.method or "GET", api_path(request))
    if not role_allows(api_key.role, needed):
        raise AuthorizationError(
            message=f"API key {api_key.name!r} has role {api_key.role!r}; "
            f"{request.method} {request.path} needs {needed!r}"
        )
    # Every pghistory event of this request names the key (the context is opened per request).
    pghistory.context(actor=f"api_key:{api_key.name}", api_key=api_key.name)
    api_key_mark_used(api_key=api_key)
    return api_key


class ApiKeyBearer(HttpBearer):
    """``Authorization: Bearer <key>``."""

    openapi_description = "API key as a bearer token: `Authorization: Bearer of_...`"

    def __call__(self, request: HttpRequest) -> ApiKey | None:
        # Unlike ninja's HttpBearer, never log the header: it may hold a credential.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None  # absent or another scheme: try the next method
        return self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey:
        return authorize(request, token.strip())


class ApiKeyHeader(APIKeyHeader):
    """``X-API-Key: <key>``."""

    param_name = "X-API-Key"
    openapi_description = "API key in the `X-API-Key` header"

    def authenticate(self, request: HttpRequest, key: str | None) -> ApiKey | None:
        if not key:
            return None  # try the next method
        return authorize(request, key.strip())


class StaffSession:
    """A logged-in, active staff user (admin site session) acts with the ``admin`` role.

    Hidden from the OpenAPI schemes (API clients use keys). Writes need a valid CSRF token,
    like any cookie-authenticated request.
    """

    def __call__(self, request: HttpRequest) -> Any:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not (user.is_active and user.is_staff):
            return None
        if request.method not in SAFE_METHODS and check_csrf(request) is not None:
            raise AuthorizationError(message="CSRF check failed for a session-authenticated write")
        pghistory.context(actor=f"user:{user.get_username()}")
        return user


class AnonymousReads:
    """Lets a request without any key through when reads are open and it needs only ``viewer``.

    It has no ``openapi_security_schema``, so the docs list only the two key schemes.
    """

    def __call__(self, request: HttpRequest) -> Any:
        if not getattr(settings, "ALLOW_ANONYMOUS_READS", False):
            return None
        if required_role(request.method or "GET", api_path(request)) != VIEWER:
            return None
        return ANONYMOUS


API_AUTH: list[Callable[[HttpRequest], Any]] = [
    ApiKeyBearer(),
    ApiKeyHeader(),
    StaffSession(),
    AnonymousReads(),
]
