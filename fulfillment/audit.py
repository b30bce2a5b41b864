"""Audit context for pghistory events: who (actor) and why (request id, command name).

- Requests: ``fulfillment.middleware.RequestContextMiddleware`` opens the context with the request
  id and :func:`request_actor`, which is evaluated when a statement is written, so it names the
  API key once authentication has set ``request.api_key`` (or the admin user).
- Management commands: subclass :class:`AuditedCommand`; every write of the command carries
  ``{"command": "<name>", "actor": "command:<name>"}``.
"""

from __future__ import annotations

from typing import Any

import pghistory
from django.core.management.base import BaseCommand
from django.http import HttpRequest
from django.utils.functional import lazy


def _principal(request: HttpRequest) -> tuple[str, Any] | None:
    """The authenticated API key, else the logged-in admin user, else None."""
    key = getattr(request, "api_key", None)
    if key is not None:
        return "api_key", key
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return "user", user
    return None


def actor_of(request: HttpRequest) -> str:
    """Who is acting, by name (audit events, ledger rows, logs): ``api_key:<name>``,
    ``user:<username>`` or ``anonymous``."""
    who = _principal(request)
    if who is None:
        return "anonymous"
    kind, principal = who
    return f"{kind}:{principal.name if kind == 'api_key' else principal.get_username()}"


def caller_of(request: HttpRequest) -> str:
    """Whose request it is, by a stable id (names can be reused): the scope of its idempotency
    keys. Anonymous callers share one scope."""
    who = _principal(request)
    return "anonymous" if who is None else f"{who[0]}:{who[1].pk}"


# DjangoJSONEncoder (pghistory's default) turns the lazy string into str() when pghistory
# serialises the context for a write, i.e. after authentication has run.
_lazy_actor = lazy(actor_of, str)


def request_actor(request: HttpRequest) -> Any:
    """The actor of ``request`` as a lazy string (see module docstring)."""
    return _lazy_actor(request)


class AuditedCommand(BaseCommand):
    """A management command whose database writes are tagged with its name in pghistory."""

    @property
    def command_name(self) -> str:
        return type(self).__module__.rsplit(".", 1)[-1]

    @property
    def actor(self) -> str:
        """The ``actor`` to pass to services (ledger rows), e.g. ``command:seed_demo_data``."""
        return f"command:{self.command_name}"

    def execute(self, *args: Any, **options: Any) -> Any:
        with pghistory.context(command=self.command_name, actor=self.actor):
            return super().execute(*args, **options)
