from __future__ import annotations

import pytest

from fulfillment import queue

pytestmark = pytest.mark.django_db


def _defer(n: int, *, due: bool) -> None:
    when = "now() - interval '1 minute'" if due else "now() + interval '1 hour'"
    queue.defer_stage_jobs_from_query(
        f"SELECT g AS order_pk, 'pending' AS expected_status, {when} AS scheduled_at "
        "FROM generate_series(1, %(n)s) g",
        {"n": n},
    )


def test_queue_figures_past_the_cap_are_flagged_as_estimates(
    client, live_worker, monkeypatch, settings
):
    # given: 8 due jobs and 3 scheduled later, with a cap of 5 rows per count and a sample of 5
    settings.HEALTH_CACHE_SECONDS = 0
    monkeypatch.setattr(queue, "QUEUE_COUNT_CAP", 5)
    monkeypatch.setattr(queue, "QUEUE_SAMPLE", 5)
    _defer(8, due=True)
    _defer(3, due=False)

    # when
    body = client.get("/health/").json()

    # then: the due count is an estimate of at least the cap; the scheduled count is exact
    q = body["checks"]["queue"]
    assert q["jobs_waiting"] >= 5 and q["jobs_scheduled"] == 3 and q["jobs_running"] == 0
    assert q["estimated"] == ["jobs_waiting", "oldest_waiting_s", "failed_last_hour"]
    assert 59 <= q["oldest_waiting_s"] < 120


def test_queue_figures_under_the_cap_are_exact(client, live_worker, settings):
    settings.HEALTH_CACHE_SECONDS = 0
    _defer(2, due=True)

    q = client.get("/health/").json()["checks"]["queue"]

    assert q["jobs_waiting"] == 2 and q["jobs_scheduled"] == 0 and q["estimated"] == []


def test_the_detailed_report_is_shared_for_a_short_while(client, live_worker, settings):
    # given: a report cached for a minute
    settings.HEALTH_CACHE_SECONDS = 60
    first = client.get("/health/").json()

    # when: the queue changes
    _defer(1, due=True)
    second = client.get("/health/").json()

    # then: the same report, computed once
    assert second["generated_at"] == first["generated_at"]
    assert second["checks"]["queue"]["jobs_waiting"] == first["checks"]["queue"]["jobs_waiting"]
