"""Schemathesis against the app's own OpenAPI schema, in-process through the WSGI app.

Every operation gets a bounded number of generated requests (valid and invalid), sent with an
``admin`` key; no response may be a 5xx, and each must match the documented status codes, content
type, headers and body schema.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application
from fulfillment.models import Order
from fulfillment.services.intake import order_create
from fulfillment.services.receipts import OrderDraft
from tests.conftest import issue_key
from tests.factories import make_product

MAX_EXAMPLES = 30  # per operation; the run is deterministic (derandomize)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Not negative_data_rejection: pydantic's lax mode accepts some values the JSON Schema calls
# invalid (0 for a boolean, a number of seconds for a date-time) by design; that is coercion, not
# a failure to validate.


@pytest.fixture
def in_process_wsgi(transactional_db) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Keep the test's connection across WSGI requests, as Django's own test client does: the
    handler's request signals would otherwise close it."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# Loaded at collection (one in-process request; generating the schema needs no database).
# ``schemathesis.pytest.from_fixture`` would defer this, but it breaks on pytest 9's node ids.
schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


@pytest.fixture
def admin_headers(transactional_db) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {issue_key('admin', name='fuzzer')}"}


@pytest.fixture
def existing_ids(transactional_db) -> dict[str, list[object]]:  # type: ignore[no-untyped-def]
    """Rows that generated requests can hit, so details, updates and cancels get past the 404."""
    products = [make_product(stock=500).pk for _ in range(3)]
    for product_id in products:
        draft = OrderDraft(
            customer_name="Fuzz", customer_email="fuzz@example.com", items=[(product_id, 1)]
        )
        order_create(draft=draft, actor="test")
    orders = [str(o) for o in Order.objects.values_list("order_id", flat=True)]
    return {"product_id": list(products), "order_id": list(orders)}


def _aim_at_existing_rows(case, existing_ids) -> None:  # type: ignore[no-untyped-def]
    """Point about every other generated id at an existing row (deterministically)."""
    for name, value in (case.path_parameters or {}).items():
        ids = existing_ids.get(name)
        if not ids or not isinstance(value, int | str):
            continue
        n = value if isinstance(value, int) else zlib.crc32(value.encode())
        if n % 2 == 0:
            case.path_parameters[name] = ids[n % len(ids)]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,  # no example database: every run is the same run
    suppress_health_check=list(HealthCheck),
)
# transaction=True: each request commits (or fails) on its own, as in production. Inside one test
# transaction a statement error of one request (a 422 for a NUL byte PostgreSQL refuses, say)
# would abort the transaction for every later request.
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("in_process_wsgi")
def test_api_conforms_to_its_schema_and_never_answers_5xx(case, admin_headers, existing_ids):  # type: ignore[no-untyped-def]
    _aim_at_existing_rows(case, existing_ids)
    # Throttling is off here: the fuzzer sends hundreds of requests with one key in a few seconds.
    with override_settings(THROTTLE_RATES={}):
        case.call_and_validate(headers=admin_headers, checks=CHECKS)
