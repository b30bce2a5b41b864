"""Structured logs: one JSON line per request and per job."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator

import pytest
import structlog

from fulfillment.logs import job_log, log_job
from fulfillment.queue import ADVANCE_ORDER_TASK
from fulfillment.services.api_keys import api_key_create
from tests.conftest import ApiClient


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What the configured JSON handler writes, captured from the root logger."""
    root = logging.getLogger()
    formatter = root.handlers[0].formatter
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


def _lines(stream: io.StringIO, event: str) -> list[dict]:
    parsed = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [p for p in parsed if p.get("event") == event]


@pytest.mark.django_db
def test_one_json_line_per_request_with_id_key_method_path_status_duration(log_lines, client):
    issued = api_key_create(name="log-reader", role="viewer")
    api = ApiClient(client, {"Authorization": f"Bearer {issued.raw_key}"})

    api.get("products/", headers={"X-Request-ID": "req-log-1"})
    api.get("products/999999/", headers={"X-Request-ID": "req-log-2"})

    lines = _lines(log_lines, "request")
    assert [line["request_id"] for line in lines] == ["req-log-1", "req-log-2"]
    first, second = lines
    assert first["api_key"] == "log-reader"
    assert (first["method"], first["path"], first["status"]) == ("GET", "/api/v1/products/", 200)
    assert second["status"] == 404
    assert isinstance(first["duration_ms"], float) and 0 < first["duration_ms"] < 10_000
    assert first["level"] == "info" and first["logger"] == "fulfillment.request"
    assert "timestamp" in first


@pytest.mark.django_db
def test_request_line_without_a_key_names_no_key(log_lines, anon_api):
    anon_api.get("products/")

    (line,) = _lines(log_lines, "request")
    assert line["status"] == 401 and line["api_key"] is None


def test_job_log_writes_one_line_and_binds_job_fields_to_inner_lines(log_lines):
    inner = structlog.get_logger("fulfillment.pipeline")

    with job_log(task=ADVANCE_ORDER_TASK, job_id=42, order_id="ord-1") as line:
        inner.info("charging")
        time.sleep(0.02)
        line["outcome"] = "advanced"
        line["to_status"] = "processing"

    (job,) = _lines(log_lines, "job")
    assert job["task"] == ADVANCE_ORDER_TASK
    assert (job["job_id"], job["order_id"], job["outcome"]) == (42, "ord-1", "advanced")
    assert job["to_status"] == "processing" and 20 <= job["duration_ms"] < 10_000
    (charging,) = _lines(log_lines, "charging")
    assert charging["job_id"] == 42 and charging["order_id"] == "ord-1"


def test_job_log_records_an_error_outcome_and_reraises(log_lines):
    with pytest.raises(ValueError), job_log(task="t", job_id=7):
        raise ValueError("boom")

    (job,) = _lines(log_lines, "job")
    assert job["outcome"] == "error" and job["error"] == "ValueError" and job["level"] == "error"


def test_log_job_direct_call(log_lines):
    log_job(task="fulfillment.daily_report", job_id=None, outcome="skipped", reason="exists")

    (job,) = _lines(log_lines, "job")
    assert job["outcome"] == "skipped" and job["reason"] == "exists" and job["order_id"] is None


def test_stdlib_log_records_are_json_too(log_lines):
    logging.getLogger("some.library").warning("plain %s", "message")

    (line,) = _lines(log_lines, "plain message")
    assert line["level"] == "warning" and line["logger"] == "some.library"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("empty_queue")
def test_every_pipeline_job_run_writes_one_json_line(log_lines):
    from fulfillment.models import Order
    from tests.factories import make_order, make_product
    from tests.pipeline_support import run_worker_until_idle

    order = make_order(lines=[(make_product(stock=5), 1)])

    run_worker_until_idle()

    assert Order.objects.get(pk=order.pk).status == "delivered"
    lines = [line for line in _lines(log_lines, "job") if line["task"] == ADVANCE_ORDER_TASK]
    assert len(lines) == 3
    assert {line["order_id"] for line in lines} == {str(order.pk)}
    assert len({line["job_id"] for line in lines}) == 3
    assert all(line["outcome"] and line["attempt"] == 1 for line in lines)
    assert all(0 < line["duration_ms"] < 10_000 for line in lines)
