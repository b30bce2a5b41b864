"""An API key's own request limit (``ApiKey.throttle_rate``) replaces ``THROTTLE_RATE_KEY`` for
that key only; an empty one keeps the setting. Load-test keys use it to stay out of the throttle."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client, override_settings

from fulfillment.errors import ValidationFailed
from fulfillment.models import ApiKey
from fulfillment.services.api_keys import api_key_create
from tests.conftest import ApiClient, assert_error, issue_key

pytestmark = pytest.mark.django_db


def _client(raw_key: str) -> ApiClient:
    return ApiClient(Client(), {"Authorization": f"Bearer {raw_key}"})


@override_settings(THROTTLE_RATES={"key": "2/min", "anon": "100/min"})
def test_a_key_with_its_own_rate_is_not_held_to_the_default_rate():
    # given: the default allows 2 requests a minute; this key may make 1,000,000
    fast = _client(api_key_create(name="fast", role="viewer", throttle_rate="1000000/min").raw_key)
    default = _client(issue_key("viewer"))

    # when
    fast_statuses = [fast.get("products/").status_code for _ in range(6)]
    default_statuses = [default.get("products/").status_code for _ in range(3)]

    # then
    assert fast_statuses == [200] * 6
    assert default_statuses[:2] == [200, 200]
    assert_error(default.get("products/"), 429, "throttled")


@override_settings(THROTTLE_RATES={"key": "100/min", "anon": "100/min"})
def test_a_key_with_a_lower_rate_of_its_own_is_throttled_at_that_rate():
    slow = _client(api_key_create(name="slow", role="admin", throttle_rate="2/min").raw_key)
    other = _client(issue_key("admin"))

    statuses = [slow.get("products/").status_code for _ in range(2)]
    throttled = slow.get("products/")

    assert statuses == [200, 200]
    error = assert_error(throttled, 429, "throttled")
    assert error["details"]["limit"] == "2/60s"
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert other.get("products/").status_code == 200


@override_settings(THROTTLE_RATES={"key": "", "anon": ""})
def test_a_key_rate_applies_even_when_the_default_rate_is_off():
    slow = _client(api_key_create(name="slow-off", role="viewer", throttle_rate="1/min").raw_key)

    assert slow.get("products/").status_code == 200
    assert_error(slow.get("products/"), 429, "throttled")


@pytest.mark.parametrize("rate", ["fast", "0/min", "10/minute", "10/5min", "-1/s", "1000/ min"])
def test_api_key_create_rejects_a_malformed_rate_and_writes_nothing(rate):
    with pytest.raises(ValidationFailed) as excinfo:
        api_key_create(name="bad-rate", role="viewer", throttle_rate=rate)

    assert excinfo.value.code == "validation_error"
    assert "throttle_rate" in excinfo.value.message
    assert not ApiKey.objects.filter(name="bad-rate").exists()


@pytest.mark.parametrize("rate", ["1/s", "5/sec", "1200/m", "1200/min", "10/h", "10/hour", "1/d"])
def test_api_key_create_stores_a_well_formed_rate(rate):
    issued = api_key_create(
        name=f"rate-{rate.replace('/', '-')}", role="viewer", throttle_rate=rate
    )

    assert ApiKey.objects.get(pk=issued.api_key.pk).throttle_rate == rate


def test_the_database_refuses_a_malformed_rate_written_around_the_service():
    issued = api_key_create(name="raw-write", role="viewer")

    with pytest.raises(IntegrityError), transaction.atomic():
        ApiKey.objects.filter(pk=issued.api_key.pk).update(throttle_rate="lots")

    assert ApiKey.objects.get(pk=issued.api_key.pk).throttle_rate == ""


def test_create_api_key_command_sets_the_rate():
    out, err = StringIO(), StringIO()

    call_command(
        "create_api_key",
        "--name",
        "bench-bot",
        "--role",
        "operator",
        "--throttle-rate",
        "50000/min",
        stdout=out,
        stderr=err,
    )

    key = ApiKey.objects.get(name="bench-bot")
    assert (key.role, key.throttle_rate) == ("operator", "50000/min")
    assert out.getvalue().strip().startswith("of_")
