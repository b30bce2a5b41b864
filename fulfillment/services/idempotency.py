"""Idempotent requests: the same ``Idempotency-Key`` and body get the original response.

The claim is a row in ``IdempotencyRecord`` (unique on scope + key) inserted at the start of the
request's own transaction with ``ON CONFLICT DO NOTHING``. A concurrent retry's insert waits on
the unique index until the first transaction ends: after a commit it finds the stored response,
after a rollback (the request failed, nothing was written) its insert succeeds and it runs the
request itself. No in-process lock: this holds across processes and machines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.db import connection, transaction

from fulfillment.errors import IdempotencyMismatch, ValidationFailed
from fulfillment.models import IdempotencyRecord

MAX_KEY_LENGTH = 255

_CLAIM_SQL = """
INSERT INTO fulfillment_idempotencyrecord (scope, key, request_hash, created_at)
VALUES (%s, %s, %s, now())
ON CONFLICT (scope, key) DO NOTHING
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
    scope: str,
    key: str,
    request_hash: str,
    run: Callable[[], tuple[int, Any]],
) -> tuple[int, Any]:
    """Run ``run()`` (returning ``(status, json_body)``) at most once per ``scope`` + ``key``.

    ``run`` executes inside this transaction, so its writes and the stored response commit
    together; if it raises, the claim rolls back with everything else and a retry runs again.
    Same key with another body: IdempotencyMismatch (409).
    """
    key = check_key(key)
    with connection.cursor() as cur:
        cur.execute(_CLAIM_SQL, [scope, key, request_hash])
        claimed = cur.fetchone()
    if claimed is None:
        record = IdempotencyRecord.objects.get(scope=scope, key=key)
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
