"""Idempotent requests: the same caller, ``Idempotency-Key`` and body get the original response.

A key is scoped to its owner (the API key or user that sent it) and the operation, as payment
APIs do: another caller using the same key string runs its own request. The claim is a row in
``IdempotencyRecord`` (unique on owner + scope + key) inserted at the start of the request's own
transaction. A concurrent retry's insert waits on the unique index until the first transaction
ends: after a commit it finds the stored response, after a rollback (the request failed, nothing
was written) its insert succeeds and it runs the request itself. No in-process lock: this holds
across processes and machines.

Records expire after ``IDEMPOTENCY_RETENTION_HOURS``: the claim takes over an expired record
(``ON CONFLICT ... DO UPDATE ... WHERE`` expired), so a request after expiry runs as a new one,
and the weekly clean-up deletes expired records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from fulfillment.errors import IdempotencyMismatch, ValidationFailed
from fulfillment.models import IdempotencyRecord

MAX_KEY_LENGTH = 255

# Raw SQL because the ORM has no INSERT ... ON CONFLICT DO UPDATE ... WHERE: one statement that
# claims a new key, takes over an expired record (the row lock it takes makes a concurrent
# claimant wait and then see a fresh record), and returns nothing for a live one.
_CLAIM_SQL = """
INSERT INTO fulfillment_idempotencyrecord (owner, scope, key, request_hash, created_at)
VALUES (%(owner)s, %(scope)s, %(key)s, %(hash)s, now())
ON CONFLICT (owner, scope, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, created_at = EXCLUDED.created_at,
        status_code = NULL, body = NULL
    WHERE fulfillment_idempotencyrecord.created_at
          < now() - make_interval(hours => %(retention_hours)s)
RETURNING id
"""


def request_fingerprint(data: Any) -> str:
    """A stable hash of a (validated, JSON-compatible) request body."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationFailed(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters",
            header="Idempotency-Key",
        )
    return key


@transaction.atomic
def idempotent_call(
    *,
    owner: str,
    scope: str,
    key: str,
    request_hash: str,
    run: Callable[[], tuple[int, Any]],
) -> tuple[int, Any]:
    """Run ``run()`` (returning ``(status, json_body)``) at most once per ``owner`` + ``scope`` +
    ``key`` within ``IDEMPOTENCY_RETENTION_HOURS``.

    ``run`` executes inside this transaction, so its writes and the stored response commit
    together; if it raises, the claim rolls back with everything else and a retry runs again.
    Same key with another body: IdempotencyMismatch (409).
    """
    key = check_key(key)
    with connection.cursor() as cur:
        cur.execute(
            _CLAIM_SQL,
            {
                "owner": owner,
                "scope": scope,
                "key": key,
                "hash": request_hash,
                "retention_hours": int(settings.IDEMPOTENCY_RETENTION_HOURS),
            },
        )
        claimed = cur.fetchone()
    if claimed is None:
        record = IdempotencyRecord.objects.get(owner=owner, scope=scope, key=key)
        if record.request_hash != request_hash:
            raise IdempotencyMismatch(
                "this Idempotency-Key was used with a different request body",
                idempotency_key=key,
            )
        assert record.status_code is not None  # committed claims always carry their response
        return record.status_code, record.body
    status, body = run()
    IdempotencyRecord.objects.filter(pk=claimed[0]).update(status_code=status, body=body)
    return status, body


def idempotency_records_delete_expired(*, now: datetime | None = None) -> int:
    """Delete the records older than ``IDEMPOTENCY_RETENTION_HOURS`` (one DELETE); their keys
    are already forgotten by :func:`idempotent_call`. Returns how many were deleted."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS)
    return IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()[0]
