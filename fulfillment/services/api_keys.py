"""API key write side: create (the only moment the raw key exists), revoke, mark used."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.utils import timezone

from fulfillment.errors import Conflict, NotFound, ValidationFailed
from fulfillment.models import API_KEY_PREFIX, THROTTLE_RATE_PATTERN, ApiKey, hash_api_key

# last_used_at is written at most this often per key, so a busy key is not one UPDATE per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw_key: str  # shown once; only its hash is stored


def new_key_material() -> tuple[str, str, str]:
    """A fresh ``(prefix, raw_key, hashed_secret)``."""
    prefix = secrets.token_hex(6)
    raw_key = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    return prefix, raw_key, hash_api_key(raw_key)


def api_key_create(*, name: str, role: str, throttle_rate: str = "") -> IssuedKey:
    """Create a key and return it with its raw value, which is never stored nor shown again.

    ``throttle_rate`` (e.g. ``"1000000/min"``) replaces ``THROTTLE_RATE_KEY`` for this key; empty
    keeps the setting. The unique ``name`` and ``prefix`` constraints make a concurrent duplicate
    fail cleanly.
    """
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationFailed("name must be 1 to 100 characters", field="name")
    if role not in ApiKey.Role.values:
        raise ValidationFailed(
            f"role must be one of {', '.join(ApiKey.Role.values)}", field="role", role=role
        )
    if throttle_rate and not re.fullmatch(THROTTLE_RATE_PATTERN, throttle_rate):
        raise ValidationFailed(
            "throttle_rate must read <requests>/<s|m|h|d>, e.g. 1200/min",
            field="throttle_rate",
            throttle_rate=throttle_rate,
        )
    prefix, raw_key, hashed = new_key_material()
    try:
        with transaction.atomic():
            api_key = ApiKey.objects.create(
                name=name,
                role=role,
                prefix=prefix,
                hashed_secret=hashed,
                throttle_rate=throttle_rate,
            )
    except IntegrityError as exc:
        raise Conflict(f"an API key named {name!r} already exists", field="name") from exc
    return IssuedKey(api_key=api_key, raw_key=raw_key)


@transaction.atomic
def api_key_replace(*, name: str, role: str, throttle_rate: str = "") -> IssuedKey:
    """Delete the key named ``name`` (if any) and issue a new one under the same name.

    For the demo and load-test keys of the dev stack whose raw value was lost; real keys are
    revoked instead, so their row stays as a record.
    """
    ApiKey.objects.filter(name=name).delete()
    return api_key_create(name=name, role=role, throttle_rate=throttle_rate)


def api_key_revoke(*, name: str) -> ApiKey:
    """Revoke a key at once (one conditional UPDATE); revoking twice keeps the first timestamp."""
    ApiKey.objects.filter(name=name, revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_key = ApiKey.objects.filter(name=name).first()
    if api_key is None:
        raise NotFound("api key", name)
    return api_key


def api_key_mark_used(*, api_key: ApiKey) -> None:
    """Record use, at most once per ``LAST_USED_RESOLUTION`` (one UPDATE, no lock).

    Explicitly on the primary, so this bookkeeping write does not pin the rest of a read
    request to the primary (see ``config.db_router``).
    """
    now = timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at < LAST_USED_RESOLUTION:
        return
    ApiKey.objects.using(DEFAULT_DB_ALIAS).filter(pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
